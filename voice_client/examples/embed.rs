//! Embedding the engine as a crate: connect to a relay, join a channel, talk from a WAV file (or a
//! tone), print events for a while.
//!
//! `VOICE_RELAY_FINGERPRINT=sha256:… cargo run --release -p voice_client --example embed -- 127.0.0.1:7400 alice [IN.wav]`
//!
//! The control connection is TLS: the fingerprint (what the relay printed at start) is pinned;
//! without it the certificate is trusted on first use and its fingerprint printed.

use std::time::{Duration, Instant};

use voice_client::{AudioInput, AudioOutput, Client, ClientConfig, Event, TlsTrust, TransmitMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "127.0.0.1:7400".into());
    let name = args.next().unwrap_or_else(|| "embedded".into());
    let mut cfg = ClientConfig::new(server.parse()?, &name);
    cfg.input = match args.next() {
        Some(path) => AudioInput::Wav {
            path: path.into(),
            looped: false,
        },
        None => AudioInput::Tone {
            hz: 330.0,
            amplitude: 0.2,
        },
    };
    cfg.output = AudioOutput::Null;
    cfg.tls = match std::env::var("VOICE_RELAY_FINGERPRINT") {
        Ok(fp) => TlsTrust::Pinned(fp.parse()?),
        Err(_) => TlsTrust::TrustOnFirstUse,
    };
    let client = Client::start(cfg)?;
    client.set_transmit_mode(TransmitMode::Continuous);
    let until = Instant::now() + Duration::from_secs(5);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match client.events().recv_timeout(left) {
            Ok(Event::ChannelJoined { channel }) => {
                println!(
                    "joined {} with {} member(s)",
                    channel.name,
                    channel.users.len()
                );
                client.send_chat("hello from an embedded client");
            }
            Ok(event) => println!("{event:?}"),
            Err(_) => break,
        }
    }
    if let Some(stats) = client.stats() {
        println!(
            "sent {} packets, rtt {:?} ms",
            stats.tx_packets, stats.rtt_ms
        );
    }
    client.shutdown()?;
    Ok(())
}
