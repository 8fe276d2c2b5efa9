//! Push-to-talk and whisper through the XDG GlobalShortcuts portal (issue 19: "the XDG
//! GlobalShortcuts portal on Wayland where available"), against a fake portal on a private
//! bus: each test starts its own `dbus-daemon` (a configuration of its own, listening on a
//! socket in a temporary directory, with no service activation, so no real portal can answer)
//! and serves `org.freedesktop.portal.Desktop` from the test with zbus: `CreateSession` and
//! `BindShortcuts` answered through `Request::Response`, `Activated` / `Deactivated` emitted
//! when the test says. `scripts/install-deps.sh` installs `dbus-daemon`.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use egui_kittest::kittest::Queryable;
use gui_demo::backend::Request;
use gui_demo::global_keys::portal::{DESKTOP, DESKTOP_PATH, INTERFACE, SHORTCUT_IDS};
use gui_demo::global_keys::{self, Binding, GlobalKeys, Provider, PTT, WHISPER};
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

/// A private bus daemon, killed (and its directory removed) when dropped.
struct Bus {
    child: Child,
    dir: PathBuf,
    address: String,
}

impl Bus {
    fn start() -> Bus {
        let dir = std::env::temp_dir().join(format!(
            "gui_demo_bus_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.join("bus").display()
            ),
        )
        .expect("bus configuration");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (scripts/install-deps.sh installs it: package dbus-daemon)");
        // Its stderr is dropped: as root it warns that it cannot raise its fd limit.
        // The address is its first line; bounded: a daemon that says nothing fails the test.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("bus-address".into())
            .spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            })
            .expect("thread");
        let line = rx.recv_timeout(Duration::from_secs(10));
        let address = match line {
            Ok(l) if !l.trim().is_empty() => l.trim().to_string(),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("dbus-daemon printed no address: {other:?}");
            }
        };
        Bus {
            child,
            dir,
            address,
        }
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A shortcut id with the trigger it was asked for.
type Asked = (String, Option<String>);

/// What the fake portal saw.
#[derive(Debug, Default)]
struct Seen {
    /// Per `BindShortcuts`: the session and each shortcut's id with its preferred trigger.
    binds: Vec<(String, Vec<Asked>)>,
    /// Sessions closed.
    closed: Vec<String>,
}

/// `org.freedesktop.portal.GlobalShortcuts` as xdg-desktop-portal serves it, answering every
/// request at once (the desktop binds each shortcut to its preferred trigger, shown in upper
/// case, or to "F13" without one).
struct FakeShortcuts {
    seen: Arc<Mutex<Seen>>,
}

fn value_str(v: &Value<'_>) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.to_string()),
        Value::Value(inner) => value_str(inner),
        _ => None,
    }
}

/// The path the portal gives a caller's request or session with `token`.
fn handle(kind: &str, sender: &str, token: &str) -> String {
    let sender = sender.trim_start_matches(':').replace('.', "_");
    format!("{DESKTOP_PATH}/{kind}/{sender}/{token}")
}

#[zbus::interface(name = "org.freedesktop.portal.GlobalShortcuts")]
impl FakeShortcuts {
    async fn create_session(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        let token = |k: &str| {
            options
                .get(k)
                .and_then(|v| value_str(v))
                .unwrap_or("t".into())
        };
        let request = handle("request", &sender, &token("handle_token"));
        let session = handle("session", &sender, &token("session_handle_token"));
        let results: HashMap<&str, Value<'_>> =
            HashMap::from([("session_handle", Value::from(session.as_str()))]);
        respond(conn, &sender, &request, results).await?;
        Ok(ObjectPath::try_from(request).unwrap().into())
    }

    async fn bind_shortcuts(
        &self,
        session: ObjectPath<'_>,
        shortcuts: Vec<(String, HashMap<String, OwnedValue>)>,
        _parent_window: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        let token = options
            .get("handle_token")
            .and_then(|v| value_str(v))
            .unwrap_or("t".into());
        let request = handle("request", &sender, &token);
        let asked: Vec<Asked> = shortcuts
            .iter()
            .map(|(id, props)| {
                let pref = props.get("preferred_trigger").and_then(|v| value_str(v));
                (id.clone(), pref)
            })
            .collect();
        let bound: Vec<(String, HashMap<String, OwnedValue>)> = asked
            .iter()
            .map(|(id, pref)| {
                let shown = pref.as_deref().map_or("F13".into(), str::to_uppercase);
                let props = HashMap::from([(
                    "trigger_description".to_string(),
                    OwnedValue::try_from(Value::from(shown)).unwrap(),
                )]);
                (id.clone(), props)
            })
            .collect();
        self.seen
            .lock()
            .unwrap()
            .binds
            .push((session.to_string(), asked));
        let results: HashMap<&str, Value<'_>> = HashMap::from([("shortcuts", Value::from(bound))]);
        respond(conn, &sender, &request, results).await?;
        Ok(ObjectPath::try_from(request).unwrap().into())
    }

    // The portal's property is spelled in lower case (zbus would say "Version").
    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        1
    }
}

/// `org.freedesktop.portal.Session`, which only records that it was closed.
struct FakeSessions {
    seen: Arc<Mutex<Seen>>,
}

#[zbus::interface(name = "org.freedesktop.portal.Session")]
impl FakeSessions {
    fn close(&self, #[zbus(header)] header: zbus::message::Header<'_>) {
        let path = header.path().map(|p| p.to_string()).unwrap_or_default();
        self.seen.lock().unwrap().closed.push(path);
    }
}

/// Emits `Request::Response(0, results)` to `sender` on `request`.
async fn respond(
    conn: &zbus::Connection,
    sender: &str,
    request: &str,
    results: HashMap<&str, Value<'_>>,
) -> zbus::fdo::Result<()> {
    conn.emit_signal(
        Some(sender),
        request,
        "org.freedesktop.portal.Request",
        "Response",
        &(0u32, results),
    )
    .await
    .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
}

/// The fake portal on `bus`, serving until dropped.
struct Portal {
    conn: zbus::Connection,
    seen: Arc<Mutex<Seen>>,
}

impl Portal {
    fn serve(bus: &Bus) -> Portal {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let conn = async_io::block_on(async {
            let conn = zbus::connection::Builder::address(bus.address.as_str())?
                .name(DESKTOP)?
                .serve_at(DESKTOP_PATH, FakeShortcuts { seen: seen.clone() })?
                .build()
                .await?;
            Ok::<_, zbus::Error>(conn)
        })
        .expect("fake portal on the private bus");
        Portal { conn, seen }
    }

    /// Serves `org.freedesktop.portal.Session` at the path of the session last bound.
    fn serve_session(&self) -> String {
        let session = self.bound_session().expect("a session was bound");
        let sessions = FakeSessions {
            seen: self.seen.clone(),
        };
        async_io::block_on(self.conn.object_server().at(session.as_str(), sessions))
            .expect("session object");
        session
    }

    fn bound_session(&self) -> Option<String> {
        self.seen.lock().unwrap().binds.last().map(|b| b.0.clone())
    }

    /// Emits `Activated` (`down`) or `Deactivated` for shortcut `id` of `session`.
    fn press(&self, session: &str, id: &str, down: bool) {
        let member = if down { "Activated" } else { "Deactivated" };
        let path = ObjectPath::try_from(session).unwrap();
        let options: HashMap<&str, Value<'_>> = HashMap::new();
        async_io::block_on(self.conn.emit_signal(
            None::<&str>,
            DESKTOP_PATH,
            INTERFACE,
            member,
            &(path, id, 1234u64, options),
        ))
        .expect("signal");
    }
}

#[test]
fn the_portal_shortcuts_are_the_talk_and_whisper_bits() {
    let bus = Bus::start();
    let portal = Portal::serve(&bus);
    let (tx, rx) = std::sync::mpsc::channel();
    let keys = GlobalKeys::start_portal_on(Some(&bus.address), move || {
        let _ = tx.send(());
    })
    .expect("the fake portal is found");
    assert_eq!(keys.provider(), Provider::Portal);
    assert!(
        keys.caveat().unwrap().contains("shortcuts portal"),
        "{:?}",
        keys.caveat()
    );
    assert!(
        keys.buttons_unavailable().is_some(),
        "no mouse buttons there"
    );
    // Nothing needed yet: nothing bound.
    keys.prefer(Binding::Key(egui::Key::V), Binding::Key(egui::Key::B));
    std::thread::sleep(global_keys::IDLE_POLL * 2);
    assert!(portal.bound_session().is_none(), "bound only when needed");
    // Connected in push-to-talk mode: the talk key is needed; both shortcuts are bound with the
    // user's keys as preferred triggers.
    keys.watch(Some(Binding::Key(egui::Key::V)), None);
    assert!(wait_for(|| portal.bound_session().is_some()));
    let asked = portal.seen.lock().unwrap().binds[0].1.clone();
    assert_eq!(
        asked,
        vec![
            (SHORTCUT_IDS[0].to_string(), Some("v".to_string())),
            (SHORTCUT_IDS[1].to_string(), Some("b".to_string())),
        ]
    );
    assert!(wait_for(|| keys
        .caveat()
        .is_some_and(|c| c.contains("talk V, whisper B"))));
    let session = portal.serve_session();
    portal.press(&session, SHORTCUT_IDS[0], true);
    assert!(wait_for(|| keys.down_bits() == PTT));
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok(), "notified");
    // Whisper is not watched (no hold-to-whisper target): its shortcut does not count until
    // it is, and then it does (it is still held).
    portal.press(&session, SHORTCUT_IDS[1], true);
    std::thread::sleep(global_keys::IDLE_POLL * 2);
    assert_eq!(keys.down_bits(), PTT);
    keys.watch(
        Some(Binding::Key(egui::Key::V)),
        Some(Binding::Key(egui::Key::B)),
    );
    assert!(wait_for(|| keys.down_bits() == PTT | WHISPER));
    portal.press(&session, SHORTCUT_IDS[0], false);
    assert!(wait_for(|| keys.down_bits() == WHISPER));
    portal.press(&session, SHORTCUT_IDS[1], false);
    assert!(wait_for(|| keys.down_bits() == 0));
    // Another session's shortcut, or an unknown id, is not ours.
    portal.press(
        "/org/freedesktop/portal/desktop/session/x/y",
        SHORTCUT_IDS[0],
        true,
    );
    portal.press(&session, "something-else", true);
    std::thread::sleep(global_keys::IDLE_POLL * 2);
    assert_eq!(keys.down_bits(), 0);
    // Another talk key: the session is closed and a new one bound with it.
    keys.prefer(Binding::Key(egui::Key::F13), Binding::Key(egui::Key::B));
    assert!(wait_for(|| portal.seen.lock().unwrap().binds.len() == 2));
    assert_eq!(portal.seen.lock().unwrap().closed, vec![session.clone()]);
    let asked = portal.seen.lock().unwrap().binds[1].1.clone();
    assert_eq!(asked[0].1.as_deref(), Some("F13"));
    let second = portal.serve_session();
    assert_ne!(second, session);
    // The old session's shortcut no longer talks; the new one's does.
    portal.press(&session, SHORTCUT_IDS[0], true);
    std::thread::sleep(global_keys::IDLE_POLL * 2);
    assert_eq!(keys.down_bits(), 0);
    portal.press(&second, SHORTCUT_IDS[0], true);
    assert!(wait_for(|| keys.down_bits() == PTT));
    // Nothing watched (disconnected): nothing held, and the desktop gets the keys back.
    keys.watch(None, None);
    assert!(wait_for(|| keys.down_bits() == 0));
    assert!(wait_for(|| portal
        .seen
        .lock()
        .unwrap()
        .closed
        .contains(&second)));
    // Needed again: bound again; dropping the keys closes that session too.
    keys.watch(Some(Binding::Key(egui::Key::F13)), None);
    assert!(wait_for(|| portal.seen.lock().unwrap().binds.len() == 3));
    let third = portal.serve_session();
    assert!(wait_for(|| keys
        .caveat()
        .is_some_and(|c| c.contains("talk F13"))));
    drop(keys);
    assert!(portal.seen.lock().unwrap().closed.contains(&third));
}

#[test]
fn a_bus_without_the_portal_gives_the_reason() {
    let bus = Bus::start();
    let e = GlobalKeys::start_portal_on(Some(&bus.address), || {}).expect_err("no portal");
    assert!(
        e.contains("the session bus offers no GlobalShortcuts portal"),
        "{e}"
    );
    // No bus at all.
    let e = GlobalKeys::start_portal_on(Some("unix:path=/nonexistent/gui_demo_bus"), || {})
        .expect_err("no bus");
    assert!(e.contains("no session bus"), "{e}");
    // Under Wayland with XWayland: the X server, and the panel says why not the portal.
    let scripted = || GlobalKeys::start(Box::new(NoKeys), || {}).map_err(|e| e.to_string());
    let keys = global_keys::choose(
        true,
        || GlobalKeys::start_portal_on(Some(&bus.address), || {}),
        scripted,
    )
    .expect("XWayland");
    assert_eq!(keys.provider(), Provider::X11);
    let caveat = keys.caveat().unwrap();
    assert!(
        caveat.starts_with(global_keys::XWAYLAND_CAVEAT)
            && caveat.contains("no GlobalShortcuts portal"),
        "{caveat}"
    );
    // Neither: both reasons.
    let e = global_keys::choose(
        true,
        || GlobalKeys::start_portal_on(Some(&bus.address), || {}),
        || Err("no X display".into()),
    )
    .expect_err("neither");
    assert!(
        e.contains("no GlobalShortcuts portal") && e.contains("no X display"),
        "{e}"
    );
    // Not Wayland: the X server first, the portal not even asked.
    let keys = global_keys::choose(false, || panic!("not asked"), scripted).expect("X11");
    assert_eq!(keys.provider(), Provider::X11);
}

/// A keyboard with nothing held, standing in for an X server.
struct NoKeys;

impl global_keys::KeySource for NoKeys {
    fn keycode(&mut self, _keysym: u32) -> Option<u8> {
        None
    }

    fn keymap(&mut self) -> Option<[u8; 32]> {
        Some([0; 32])
    }
}

#[test]
fn the_app_talks_and_whispers_on_the_portal_shortcuts() {
    let bus = Bus::start();
    let portal = Portal::serve(&bus);
    let (mut app, handle, _) = app("me");
    app.set_global_keys(Ok(
        GlobalKeys::start_portal_on(Some(&bus.address), || {}).expect("the fake portal is found")
    ));
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(2);
    welcome(&mut h, &handle, 1, vec![]);
    // Our window has focus: the desktop's shortcut counts anyway (it took the key from us).
    frames_until(&mut h, |_| portal.bound_session().is_some());
    let session = portal.serve_session();
    frames_until(&mut h, |h| {
        h.query_by_label_contains("talk V, whisper B").is_some()
    });
    h.get_by_label_contains("through the desktop's shortcuts portal: talk V, whisper B");
    portal.press(&session, SHORTCUT_IDS[0], true);
    frames_until(&mut h, |_| last_ptt(&handle).is_some());
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(true)));
    portal.press(&session, SHORTCUT_IDS[0], false);
    frames_until(&mut h, |_| {
        last_ptt(&handle) == Some(Request::PushToTalk(false))
    });
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
    // Switched off in the settings: the session is closed, the shortcut does nothing.
    h.state_mut().settings.global_keys = false;
    frames_until(&mut h, |_| {
        portal.seen.lock().unwrap().closed.contains(&session)
    });
    assert!(portal.seen.lock().unwrap().closed.contains(&session));
    portal.press(&session, SHORTCUT_IDS[0], true);
    std::thread::sleep(global_keys::IDLE_POLL * 2);
    h.run_steps(3);
    assert_eq!(last_ptt(&handle), Some(Request::PushToTalk(false)));
}
