//! `gui_demo` binary: parses flags, restores settings, and runs the eframe window.

use gui_demo::backend::{Backend, ClientBackend};
use gui_demo::cli::{Options, USAGE};
use gui_demo::settings::{Settings, STORAGE_KEY};
use gui_demo::{ConnectRequest, GuiApp};
use voice_client::{AccessToken, AudioError, ClientConfig, ClientError, TlsTrust};

/// Starts the real engine for a connect request.
fn start_engine(
    req: &ConnectRequest,
    ctx: &egui::Context,
    tls: &TlsTrust,
    insecure_plaintext: bool,
    token: Option<&AccessToken>,
) -> Result<Box<dyn Backend>, String> {
    let mut cfg = ClientConfig::new(req.server, &req.name);
    cfg.token = token.cloned();
    cfg.tls = tls.clone();
    cfg.insecure_plaintext = insecure_plaintext;
    cfg.input = req.settings.input.to_audio();
    cfg.output = req.settings.output.to_audio();
    cfg.engine.transmit = req.settings.mode.to_engine();
    cfg.engine.vad.threshold_dbfs = req.settings.vad_threshold_dbfs;
    if matches!(
        req.settings.input,
        gui_demo::settings::InputChoice::Device(_)
    ) {
        cfg.engine.capture = req.settings.capture;
    }
    let ctx = ctx.clone();
    let backend =
        ClientBackend::start(cfg, move || ctx.request_repaint()).map_err(|e| match e {
            ClientError::Audio(AudioError::Wav(w)) => format!("cannot read the WAV file {w}"),
            ClientError::Audio(a) => format!("cannot open audio: {a}"),
            e => format!("cannot start the voice engine: {e}"),
        })?;
    Ok(Box::new(backend))
}

/// Silences alsa-lib's own error printer: probing devices writes lines such as
/// "ALSA lib pcm.c:… unknown PCM" to stderr on every start, which mean nothing to a user (a device
/// that cannot be opened is reported in the window instead).
#[cfg(target_os = "linux")]
fn quiet_alsa() {
    use std::ffi::{c_char, c_int};
    // alsa-lib's handler is variadic; this one takes the fixed arguments and ignores the rest,
    // which the C calling convention allows on the platforms cpal's ALSA backend runs on.
    type Handler = unsafe extern "C" fn(*const c_char, c_int, *const c_char, c_int, *const c_char);
    unsafe extern "C" fn ignore(
        _file: *const c_char,
        _line: c_int,
        _function: *const c_char,
        _err: c_int,
        _fmt: *const c_char,
    ) {
    }
    unsafe extern "C" {
        // libasound is linked through cpal's ALSA backend.
        fn snd_lib_error_set_handler(handler: Option<Handler>) -> c_int;
    }
    // SAFETY: sets a process-wide function pointer in alsa-lib before any audio thread starts;
    // the handler never touches its arguments.
    unsafe {
        snd_lib_error_set_handler(Some(ignore));
    }
}

#[cfg(not(target_os = "linux"))]
fn quiet_alsa() {}

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
    if opts.version {
        println!("gui_demo {}", env!("CARGO_PKG_VERSION"));
        return std::process::ExitCode::SUCCESS;
    }
    if std::env::var_os("GUI_DEMO_ALSA_ERRORS").is_none() {
        quiet_alsa();
    }
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
            // The Mumble flow: a pin if given, else the fingerprint saved for this server on
            // the first connection, else trust on first use (the fingerprint is shown and saved).
            let pin = opts.fingerprint;
            let plaintext = opts.insecure_plaintext;
            let token = opts.token.clone();
            let connector = move |req: &ConnectRequest, ctx: &egui::Context| {
                let tls = req.settings.tls_trust(pin.as_ref())?;
                start_engine(req, ctx, &tls, plaintext, token.as_ref())
            };
            let mut app = GuiApp::new(settings, Box::new(connector));
            app.scan_devices();
            // Talk and whisper keys while another window has focus (X11, or the desktop's
            // GlobalShortcuts portal under Wayland); a press or release asks for a frame, which
            // feeds it to the engine.
            let ctx = cc.egui_ctx.clone();
            let keys = gui_demo::global_keys::GlobalKeys::start_best(move || ctx.request_repaint());
            if let Err(why) = &keys {
                log::info!("global keys unavailable: {why}");
            }
            app.set_global_keys(keys);
            app.join_on_connect(opts.channel.clone());
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
