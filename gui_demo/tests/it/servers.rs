//! The saved server list (issue 19: "hostnames and a saved server list, with the TLS fingerprint
//! per server"): a server connected to is remembered, the certificate trusted on first use is
//! saved with it and pinned on the next connection; the connect screen offers the list and a
//! Forget button.

use crate::common;

use common::*;
use egui_kittest::kittest::Queryable;
use gui_demo::app::Screen;
use voice_client::{Event, TlsTrust};

#[test]
fn a_server_is_remembered_with_its_certificate_and_pinned_next_time() {
    let fp = format!("sha256:{}", "ab".repeat(32));
    let (app, handles, requests) = app_n(2);
    let mut h = harness(app);
    assert!(h.query_by_label("Recent").is_none(), "nothing saved yet");
    h.get_by_label("Connect").click();
    h.run_steps(2);
    assert_eq!(h.state().settings.servers.len(), 1);
    assert_eq!(h.state().settings.servers[0].address, "127.0.0.1:7400");
    assert_eq!(h.state().settings.servers[0].fingerprint, None);
    // The first connection trusted the relay's certificate on first use.
    welcome(&mut h, &handles[0], 1, vec![]);
    send(
        &mut h,
        &handles[0],
        Event::ServerFingerprint {
            fingerprint: fp.clone(),
            first_use: true,
            accepted: true,
        },
    );
    assert_eq!(
        h.state().settings.servers[0].fingerprint.as_deref(),
        Some(fp.as_str())
    );
    assert!(matches!(
        requests.lock().unwrap()[0].settings.tls_trust(None),
        Ok(TlsTrust::TrustOnFirstUse)
    ));
    h.get_by_label("Disconnect").click();
    h.run_steps(2);
    assert!(matches!(h.state().screen, Screen::Connect(_)));
    // The connect screen shows the pin; another address in the field shows none.
    h.get_by_label_contains("certificate pinned (sha256:abababab");
    h.state_mut().settings.server = "localhost:7400".into();
    h.run();
    assert!(h.query_by_label_contains("certificate pinned").is_none());
    assert!(h.query_by_label("Forget").is_none());
    // Chosen from the list, it comes back, and the next connection pins the saved certificate.
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "Recent")
        .click();
    h.run();
    h.get_by_label("127.0.0.1:7400 (pinned)").click();
    h.run();
    assert_eq!(h.state().settings.server, "127.0.0.1:7400");
    h.get_by_label("Connect").click();
    h.run_steps(2);
    let pinned: voice_client::Fingerprint = fp.parse().expect("fingerprint");
    assert!(matches!(
        requests.lock().unwrap()[1].settings.tls_trust(None),
        Ok(TlsTrust::Pinned(p)) if p == pinned
    ));
    // Forget drops the server and its pin.
    welcome(&mut h, &handles[1], 1, vec![]);
    h.get_by_label("Disconnect").click();
    h.run_steps(2);
    h.get_by_label("Forget").click();
    h.run();
    assert!(h.state().settings.servers.is_empty());
    assert!(h.query_by_label("Recent").is_none());
}
