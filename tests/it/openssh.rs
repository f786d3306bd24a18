//! Against a real OpenSSH `sshd` on loopback, started by each test with a
//! temporary config, host key and authorized key. `.ci/run` installs
//! openssh-server; without it these tests fail rather than pass.

use crate::support;

use std::time::Duration;

use ssh_dial::testing::{ssh_keygen, Sshd};
use ssh_dial::{Auth, Dialer, HostKeys, Phase};

fn dialer(known_hosts: &std::path::Path) -> Dialer {
    Dialer::builder()
        .timeout(Duration::from_secs(10))
        .exec_timeout(Some(Duration::from_secs(10)))
        .host_keys(HostKeys::known_hosts(known_hosts))
        .build()
}

#[tokio::test]
async fn key_auth_exec_output_and_exit_status() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    let client = dialer(&known)
        .dial(
            sshd.addr(),
            sshd.user(),
            Auth::key_file(sshd.user_key_path(), None),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));

    let out = client.exec("echo hi").await.unwrap();
    assert_eq!(out.stdout, b"hi\n");
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());

    let out = client.exec("exit 7").await.unwrap();
    assert_eq!(out.status.code(), Some(7));

    let out = client.exec("echo to-out; echo to-err >&2").await.unwrap();
    assert_eq!(out.stdout, b"to-out\n");
    assert_eq!(out.stderr, b"to-err\n");

    client.close().await;
    assert!(
        sshd.log().contains("userauth-request"),
        "the log records auth (control for the next test)"
    );
}

#[tokio::test]
async fn in_memory_key_works_too() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(
        &sshd,
        Dialer::builder().exec_timeout(Some(Duration::from_secs(10))),
    )
    .await;
    assert_eq!(client.exec("printf abc").await.unwrap().stdout, b"abc");
}

#[tokio::test]
async fn wrong_host_key_fails_key_exchange_and_sshd_sees_no_auth() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let other = sshd.dir().join("other_host_key");
    ssh_keygen(&other, "ed25519", "").unwrap();
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_line: String = other_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known = sshd
        .write_file(
            "known_hosts_wrong",
            &format!("[127.0.0.1]:{} {other_line}", sshd.addr().port()),
        )
        .unwrap();
    let err = dialer(&known)
        .dial(
            sshd.addr(),
            sshd.user(),
            Auth::key_file(sshd.user_key_path(), None),
        )
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::KeyExchange, "{err}");
    assert!(err.is_host_key_mismatch(), "{err}");
    assert!(err.to_string().contains("known_hosts_wrong:1"), "{err}");

    // sshd logs the closed connection; wait for that, then look for auth.
    let log_settled = support::wait_until(Duration::from_secs(5), || {
        let log = sshd.log();
        log.contains("Connection closed")
            || log.contains("Disconnected")
            || log.contains("disconnect")
    })
    .await;
    let log = sshd.log();
    assert!(
        log_settled,
        "sshd never logged the connection's end:\n{log}"
    );
    assert!(
        !log.contains("userauth-request"),
        "sshd saw an auth attempt:\n{log}"
    );
}

#[tokio::test]
async fn rejected_key_is_an_auth_error() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    let stranger = sshd.dir().join("stranger");
    ssh_keygen(&stranger, "ed25519", "").unwrap();
    let err = dialer(&known)
        .dial(sshd.addr(), sshd.user(), Auth::key_file(&stranger, None))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::Auth, "{err}");
    assert!(err.is_auth_rejected(), "{err}");
    assert!(err.to_string().contains("publickey"), "{err}");
}

#[tokio::test]
async fn exec_timeout_against_sshd_leaves_the_client_usable() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(
        &sshd,
        Dialer::builder().exec_timeout(Some(Duration::from_secs(10))),
    )
    .await;
    let err = client
        .command("sleep 30")
        .timeout(Duration::from_millis(300))
        .output()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(client.exec("echo again").await.unwrap().stdout, b"again\n");
}

/// Processes whose command line is exactly `cmdline` (NUL-separated).
fn processes_running(cmdline: &[u8]) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == cmdline))
        .count()
}

/// A timed-out exec sends a `signal` request (KILL) before closing its
/// channel. sshd (7.9 and later) kills the command's process group, for
/// users other than root: for a root login it runs the session without
/// privilege separation and refuses ("session signalling requires privilege
/// separation"), and the command runs on after its channel is closed.
#[tokio::test]
async fn a_timed_out_command_is_sent_a_kill_signal() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(
        &sshd,
        Dialer::builder().exec_timeout(Some(Duration::from_secs(10))),
    )
    .await;
    let cmdline = b"sleep\x0031.4159\x00";
    let err = client
        .command("exec sleep 31.4159")
        .timeout(Duration::from_millis(500))
        .output()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        support::wait_until(Duration::from_secs(3), || sshd.log().contains("req signal")).await,
        "no signal request reached sshd: {}",
        sshd.log()
    );
    // SAFETY: getuid(2) has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        assert!(
            sshd.log()
                .contains("session signalling requires privilege separation"),
            "{}",
            sshd.log()
        );
    } else {
        assert!(
            support::wait_until(Duration::from_secs(3), || processes_running(cmdline) == 0).await,
            "the command runs on after its exec timed out: {}",
            sshd.log()
        );
    }
    assert!(client.exec("true").await.unwrap().status.success());
    // Not left for the next test.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == cmdline) {
            if let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() {
                // SAFETY: kill(2) on a pid we just read; at worst it is gone.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The channel window sshd is told: 8 MiB by default, and what
/// `channel_window` says (as sshd logs each session channel it opens).
#[tokio::test]
async fn sshd_sees_the_channel_window() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    for (builder, window) in [
        (Dialer::builder(), 8 << 20),
        (Dialer::builder().channel_window(3 << 20), 3 << 20),
        (Dialer::builder().channel_window(0), 32 << 10),
    ] {
        let client = support::connect_sshd(&sshd, builder).await;
        client.exec("true").await.unwrap();
        client.close().await;
        let win = format!(" win {window} max ");
        let log = sshd.log();
        assert!(
            log.lines()
                .any(|l| l.contains("ctype session") && l.contains(&win)),
            "{win}\n{log}"
        );
    }
}
