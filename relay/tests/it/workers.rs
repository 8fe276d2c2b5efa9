//! Several forwarding workers (`SO_REUSEPORT` sockets) behave like one relay: every member hears
//! every other whatever socket the kernel picked for each, registrations that land on any worker
//! are acknowledged from the relay's address, a rebinding that moves a sender to another worker
//! keeps forwarding, and `Stats` sums every worker's counters.

use crate::common;

use std::collections::HashSet;

use common::*;

/// The one place this file starts a relay: `workers` forwarding threads.
fn relay_with(workers: usize) -> relay::RelayHandle {
    start(|c| c.workers = workers)
}

#[test]
fn many_senders_over_four_workers_reach_everyone_with_exact_bytes() {
    let relay = relay_with(4);
    let names: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // Ten clients on ten sockets: with four workers, several workers hold senders (the
    // kernel's 4-tuple hash picks), and every registration was acknowledged wherever it landed.
    let mut g = group(relay.local_addr(), 1, &refs);
    let sent: Vec<Vec<u8>> = g
        .iter_mut()
        .enumerate()
        .map(|(i, c)| c.talk(format!("from {i}").as_bytes()))
        .collect();
    for (j, c) in g.iter().enumerate() {
        let mut got = HashSet::new();
        for _ in 0..g.len() - 1 {
            got.insert(c.recv_udp(WAIT).expect("a datagram did not arrive"));
        }
        let want: HashSet<Vec<u8>> = sent
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != j)
            .map(|(_, d)| d.clone())
            .collect();
        assert_eq!(got, want, "client {j}");
        c.expect_no_udp();
    }
    let stats = g[0].stats();
    assert_eq!(stats["voice_accepted"], 10);
    assert_eq!(stats["forwarded_packets"], 90);
    assert_eq!(stats["register_ok"], 10);
    assert_eq!(stats["udp_rx_packets"], 20, "10 registrations + 10 voice");
    // Replays are caught by whichever worker owns the sender.
    let replay = sent[3].clone();
    g[3].send_udp(&replay);
    g[0].expect_no_udp();
    let stats = g[0].stats();
    assert_eq!(stats["drop_duplicate"], 1);
}

#[test]
fn a_sender_that_moves_to_another_socket_keeps_talking_and_its_old_address_is_refused() {
    let relay = relay_with(4);
    let mut g = group(relay.local_addr(), 1, &["a", "b"]);
    let d = g[0].talk(b"before");
    g[1].expect_udp(&d);
    // Move `a` several times: new 4-tuples, likely other workers. Each time the new binding
    // forwards and the old socket is refused.
    for round in 0..6 {
        let old = std::mem::replace(
            &mut g[0].udp,
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        g[0].register();
        let d = g[0].talk(format!("round {round}").as_bytes());
        g[1].expect_udp(&d);
        let stale = g[0].voice(voice_core::proto::SessionToken::NONE, b"stale");
        old.send_to(&stale, relay.local_addr()).unwrap();
        g[1].expect_no_udp();
    }
    let stats = g[1].stats();
    assert_eq!(stats["drop_unbound_source"], 6);
    assert_eq!(stats["voice_accepted"], 7);
}

#[test]
fn one_worker_is_the_single_threaded_relay() {
    let relay = relay_with(1);
    let mut g = group(relay.local_addr(), 2, &["a", "b", "c"]);
    let d = g[1].talk(b"hi");
    g[0].expect_udp(&d);
    g[2].expect_udp(&d);
    assert_eq!(g[0].stats()["forwarded_packets"], 2);
}
