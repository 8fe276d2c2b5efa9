//! `gui_demo` binary: parses flags, restores settings, and runs the eframe window.

use gui_demo::backend::{Backend, ClientBackend};
use gui_demo::cli::{Options, USAGE};
use gui_demo::settings::{Settings, STORAGE_KEY};
use gui_demo::{ConnectRequest, GuiApp};
use voice_client::{ChannelId, ClientConfig, TlsTrust};

/// Starts the real engine for a connect request.
fn start_engine(
    req: &ConnectRequest,
    ctx: &egui::Context,
    tls: &TlsTrust,
    insecure_plaintext: bool,
) -> Result<Box<dyn Backend>, String> {
    let mut cfg = ClientConfig::new(req.server, &req.name);
    cfg.tls = tls.clone();
    cfg.insecure_plaintext = insecure_plaintext;
    cfg.input = req.settings.input.to_audio();
    cfg.output = req.settings.output.to_audio();
    cfg.engine.transmit = req.settings.mode.to_engine();
    cfg.engine.vad.threshold_dbfs = req.settings.vad_threshold_dbfs;
    let ctx = ctx.clone();
    let backend =
        ClientBackend::start(cfg, move || ctx.request_repaint()).map_err(|e| e.to_string())?;
    Ok(Box::new(backend))
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let size = opts.size.unwrap_or([1200.0, 760.0]);
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Voice demo")
            .with_inner_size(size)
            .with_min_inner_size([640.0, 420.0]),
        ..Default::default()
    };
    let result = eframe::run_native(
        "gui_demo",
        native,
        Box::new(move |cc| {
            let mut settings: Settings = cc
                .storage
                .and_then(|s| eframe::get_value(s, STORAGE_KEY))
                .unwrap_or_default();
            opts.apply(&mut settings);
            // The Mumble flow: a pin if given, else trust on first use (the fingerprint is shown).
            let tls = opts
                .fingerprint
                .map_or(TlsTrust::TrustOnFirstUse, TlsTrust::Pinned);
            let plaintext = opts.insecure_plaintext;
            let connector = move |req: &ConnectRequest, ctx: &egui::Context| {
                start_engine(req, ctx, &tls, plaintext)
            };
            let mut app = GuiApp::new(settings, Box::new(connector));
            app.scan_devices();
            app.join_on_connect(opts.channel.map(ChannelId));
            if opts.connect {
                app.connect(&cc.egui_ctx);
            }
            Ok(Box::new(app))
        }),
    );
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gui_demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
