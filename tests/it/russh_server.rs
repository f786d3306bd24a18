//! Dials against a real russh server (`ssh_dial::testing::TestServer`):
//! authentication, exec and the errors for each. Host keys are in
//! `trust.rs`.

use crate::support;

use std::time::Duration;

use ssh_dial::testing::{ed25519_key, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys, Phase};

fn dialer(host_keys: HostKeys) -> Dialer {
    Dialer::builder()
        .timeout(Duration::from_secs(5))
        .host_keys(host_keys)
        .build()
}

#[tokio::test]
async fn password_auth_and_exec() {
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let client = dialer(server.host_keys())
        .dial(server.addr(), "alice", Auth::password("pw"))
        .await
        .unwrap();
    assert_eq!(client.remote_addr(), Some(server.addr()));
    let out = client.exec("echo hi; echo oops >&2; exit 7").await.unwrap();
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.status.code(), Some(7));
    assert!(!out.status.success());
    client.close().await;
}

#[tokio::test]
async fn in_memory_key_auth() {
    let key = ed25519_key().unwrap();
    let server = TestServer::builder()
        .authorized_key("bob", key.public_key().clone())
        .start()
        .unwrap();
    let client = dialer(server.host_keys())
        .dial(server.addr(), "bob", Auth::key(key))
        .await
        .unwrap();
    assert!(client.exec("true").await.unwrap().status.success());
}

#[tokio::test]
async fn key_file_auth_with_and_without_passphrase() {
    if !support::openssh(&["ssh-keygen"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("id_plain");
    let locked = dir.path().join("id_locked");
    for (path, pass) in [(&plain, ""), (&locked, "correct horse")] {
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", pass, "-f"])
            .arg(path)
            .status()
            .expect("ssh-keygen runs")
            .success();
        assert!(ok);
    }
    let public = |p: &std::path::Path| {
        ssh_dial::russh::keys::load_public_key(p.with_extension("pub")).unwrap()
    };
    let server = TestServer::builder()
        .authorized_key("carol", public(&plain))
        .authorized_key("carol", public(&locked))
        .start()
        .unwrap();
    let d = dialer(server.host_keys());
    d.dial(server.addr(), "carol", Auth::key_file(&plain, None))
        .await
        .expect("plain key");
    d.dial(
        server.addr(),
        "carol",
        Auth::key_file(&locked, Some("correct horse")),
    )
    .await
    .expect("encrypted key, right passphrase");

    let err = d
        .dial(
            server.addr(),
            "carol",
            Auth::key_file(&locked, Some("wrong battery")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::Auth);
    assert!(err.is_invalid_input() && !err.is_timeout(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("id_locked") && !msg.contains("wrong battery"),
        "{msg}"
    );
    assert!(!format!("{err:?}").contains("wrong battery"));
}

#[tokio::test]
async fn rejected_credentials_are_an_auth_error_without_the_secret() {
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let err = dialer(server.host_keys())
        .dial(server.addr(), "alice", Auth::password("not-the-password"))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::Auth);
    assert!(
        err.is_auth_rejected() && !err.is_timeout() && !err.is_host_key(),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("tried password") && msg.contains("\"alice\""),
        "{msg}"
    );
    assert!(!msg.contains("not-the-password") && !format!("{err:?}").contains("not-the-password"));
}

#[tokio::test]
async fn a_peer_that_closes_at_once_is_closed_in_version_exchange() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let err = dialer(HostKeys::insecure_accept_any())
        .dial(addr, "u", Auth::password("p"))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::VersionExchange, "{err}");
    assert!(err.is_closed() && !err.is_timeout(), "{err}");
}

#[tokio::test]
async fn ipv6_literals_are_dialed_and_shown_in_brackets() {
    let listener = std::net::TcpListener::bind("[::1]:0").expect("this machine has IPv6 loopback");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = dialer(HostKeys::insecure_accept_any())
        .dial(format!("[::1]:{port}"), "u", Auth::password("p"))
        .await
        .unwrap_err();
    assert!(err.is_refused(), "{err}");
    assert!(
        err.to_string().starts_with(&format!("dial [::1]:{port}")),
        "{err}"
    );
}
