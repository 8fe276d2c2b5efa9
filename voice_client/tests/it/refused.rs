//! A relay that is not there: a connect refused on a closed 127.0.0.1 port is reported at once as
//! `Event::Disconnected`; with `reconnect` off nothing is retried, with it on the attempts back off.
//! Each change of the connection status is reported exactly once (`Event::Status`).

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use voice_client::{AudioInput, AudioOutput, Client, ClientConfig, ConnectionStatus, Event};

/// A loopback port with nothing listening on it (bound once to pick it, then closed).
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn start(server: SocketAddr, reconnect: bool) -> Client {
    let mut cfg = ClientConfig::new(server, "nobody-home");
    cfg.input = AudioInput::Null;
    cfg.output = AudioOutput::Null;
    cfg.reconnect = reconnect;
    Client::start(cfg).unwrap()
}

#[test]
fn a_refused_connect_is_reported_at_once_and_not_retried_without_reconnect() {
    let server = closed_port();
    let t0 = Instant::now();
    let c = start(server, false);
    let first = c.events().recv_timeout(Duration::from_secs(2));
    assert!(
        matches!(
            first,
            Ok(Event::Status(ConnectionStatus::Connecting {
                attempt: 1,
                last_error: None
            }))
        ),
        "{first:?}"
    );
    let ev = c
        .events()
        .recv_timeout(Duration::from_secs(2))
        .expect("an event for the refused connect");
    let took = t0.elapsed();
    let Event::Disconnected { kind, reason } = ev else {
        panic!("expected Disconnected, got {ev:?}");
    };
    assert_eq!(kind, voice_client::DisconnectKind::Network);
    assert!(took < Duration::from_secs(1), "reported after {took:?}");
    assert!(
        reason.contains("refused"),
        "reason names the refusal: {reason}"
    );
    assert!(
        reason.contains("not retrying"),
        "reason says what follows: {reason}"
    );
    let failed = c.events().recv_timeout(Duration::from_secs(2));
    assert!(
        matches!(&failed, Ok(Event::Status(ConnectionStatus::Failed { reason })) if reason.contains("refused")),
        "{failed:?}"
    );
    // The engine thread has stopped: the event channel closes without a further event.
    match c.events().recv_timeout(Duration::from_secs(2)) {
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {}
        other => panic!("expected the engine to stop, got {other:?}"),
    }
    // And it never tries again: a listener opened on that port now gets no connection.
    let listener = TcpListener::bind(server).unwrap();
    listener.set_nonblocking(true).unwrap();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert!(
            listener.accept().is_err(),
            "a client with reconnect off connected again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!c.is_connected());
}

#[test]
fn with_reconnect_each_refused_attempt_is_reported_and_backs_off() {
    let server = closed_port();
    let t0 = Instant::now();
    let c = start(server, true);
    let mut at = Vec::new();
    let mut statuses = Vec::new();
    while at.len() < 3 && t0.elapsed() < Duration::from_secs(5) {
        match c.events().recv_timeout(Duration::from_secs(3)) {
            Ok(Event::Status(s)) => statuses.push(s),
            Ok(Event::Disconnected { kind, reason }) => {
                assert_eq!(kind, voice_client::DisconnectKind::Network);
                assert!(
                    reason.contains("refused") && reason.contains("retrying in"),
                    "{reason}"
                );
                at.push(t0.elapsed());
            }
            Ok(other) => panic!("unexpected event {other:?}"),
            Err(e) => panic!("no event: {e}"),
        }
    }
    assert_eq!(at.len(), 3, "three attempts reported: {at:?}");
    // The third attempt's `Reconnecting` follows its `Disconnected`.
    if let Ok(Event::Status(s)) = c.events().recv_timeout(Duration::from_secs(1)) {
        statuses.push(s);
    }
    // One status event per change: attempt n, then the wait before attempt n + 1.
    let reconnecting = |s: &ConnectionStatus, ms| matches!(s, ConnectionStatus::Reconnecting { in_ms, reason } if *in_ms == ms && reason.contains("refused"));
    let connecting = |s: &ConnectionStatus, n| matches!(s, ConnectionStatus::Connecting { attempt, last_error: Some(e) } if *attempt == n && e.contains("refused"));
    assert_eq!(statuses.len(), 6, "{statuses:#?}");
    assert_eq!(
        statuses[0],
        ConnectionStatus::Connecting {
            attempt: 1,
            last_error: None
        }
    );
    assert!(reconnecting(&statuses[1], 250), "{statuses:#?}");
    assert!(connecting(&statuses[2], 2), "{statuses:#?}");
    assert!(reconnecting(&statuses[3], 500), "{statuses:#?}");
    assert!(connecting(&statuses[4], 3), "{statuses:#?}");
    assert!(reconnecting(&statuses[5], 1000), "{statuses:#?}");
    assert!(c
        .stats()
        .is_some_and(|s| statuses.last() == Some(&s.status)));
    assert!(
        at[0] < Duration::from_secs(1),
        "first report after {:?}",
        at[0]
    );
    // 250 ms, then 500 ms between attempts (with slack for a loaded machine).
    let gap1 = at[1] - at[0];
    let gap2 = at[2] - at[1];
    assert!(gap1 >= Duration::from_millis(200), "first backoff {gap1:?}");
    assert!(
        gap2 >= Duration::from_millis(450),
        "second backoff {gap2:?}"
    );
    assert!(gap2 > gap1, "backoff grows: {gap1:?} then {gap2:?}");
}
