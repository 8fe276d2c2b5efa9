//! The `relay` executable as an operator runs it: exit statuses as `relay/OPERATORS.md` states them
//! (2 for a bad command line, 1 for a configuration that cannot be used, 0 after `--help` or a
//! clean stop), and learning the port chosen for `--listen 127.0.0.1:0` from its first stdout line.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use voice_core::proto::tcp::ServerMessage;

const RELAY: &str = env!("CARGO_BIN_EXE_relay");

fn status(args: &[&str]) -> i32 {
    let out = Command::new(RELAY)
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run relay");
    out.status.code().expect("exit status")
}

/// A file in a directory of the system temp dir private to this test process, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("relay-binary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        TempFile(p)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn bad_flags_exit_2_and_unusable_configurations_exit_1() {
    assert_eq!(status(&["--help"]), 0);
    assert_eq!(status(&["--bogus"]), 2);
    assert_eq!(status(&["--listen"]), 2);
    assert_eq!(status(&["--listen", "not-an-address"]), 2);
    assert_eq!(status(&["--config", "/nonexistent/relay.toml"]), 1);
    let unparsable = TempFile::new("unparsable.toml", "max_sessions = [\n");
    assert_eq!(status(&["--config", unparsable.path()]), 1);
    let unknown_key = TempFile::new("unknown.toml", "no_such_key = 1\n");
    assert_eq!(status(&["--config", unknown_key.path()]), 1);
    let invalid = TempFile::new("invalid.toml", "default_channel = 99\n");
    assert_eq!(status(&["--config", invalid.path()]), 1);
}

/// Starts the relay binary with `args`; returns it with its address and the fingerprint line.
fn spawn(args: &[&str]) -> (std::process::Child, SocketAddr, String) {
    let mut child = Command::new(RELAY)
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn relay");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim_end()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let mut second = String::new();
    out.read_line(&mut second).unwrap();
    (child, addr, second.trim_end().to_owned())
}

fn identity_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relay-binary-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_port_chosen_for_listen_port_0_is_printed_and_sigterm_stops_cleanly() {
    let dir = identity_dir("port0");
    let (mut child, addr, fp_line) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--identity-dir",
        dir.to_str().unwrap(),
    ]);
    assert_ne!(addr.port(), 0);
    // The second line is the certificate's fingerprint; the client pins it.
    let fp: voice_tls::Fingerprint = fp_line
        .strip_prefix("fingerprint ")
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("unexpected second line {fp_line:?}"));
    remember(addr, Some(fp));
    // The relay made its token signing key next to its certificate: one command mints a token.
    let out = Command::new(RELAY)
        .args([
            "token",
            "--identity-dir",
            dir.to_str().unwrap(),
            "--name",
            "a",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // TCP (TLS) and UDP both answer on it.
    let mut c = Client::connect_with(addr, "a", Some(token));
    c.send(&voice_core::proto::tcp::ClientMessage::ListChannels);
    assert!(matches!(c.recv(), ServerMessage::ChannelList { .. }));
    stop(child_stop(&mut child));
    // A restart reuses the identity: the same fingerprint.
    let (mut again, _, line) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--identity-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(line, fp_line);
    stop(child_stop(&mut again));
    // The development mode says so instead of a fingerprint.
    // (With --open: no token either.)
    let (mut plain, addr, line) =
        spawn(&["--listen", "127.0.0.1:0", "--insecure-plaintext", "--open"]);
    assert_eq!(line, "insecure-plaintext");
    remember(addr, None);
    let mut c = Client::connect(addr, "b");
    c.send(&voice_core::proto::tcp::ClientMessage::ListChannels);
    assert!(matches!(c.recv(), ServerMessage::ChannelList { .. }));
    stop(child_stop(&mut plain));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn stop(code: Option<i32>) {
    assert_eq!(code, Some(0));
}

/// SIGTERM, then the exit status (a clean stop is 0).
fn child_stop(child: &mut std::process::Child) -> Option<i32> {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("relay did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    code
}

#[test]
fn keygen_and_token_mint_a_token_the_verifier_accepts() {
    let dir = identity_dir("tokens");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("k.pem");
    let out = Command::new(RELAY)
        .args(["keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("public "))
        .expect("public key line")
        .to_owned();
    // An existing key is never overwritten.
    assert_eq!(status(&["keygen", "--out", key.to_str().unwrap()]), 1);
    let out = Command::new(RELAY)
        .args(["token", "--key", key.to_str().unwrap(), "--sub", "u1"])
        .args(["--name", "alice", "--channels", "1,2", "--aud", "r1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let jwt = String::from_utf8(out.stdout).unwrap();
    let v = relay::token::Verifier::new(&[public], "r1").unwrap();
    let claims = v.verify(jwt.trim()).unwrap();
    assert_eq!((claims.sub.as_str(), claims.name.as_str()), ("u1", "alice"));
    assert!(claims.may_join(voice_core::proto::ChannelId(2)));
    assert!(!claims.may_join(voice_core::proto::ChannelId(3)));
    assert_eq!(status(&["token", "--key", key.to_str().unwrap()]), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
