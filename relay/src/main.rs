//! The `relay` binary: parses flags and an optional TOML file, runs the loop on the main thread,
//! and stops cleanly on SIGINT or SIGTERM (a named signal thread wakes the loop). Two
//! subcommands help with access tokens: `relay keygen` and `relay token` (see `tokens`).
//!
//! Exit status: 0 after a clean stop or `--help`; 1 when the configuration file cannot be read,
//! parsed or validated, the address cannot be bound, or the loop fails; 2 for a bad command line
//! (unknown flag, missing or unparsable value).

use std::process::ExitCode;

mod tokens;

use relay::config::ConfigError;
use relay::{Config, Relay};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        Some("keygen") => return tokens::run(tokens::keygen(args.skip(1))),
        Some("token") => return tokens::run(tokens::token(args.skip(1))),
        _ => {}
    }
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{}", relay::config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("relay: {e}");
            return exit_status(&e);
        }
    };
    let relay = match Relay::bind(config) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let stopper = relay.stopper();
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            log::error!("installing signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Handlers first, the stdout lines after: a script that signals the relay as soon as it has
    // read them must not kill it.
    // The bound address on stdout, whatever RUST_LOG says: with `--listen HOST:0` this is how
    // a script learns the port.
    println!("listening on {}", relay.local_addr());
    // The certificate's SHA-256 on stdout too: clients pin it (`voice-bot --fingerprint`).
    match relay.fingerprint() {
        Some(fp) => println!("fingerprint {fp}"),
        None => println!("insecure-plaintext"),
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                log::info!("signal {sig}: shutting down");
                stopper.stop();
            }
        });
    if let Err(e) = spawned {
        log::error!("starting the signal thread: {e}");
        return ExitCode::FAILURE;
    }
    match relay.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// 2 for a bad command line (the usual convention for usage errors), 1 for everything else.
fn exit_status(e: &ConfigError) -> ExitCode {
    match e {
        ConfigError::Usage(_) => ExitCode::from(2),
        ConfigError::Read { .. } | ConfigError::Parse { .. } | ConfigError::Invalid(_) => {
            ExitCode::FAILURE
        }
    }
}
