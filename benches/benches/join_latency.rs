//! Join latency on loopback: TCP connect + TLS 1.3 handshake (pinned certificate) + `Hello` with an
//! access token (EdDSA signature checked by the relay) →
//! `Welcome` + `JoinChannel` → `Joined`, one client after another against an in-process relay;
//! then the same in the plaintext development mode for comparison. Prints p50/p99/max.
//!
//! `cargo bench -p voice_benches --bench join_latency` (1000 joins each; `--quick`: 100).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use voice_core::proto::tcp::{
    encode_frame, AccessToken, ClientMessage, FrameReader, ServerMessage, CONTROL_VERSION,
};
use voice_core::proto::ChannelId;
use voice_tls::rustls::StreamOwned;
use voice_tls::{ClientTls, TlsTrust};

fn send(s: &mut impl Write, m: &ClientMessage) -> io::Result<()> {
    let mut buf = Vec::new();
    encode_frame(m, &mut buf).map_err(io::Error::other)?;
    s.write_all(&buf)?;
    s.flush()
}

fn until(
    s: &mut impl Read,
    r: &mut FrameReader<ServerMessage>,
    pred: impl Fn(&ServerMessage) -> bool,
) -> io::Result<()> {
    loop {
        while let Some(m) = r.next_message().map_err(io::Error::other)? {
            if pred(&m) {
                return Ok(());
            }
        }
        if r.read_from(s)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

fn join(s: &mut (impl Read + Write), i: usize, token: &str) -> io::Result<()> {
    let mut r = FrameReader::new();
    send(
        s,
        &ClientMessage::Hello {
            version: CONTROL_VERSION,
            name: format!("j{i}"),
            token: Some(AccessToken(token.to_owned())),
        },
    )?;
    until(s, &mut r, |m| matches!(m, ServerMessage::Welcome { .. }))?;
    send(
        s,
        &ClientMessage::JoinChannel {
            channel: ChannelId(1),
        },
    )?;
    until(s, &mut r, |m| matches!(m, ServerMessage::Joined { .. }))?;
    send(s, &ClientMessage::Goodbye)
}

fn relay(plaintext: bool) -> relay::RelayHandle {
    let cfg = relay::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        stats_interval_ms: 0,
        insecure_plaintext: plaintext,
        ..Default::default()
    };
    relay::Relay::bind(cfg)
        .expect("bind")
        .spawn()
        .expect("spawn")
}

fn report(what: &str, mut t: Vec<Duration>) {
    t.sort();
    let q = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{what:<34} n={:<5} p50 {:>6.3} ms  p99 {:>6.3} ms  max {:>6.3} ms",
        t.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

fn main() -> io::Result<()> {
    let n = if voice_benches::quick() { 100 } else { 1000 };
    let tls_relay = relay(false);
    let addr = tls_relay.local_addr();
    let fp = tls_relay.fingerprint().expect("TLS relay");
    // Tokens are minted by the game's backend ahead of the join: not part of the time measured
    // (the relay's signature check is).
    let tokens: Vec<String> = (0..n)
        .map(|i| tls_relay.token_for(&format!("j{i}")).expect("relay key"))
        .collect();
    let tls = ClientTls::new(&TlsTrust::Pinned(fp)).map_err(io::Error::other)?;
    let mut times = Vec::with_capacity(n);
    for (i, token) in tokens.iter().enumerate() {
        let t0 = Instant::now();
        let conn = tls.connect(addr.ip().into()).map_err(io::Error::other)?;
        let mut s = StreamOwned::new(conn, connect(addr)?);
        join(&mut s, i, token)?;
        times.push(t0.elapsed());
    }
    report("TLS 1.3 connect + token + join", times);

    let plain = relay(true);
    let addr = plain.local_addr();
    let tokens: Vec<String> = (0..n)
        .map(|i| plain.token_for(&format!("j{i}")).expect("relay key"))
        .collect();
    let mut times = Vec::with_capacity(n);
    for (i, token) in tokens.iter().enumerate() {
        let t0 = Instant::now();
        let mut s = connect(addr)?;
        join(&mut s, i, token)?;
        times.push(t0.elapsed());
    }
    report("plaintext connect + token + join", times);
    Ok(())
}
