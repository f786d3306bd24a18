//! Passwords and passphrases never reach logs (ours or russh's, at TRACE),
//! `Debug` output or error messages.

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ssh_dial::testing::TestServer;
use ssh_dial::{Auth, Dialer};

const PASSWORD: &str = "pw-7c1e5d-secret";
const WRONG_PASSWORD: &str = "wrong-9a4f2b-secret";
const PASSPHRASE: &str = "pp-3b8e0a-secret";
const WRONG_PASSPHRASE: &str = "wrongpp-5d2c7f-secret";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_appear_in_no_log_debug_or_error() {
    if !support::openssh(&["ssh-keygen"]) {
        return;
    }
    // The subscriber below is the process's: alone, so that it captures
    // this test's logs only and slows no other test.
    if support::rerun_alone() {
        return;
    }
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init(); // also forwards russh's `log` records

    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("id_locked");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", PASSPHRASE, "-f"])
        .arg(&key_path)
        .status()
        .expect("ssh-keygen runs")
        .success();
    assert!(ok);
    let public = ssh_dial::russh::keys::load_public_key(key_path.with_extension("pub")).unwrap();
    let server = TestServer::builder()
        .password("alice", PASSWORD)
        .authorized_key("alice", public)
        .start()
        .unwrap();
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(5))
        .host_keys(server.host_keys())
        .build();

    let mut shown = Vec::new();
    let auths = [
        Auth::password(PASSWORD),
        Auth::password(WRONG_PASSWORD),
        Auth::key_file(&key_path, Some(PASSPHRASE)),
        Auth::key_file(&key_path, Some(WRONG_PASSPHRASE)),
    ];
    let mut successes = 0;
    for auth in auths {
        shown.push(format!("{auth:?} {auth:#?}"));
        match dialer.dial(server.addr(), "alice", auth).await {
            Ok(client) => {
                successes += 1;
                shown.push(format!("{client:?}"));
                client.close().await;
            }
            Err(e) => shown.push(format!("{e} {e:?} {e:#?}")),
        }
    }
    assert_eq!(
        successes, 2,
        "the right password and passphrase work: {shown:#?}"
    );

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    // The capture works, for our events and russh's alike; otherwise the
    // checks below would pass for want of anything to read.
    assert!(logs.contains("ssh_dial::dial"), "no ssh-dial span captured");
    assert!(logs.contains("russh"), "no russh record captured");
    // One span per dial, an event per phase with its duration, at debug.
    for event in [
        "resolved",
        "connected",
        "handshake done",
        "authenticated",
        "dialed",
    ] {
        assert!(logs.contains(event), "no {event:?} event");
    }
    assert!(
        logs.contains("ssh_dial::dial{target=") && logs.contains("user=alice"),
        "span fields missing"
    );
    for secret in [PASSWORD, WRONG_PASSWORD, PASSPHRASE, WRONG_PASSPHRASE] {
        assert!(!logs.contains(secret), "a secret reached the logs");
        for s in &shown {
            assert!(
                !s.contains(secret),
                "a secret reached Debug or Display: {s}"
            );
        }
    }
}
