//! The Wayland source of [`super::GlobalKeys`]: the XDG GlobalShortcuts portal
//! (`org.freedesktop.portal.GlobalShortcuts` on `org.freedesktop.portal.Desktop`, session bus).
//!
//! A Wayland compositor tells no client about keys pressed in another client's window; the
//! only sanctioned way to a push-to-talk key is to ask the desktop for a global shortcut. The
//! `gui-keys` thread creates a portal session (`CreateSession`) when a key is needed
//! (connected, in push-to-talk mode or with a whisper target), binds two shortcuts,
//! [`SHORTCUT_IDS`] (`BindShortcuts`), with the user's keys as preferred triggers
//! ([`trigger`]; the desktop may show a dialog and assign others), and turns the portal's
//! `Activated` / `Deactivated` signals into the same [`super::PTT`] / [`super::WHISPER`] bits
//! the X11 source gives (through the one publishing step both share). When the user picks
//! other keys the session is closed and a new one bound (a session binds once, says the
//! portal); when no key is needed (disconnected, voice activity without a whisper target, a
//! key being set, the setting off) the session is closed, so the desktop gives the keys
//! back. The bound triggers, as the desktop describes them, or why nothing is bound, are the
//! settings panel's status line.
//!
//! Unlike the X11 source, a bound shortcut is the desktop's: it works whatever has focus, also
//! our own window, and the key no longer reaches other applications while the session lives
//! (so a plain letter is a poor global talk key there). Mouse buttons cannot be bound. A
//! desktop that refused (or whose dialog was cancelled) is asked again only for other keys.
//!
//! Every call is answered through a `Request` object's `Response` signal; the thread follows
//! every signal of the portal on one stream (subscribed before the first call, so no answer is
//! missed) and never waits on a user's dialog: the answer is handled whenever it comes. Each
//! wait is bounded ([`CALL_TIMEOUT`] per method call, [`super::IDLE_POLL`] per wait for a
//! signal, so the thread sees a changed binding or the stop flag within that).
//!
//! zbus (async, on `async-io`, driven by `async_io::block_on` on the thread) is the D-Bus
//! client: the blocking API has no way to wait for a signal *or* a timeout.

use std::collections::HashMap;
use std::time::Duration;

use async_io::Timer;
use egui::Key;
use futures_lite::{FutureExt, StreamExt};
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, MessageStream};

use super::{decode, Binding, KeyEdges, Shared, PTT, WHISPER};

/// The portal's bus name.
pub const DESKTOP: &str = "org.freedesktop.portal.Desktop";
/// The portal's object.
pub const DESKTOP_PATH: &str = "/org/freedesktop/portal/desktop";
/// The interface.
pub const INTERFACE: &str = "org.freedesktop.portal.GlobalShortcuts";
const SESSION: &str = "org.freedesktop.portal.Session";

/// The shortcut ids bound, per slot: talk ([`PTT`]), whisper ([`WHISPER`]).
pub const SHORTCUT_IDS: [&str; 2] = ["push-to-talk", "whisper"];
/// What the desktop shows for each shortcut.
const DESCRIPTIONS: [&str; 2] = ["Push to talk (hold)", "Whisper (hold)"];

/// Longest wait for one method call's reply.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the bus connection and the probe of the portal at start.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The status line before anything was bound.
pub const IDLE_STATUS: &str =
    "through the desktop's shortcuts portal (the keys are bound while needed)";

/// The preferred trigger of `binding` in the XDG shortcuts format (the key's XKB keysym name,
/// e.g. `v`, `F13`, `space`), or `None` where the desktop should choose with the user: mouse
/// buttons, modifier keys alone, keys without a plain name.
pub fn trigger(binding: Binding) -> Option<String> {
    let Binding::Key(key) = binding else {
        return None;
    };
    let name = key.name();
    // Letters and digits: the keysym name is the (lower-case) character.
    if name.len() == 1 && name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Some(name.to_ascii_lowercase());
    }
    if name.len() > 1 && name.starts_with('F') && name[1..].chars().all(|c| c.is_ascii_digit()) {
        return Some(name.to_string());
    }
    let named = [
        (Key::Space, "space"),
        (Key::Tab, "Tab"),
        (Key::Enter, "Return"),
        (Key::Backspace, "BackSpace"),
        (Key::Escape, "Escape"),
        (Key::Insert, "Insert"),
        (Key::Delete, "Delete"),
        (Key::Home, "Home"),
        (Key::End, "End"),
        (Key::PageUp, "Prior"),
        (Key::PageDown, "Next"),
        (Key::ArrowUp, "Up"),
        (Key::ArrowDown, "Down"),
        (Key::ArrowLeft, "Left"),
        (Key::ArrowRight, "Right"),
        (Key::Pause, "Pause"),
        (Key::PrintScreen, "Print"),
        (Key::ScrollLock, "Scroll_Lock"),
        (Key::Menu, "Menu"),
        (Key::Minus, "minus"),
        (Key::Equals, "equal"),
        (Key::Comma, "comma"),
        (Key::Period, "period"),
        (Key::Slash, "slash"),
        (Key::Backslash, "backslash"),
        (Key::Semicolon, "semicolon"),
        (Key::Quote, "apostrophe"),
        (Key::Backtick, "grave"),
        (Key::OpenBracket, "bracketleft"),
        (Key::CloseBracket, "bracketright"),
        (Key::MediaPlayPause, "XF86AudioPlay"),
    ];
    named
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, n)| (*n).to_string())
}

/// The D-Bus object path of a `Request` (or `Session`) with `token`, as the portal forms it for
/// a caller with unique name `unique` (`:1.42` → `1_42`).
fn handle_path(kind: &str, unique: &str, token: &str) -> String {
    let sender = unique.trim_start_matches(':').replace('.', "_");
    format!("{DESKTOP_PATH}/{kind}/{sender}/{token}")
}

/// A string held in a variant (the portal sends the session handle as `s`, some as `o`).
fn string_of(v: &Value<'_>) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.to_string()),
        Value::ObjectPath(p) => Some(p.to_string()),
        Value::Value(inner) => string_of(inner),
        _ => None,
    }
}

/// The `trigger_description` of each shortcut in a `shortcuts` result (`a(sa{sv})`), by slot.
fn trigger_descriptions(shortcuts: &Value<'_>) -> [Option<String>; 2] {
    let mut out = [None, None];
    let Value::Array(list) = shortcuts else {
        return out;
    };
    for item in list.iter() {
        let Value::Structure(s) = item else { continue };
        let [Value::Str(id), Value::Dict(props)] = s.fields() else {
            continue;
        };
        let Some(slot) = SHORTCUT_IDS.iter().position(|i| *i == id.as_str()) else {
            continue;
        };
        let text = props
            .iter()
            .find(|(k, _)| string_of(k).as_deref() == Some("trigger_description"))
            .and_then(|(_, v)| string_of(v))
            .filter(|t| !t.is_empty());
        out[slot] = Some(text.unwrap_or_else(|| "bound".into()));
    }
    out
}

/// The status line once the desktop answered a bind.
fn bound_status(triggers: &[Option<String>; 2]) -> String {
    let show = |t: &Option<String>| t.clone().unwrap_or_else(|| "not bound".into());
    format!(
        "through the desktop's shortcuts portal: talk {}, whisper {} (the desktop takes these \
         keys from other applications)",
        show(&triggers[0]),
        show(&triggers[1])
    )
}

/// Waits for `f` at most `limit`.
async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let what = what.to_string();
    f.or(async move {
        Timer::after(limit).await;
        Err(format!("{what}: no answer within {} s", limit.as_secs()))
    })
    .await
}

/// Where the portal's session is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Nothing asked yet (no key needed so far).
    Unbound,
    /// `CreateSession` sent; its answer comes to `request`.
    Creating { request: String },
    /// `BindShortcuts` sent for `session`; its answer comes to `request`.
    Binding { request: String, session: String },
    /// The shortcuts of `session` are the desktop's.
    Bound { session: String },
    /// The desktop refused (the status line says why); asked again when the keys change.
    Failed,
}

impl Phase {
    /// The session the portal holds for us, if any.
    fn session(&self) -> Option<&str> {
        match self {
            Phase::Binding { session, .. } | Phase::Bound { session } => Some(session),
            _ => None,
        }
    }
}

/// What the thread keeps between signals.
struct State {
    phase: Phase,
    /// The bindings ([`super::encode`]d) the last session was asked for.
    asked: [u32; 2],
    /// The shortcuts held ([`PTT`], [`WHISPER`] bits), watched or not.
    held: u8,
    /// Requests made (their handle tokens are unique per process).
    requests: u32,
}

/// A connection to the session bus whose portal has GlobalShortcuts.
pub(super) struct Portal {
    conn: Connection,
    /// The unique name of the portal (signals are matched on it).
    owner: String,
    /// Our unique name (request paths are formed from it).
    unique: String,
    /// The portal's version of the interface.
    version: u32,
}

impl Portal {
    /// Connects to the bus at `address` (`None`: the session bus) and checks that it offers the
    /// GlobalShortcuts portal, within [`CONNECT_TIMEOUT`]. `Err` is the user-facing reason.
    pub(super) fn connect(address: Option<&str>) -> Result<Portal, String> {
        async_io::block_on(within(CONNECT_TIMEOUT, "session bus", async {
            let builder = match address {
                Some(a) => zbus::connection::Builder::address(a),
                None => zbus::connection::Builder::session(),
            }
            .map_err(|e| format!("no session bus ({e})"))?;
            let conn = builder
                .method_timeout(CALL_TIMEOUT)
                .build()
                .await
                .map_err(|e| format!("no session bus ({e})"))?;
            let version = conn
                .call_method(
                    Some(DESKTOP),
                    DESKTOP_PATH,
                    Some("org.freedesktop.DBus.Properties"),
                    "Get",
                    &(INTERFACE, "version"),
                )
                .await
                .map_err(|e| format!("the session bus offers no GlobalShortcuts portal ({e})"))?
                .body()
                .deserialize::<OwnedValue>()
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0);
            let owner: String = conn
                .call_method(
                    Some("org.freedesktop.DBus"),
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus"),
                    "GetNameOwner",
                    &(DESKTOP,),
                )
                .await
                .and_then(|m| m.body().deserialize::<String>())
                .map_err(|e| format!("the desktop portal went away ({e})"))?;
            let unique = conn
                .unique_name()
                .map(|n| n.to_string())
                .ok_or("the session bus gave no name")?;
            Ok(Portal {
                conn,
                owner,
                unique,
                version,
            })
        }))
    }

    /// The thread's body: binds, follows the signals, publishes the bits until `shared.stop`.
    pub(super) fn run(self, shared: &Shared, notify: &dyn Fn()) {
        log::info!(
            "global keys through the GlobalShortcuts portal, version {}",
            self.version
        );
        async_io::block_on(self.follow(shared, notify));
        shared.down.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Follows the portal's signals until `shared.stop` (or the bus goes away).
    async fn follow(&self, shared: &Shared, notify: &dyn Fn()) {
        use std::sync::atomic::Ordering;
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(self.owner.as_str())
            .map(|b| b.build());
        let stream = match rule {
            Ok(rule) => MessageStream::for_match_rule(rule, &self.conn, Some(64)).await,
            Err(e) => Err(e),
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                shared.set_status(format!("shortcuts portal: cannot follow its signals ({e})"));
                return;
            }
        };
        let mut state = State {
            phase: Phase::Unbound,
            asked: [0; 2],
            held: 0,
            requests: 0,
        };
        let mut edges = KeyEdges::default();
        while !shared.stop.load(Ordering::Relaxed) {
            let prefer = [
                shared.prefer[0].load(Ordering::Relaxed),
                shared.prefer[1].load(Ordering::Relaxed),
            ];
            self.steer(&mut state, shared, prefer).await;
            let next = async { Some(stream.next().await) }
                .or(async {
                    Timer::after(super::IDLE_POLL).await;
                    None
                })
                .await;
            match next {
                None | Some(Some(Err(_))) => {}
                Some(None) => {
                    shared.set_status("shortcuts portal: the session bus connection ended");
                    break;
                }
                Some(Some(Ok(msg))) => self.on_signal(&mut state, shared, &msg).await,
            }
            shared.publish(&mut edges, state.held & shared.watched_bits(), notify);
        }
        if let Some(session) = state.phase.session() {
            self.close(session).await;
        }
    }

    /// Binds when a key is needed (again when the user's keys changed), closes the session
    /// when none is.
    async fn steer(&self, state: &mut State, shared: &Shared, prefer: [u32; 2]) {
        let needed = shared.watched_bits() != 0;
        if !needed {
            // Give the keys back to the other applications while nothing needs them.
            if let Some(session) = state.phase.session() {
                self.close(session).await;
                state.held = 0;
                state.phase = Phase::Unbound;
                shared.set_status(IDLE_STATUS);
            }
            return;
        }
        let settled = matches!(state.phase, Phase::Bound { .. } | Phase::Failed);
        if state.phase != Phase::Unbound && !(settled && state.asked != prefer) {
            return;
        }
        if let Some(session) = state.phase.session() {
            self.close(session).await;
        }
        state.held = 0;
        state.asked = prefer;
        state.requests += 1;
        state.phase = match self.create(state.requests).await {
            Ok(request) => {
                shared.set_status(
                    "through the desktop's shortcuts portal: waiting for the desktop to bind \
                     the keys",
                );
                Phase::Creating { request }
            }
            Err(why) => {
                shared.set_status(format!("shortcuts portal: {why}"));
                Phase::Failed
            }
        };
    }

    /// Carries out one signal of the portal: the answer to our pending request, or a shortcut
    /// of our session pressed, released or rebound.
    async fn on_signal(&self, state: &mut State, shared: &Shared, msg: &zbus::Message) {
        let header = msg.header();
        let (Some(member), Some(path)) = (header.member(), header.path()) else {
            return;
        };
        let ours = header.interface().is_some_and(|i| i.as_str() == INTERFACE);
        match (member.as_str(), &state.phase) {
            ("Response", Phase::Creating { request }) if path.as_str() == request => {
                let answer = msg
                    .body()
                    .deserialize::<(u32, HashMap<String, OwnedValue>)>();
                state.phase = match answer {
                    Ok((0, results)) => match results
                        .get("session_handle")
                        .and_then(|v| string_of(v))
                    {
                        Some(session) => {
                            state.requests += 1;
                            match self.bind(&session, state.asked, state.requests).await {
                                Ok(request) => Phase::Binding { request, session },
                                Err(why) => {
                                    shared.set_status(format!("shortcuts portal: {why}"));
                                    self.close(&session).await;
                                    Phase::Failed
                                }
                            }
                        }
                        None => {
                            shared.set_status("shortcuts portal: no session handle in its answer");
                            Phase::Failed
                        }
                    },
                    Ok((code, _)) => {
                        shared.set_status(format!(
                            "shortcuts portal: no session ({})",
                            refusal(code)
                        ));
                        Phase::Failed
                    }
                    Err(e) => {
                        shared.set_status(format!("shortcuts portal: bad answer ({e})"));
                        Phase::Failed
                    }
                };
            }
            ("Response", Phase::Binding { request, session }) if path.as_str() == request => {
                let session = session.clone();
                let answer = msg
                    .body()
                    .deserialize::<(u32, HashMap<String, OwnedValue>)>();
                state.phase = match answer {
                    Ok((0, results)) => {
                        let triggers = results
                            .get("shortcuts")
                            .map(|v| trigger_descriptions(v))
                            .unwrap_or_default();
                        shared.set_status(bound_status(&triggers));
                        Phase::Bound { session }
                    }
                    other => {
                        let why = match other {
                            Ok((code, _)) => refusal(code).to_string(),
                            Err(e) => format!("bad answer: {e}"),
                        };
                        shared.set_status(format!(
                            "shortcuts portal: the keys were not bound ({why})"
                        ));
                        self.close(&session).await;
                        Phase::Failed
                    }
                };
            }
            ("Activated" | "Deactivated", Phase::Bound { session }) if ours => {
                let Ok((from, id, _, _)) =
                    msg.body()
                        .deserialize::<(OwnedObjectPath, String, u64, HashMap<String, OwnedValue>)>(
                        )
                else {
                    return;
                };
                let slot = SHORTCUT_IDS.iter().position(|i| *i == id);
                if let (true, Some(slot)) = (from.as_str() == session, slot) {
                    let bit = [PTT, WHISPER][slot];
                    if member.as_str() == "Activated" {
                        state.held |= bit;
                    } else {
                        state.held &= !bit;
                    }
                }
            }
            ("ShortcutsChanged", Phase::Bound { session }) if ours => {
                let changed = msg.body().deserialize::<(OwnedObjectPath, OwnedValue)>();
                if let Ok((from, shortcuts)) = changed {
                    if from.as_str() == session {
                        shared.set_status(bound_status(&trigger_descriptions(&shortcuts)));
                    }
                }
            }
            _ => {}
        }
    }

    /// Sends `CreateSession`; returns the request path its answer comes to.
    async fn create(&self, n: u32) -> Result<String, String> {
        let token = format!("gui_demo_{}_{n}", std::process::id());
        let options: HashMap<&str, Value<'_>> = HashMap::from([
            ("handle_token", Value::from(token.as_str())),
            ("session_handle_token", Value::from(token.as_str())),
        ]);
        self.request("CreateSession", &token, &(options,)).await
    }

    /// Sends `BindShortcuts` for `session` with the bindings `asked` ([`super::encode`]d) as
    /// preferred triggers; returns the request path its answer comes to.
    async fn bind(&self, session: &str, asked: [u32; 2], n: u32) -> Result<String, String> {
        let token = format!("gui_demo_{}_{n}", std::process::id());
        let shortcuts: Vec<(&str, HashMap<&str, Value<'_>>)> = (0..2)
            .map(|slot| {
                let mut props = HashMap::from([("description", Value::from(DESCRIPTIONS[slot]))]);
                if let Some(t) = decode(asked[slot]).and_then(trigger) {
                    props.insert("preferred_trigger", Value::from(t));
                }
                (SHORTCUT_IDS[slot], props)
            })
            .collect();
        let options: HashMap<&str, Value<'_>> =
            HashMap::from([("handle_token", Value::from(token.as_str()))]);
        let session_path =
            ObjectPath::try_from(session).map_err(|e| format!("bad session handle ({e})"))?;
        self.request(
            "BindShortcuts",
            &token,
            &(session_path, shortcuts, "", options),
        )
        .await
    }

    /// Calls the portal's `method` with `body` (whose options carry `handle_token: token`)
    /// within [`CALL_TIMEOUT`]; returns the request path its answer comes to (the one the
    /// portal names, or the one the token implies).
    async fn request<B>(&self, method: &str, token: &str, body: &B) -> Result<String, String>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let expected = handle_path("request", &self.unique, token);
        within(CALL_TIMEOUT, method, async {
            let reply = self
                .conn
                .call_method(Some(DESKTOP), DESKTOP_PATH, Some(INTERFACE), method, body)
                .await
                .map_err(|e| format!("{method} failed ({e})"))?;
            Ok(reply
                .body()
                .deserialize::<OwnedObjectPath>()
                .map(|p| p.to_string())
                .unwrap_or(expected))
        })
        .await
    }

    /// Closes `session` (its shortcuts are released); errors are only logged.
    async fn close(&self, session: &str) {
        let r = within(CALL_TIMEOUT, "Session.Close", async {
            self.conn
                .call_method(Some(DESKTOP), session, Some(SESSION), "Close", &())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await;
        if let Err(e) = r {
            log::debug!("closing the shortcuts session {session}: {e}");
        }
    }
}

/// A `Response` code in words.
fn refusal(code: u32) -> &'static str {
    match code {
        1 => "the dialog was cancelled",
        _ => "the desktop refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::global_keys::MOUSE_BACK;

    #[test]
    fn preferred_triggers_follow_the_shortcuts_spec() {
        assert_eq!(trigger(Binding::Key(Key::V)).as_deref(), Some("v"));
        assert_eq!(trigger(Binding::Key(Key::F13)).as_deref(), Some("F13"));
        assert_eq!(trigger(Binding::Key(Key::Num7)).as_deref(), Some("7"));
        assert_eq!(trigger(Binding::Key(Key::Space)).as_deref(), Some("space"));
        assert_eq!(
            trigger(Binding::Key(Key::PageDown)).as_deref(),
            Some("Next")
        );
        // The desktop chooses with the user: mouse buttons, modifiers alone.
        assert_eq!(trigger(Binding::Mouse(MOUSE_BACK)), None);
        assert_eq!(trigger(Binding::Key(Key::ControlLeft)), None);
    }

    #[test]
    fn request_paths_are_formed_as_the_portal_does() {
        assert_eq!(
            handle_path("request", ":1.42", "t1"),
            "/org/freedesktop/portal/desktop/request/1_42/t1"
        );
    }

    #[test]
    fn the_status_names_each_bound_trigger() {
        let s = bound_status(&[Some("F13".into()), None]);
        assert!(
            s.contains("talk F13") && s.contains("whisper not bound"),
            "{s}"
        );
    }
}
