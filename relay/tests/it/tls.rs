//! TLS on the control connection: what a wrong or broken peer gets (closed and counted in
//! `tls_failed` or a timeout), always with an honest client alongside that is unaffected, and the
//! explicit plaintext development mode.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use voice_core::proto::tcp::{encode_frame, ClientMessage, ServerMessage};
use voice_tls::{Fingerprint, TlsTrust};

/// True when the peer closes `s` within `timeout`.
fn closed(s: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

fn hello_frame(addr: std::net::SocketAddr, name: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_frame(&hello(addr, name), &mut buf).unwrap();
    buf
}

#[test]
fn a_plaintext_client_on_the_tls_port_is_closed_and_counted() {
    let relay = start(|_| {});
    let mut honest = Client::connect(relay.local_addr(), "honest");
    let mut plain = TcpStream::connect(relay.local_addr()).unwrap();
    plain
        .write_all(&hello_frame(relay.local_addr(), "plain"))
        .unwrap();
    assert!(closed(&mut plain, WAIT), "plaintext Hello on the TLS port");
    let stats = honest.stats();
    assert_eq!(stats["tls_failed"], 1);
    assert_eq!(stats["sessions"], 1);
    honest.join(1);
}

#[test]
fn a_truncated_record_then_hang_up_leaves_no_session_and_others_unaffected() {
    let relay = start(|_| {});
    let mut honest = Client::connect(relay.local_addr(), "honest");
    // A TLS record header announcing 300 bytes, then only 10 of them, then the socket closes.
    let mut t = TcpStream::connect(relay.local_addr()).unwrap();
    let mut record = vec![0x16, 0x03, 0x01, 0x01, 0x2c];
    record.extend_from_slice(&[0u8; 10]);
    t.write_all(&record).unwrap();
    drop(t);
    // A completed handshake whose first application record is cut short.
    let mut tls = tls_stream(
        relay.local_addr(),
        &TlsTrust::Pinned(relay.fingerprint().unwrap()),
    );
    tls.conn.complete_io(&mut tls.sock).unwrap();
    tls.conn
        .writer()
        .write_all(&hello_frame(relay.local_addr(), "cut"))
        .unwrap();
    let mut bytes = Vec::new();
    tls.conn.write_tls(&mut bytes).unwrap();
    tls.sock.write_all(&bytes[..bytes.len() / 2]).unwrap();
    tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed(&mut tls.sock, WAIT));
    let stats = honest.stats();
    assert_eq!(stats["sessions"], 1, "{stats:?}");
    assert_eq!(stats["sessions_total"], 1);
    honest.join(1);
}

#[test]
fn half_open_handshakes_time_out_and_an_honest_client_still_gets_in() {
    let relay = start(|c| c.handshake_timeout_ms = 300);
    // 200 connections that start a TLS handshake and never finish it.
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(relay.local_addr()).unwrap();
        // The first bytes of a ClientHello record.
        s.write_all(&[0x16, 0x03, 0x01, 0x00, 0xf0, 0x01]).unwrap();
        stalled.push(s);
    }
    let started = Instant::now();
    let mut honest = Client::connect(relay.local_addr(), "honest");
    assert!(started.elapsed() < Duration::from_secs(2));
    for s in &mut stalled {
        assert!(closed(s, WAIT), "a stalled handshake was not closed");
    }
    let stats = honest.stats();
    assert_eq!(stats["tcp_handshake_timeout"], 200, "{stats:?}");
    honest.join(1);
}

#[test]
fn a_client_pinning_another_fingerprint_refuses_the_relay() {
    let relay = start(|_| {});
    let mut tls = tls_stream(relay.local_addr(), &TlsTrust::Pinned(Fingerprint([7; 32])));
    let err = tls.conn.complete_io(&mut tls.sock).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let mut honest = Client::connect(relay.local_addr(), "honest");
    // The relay saw the client's alert and closed.
    let deadline = Instant::now() + WAIT;
    while honest.stats()["tls_failed"] == 0 {
        assert!(Instant::now() < deadline, "tls_failed not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_system_roots_do_not_trust_a_self_signed_relay() {
    let relay = start(|_| {});
    let mut tls = tls_stream(relay.local_addr(), &TlsTrust::System);
    assert!(tls.conn.complete_io(&mut tls.sock).is_err());
}

#[test]
fn a_ca_file_trusts_the_relay_certificate_it_holds() {
    let dir = std::env::temp_dir().join(format!("relay-tls-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let relay = start(|c| c.identity_dir = Some(dir.clone()));
    // The self-signed certificate is its own CA; it names `localhost`.
    let tls = voice_tls::ClientTls::new(&TlsTrust::CaFile(dir.join("cert.pem"))).unwrap();
    let tcp = TcpStream::connect(relay.local_addr()).unwrap();
    let conn = tls.connect("localhost".try_into().unwrap()).unwrap();
    let mut s = voice_tls::rustls::StreamOwned::new(conn, tcp);
    s.write_all(&hello_frame(relay.local_addr(), "ca")).unwrap();
    s.flush().unwrap();
    let mut reader = voice_core::proto::tcp::FrameReader::<ServerMessage>::new();
    s.sock.set_read_timeout(Some(WAIT)).unwrap();
    let deadline = Instant::now() + WAIT;
    let msg = loop {
        assert!(Instant::now() < deadline);
        if let Some(m) = reader.next_message().unwrap() {
            break m;
        }
        reader.read_from(&mut s).unwrap();
    };
    assert!(matches!(msg, ServerMessage::Welcome { .. }), "{msg:?}");
    assert_eq!(tls.seen(), relay.fingerprint());
    drop(relay);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_plaintext_development_mode_serves_frames_without_tls() {
    let relay = start(|c| c.insecure_plaintext = true);
    assert!(relay.fingerprint().is_none());
    let mut a = Client::connect(relay.local_addr(), "a");
    let mut b = Client::connect(relay.local_addr(), "b");
    a.join(1);
    b.join(1);
    let bytes = a.talk(b"plain voice");
    b.expect_udp(&bytes);
    a.send(&ClientMessage::ListChannels);
    assert!(matches!(
        a.ctl
            .recv_until(|m| matches!(m, ServerMessage::ChannelList { .. })),
        ServerMessage::ChannelList { .. }
    ));
}
