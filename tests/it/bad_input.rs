//! Bad input gets a clear error: no panic, no hang.

use std::time::Duration;

use ssh_dial::testing::TestServer;
use ssh_dial::{Auth, Dialer, HostKeys, Phase};

fn dialer() -> Dialer {
    Dialer::builder()
        .timeout(Duration::from_secs(3))
        .host_keys(HostKeys::insecure_accept_any())
        .build()
}

#[tokio::test]
async fn unparseable_addresses_fail_in_resolve() {
    for bad in [
        "",
        "host:notaport",
        "host:99999",
        "[::1",
        "[::1]x",
        "two words:22",
        "host:",
        "host:22:33",
        "1.2.3.4:22:33",
        "host:+22",
    ] {
        let err = dialer()
            .dial(bad, "u", Auth::password("p"))
            .await
            .unwrap_err();
        assert_eq!(err.phase(), Phase::Resolve, "{bad:?}: {err}");
        assert!(
            err.is_invalid_input() && !err.is_timeout(),
            "{bad:?}: {err}"
        );
        assert!(
            err.to_string().contains("invalid address"),
            "{bad:?}: {err}"
        );
    }
}

#[tokio::test]
async fn port_zero_is_refused_up_front() {
    for addr in ["127.0.0.1:0", "example.com:0"] {
        let err = dialer()
            .dial(addr, "u", Auth::password("p"))
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(err.to_string().contains("port 0"), "{err}");
    }
    let err = dialer()
        .dial(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            "u",
            Auth::password("p"),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
}

#[tokio::test]
async fn unresolvable_host_fails_in_resolve() {
    // `.invalid` is reserved (RFC 2606) and never resolves.
    let err = dialer()
        .dial("no-such-host.invalid:22", "u", Auth::password("p"))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::Resolve, "{err}");
    assert!(err.is_resolve() && !err.is_invalid_input(), "{err}");
}

#[tokio::test]
async fn unreadable_or_bogus_key_files_fail_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "this is not a key").unwrap();
    let missing = dir.path().join("missing");
    // No server listens here; the key must fail first.
    for path in [missing, garbage, dir.path().to_path_buf()] {
        let err = dialer()
            .dial("127.0.0.1:9", "u", Auth::key_file(&path, None))
            .await
            .unwrap_err();
        assert_eq!(err.phase(), Phase::Auth, "{err}");
        assert!(err.is_invalid_input(), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            err.remote_addr(),
            None,
            "connected despite a bad key: {err}"
        );
    }
}

#[tokio::test]
async fn empty_or_unreadable_known_hosts_refuses_the_host_clearly() {
    let server = TestServer::builder().password("u", "p").start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let err = Dialer::builder()
        .host_keys(HostKeys::known_hosts(&empty))
        .build()
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::KeyExchange);
    assert!(err.is_host_key(), "{err}");
    assert!(err.to_string().contains("no entries"), "{err}");

    // A directory where the file should be cannot be read.
    let err = Dialer::builder()
        .host_keys(HostKeys::known_hosts(dir.path()))
        .build()
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .unwrap_err();
    assert!(err.is_host_key(), "{err}");
    assert!(err.to_string().contains("cannot read known_hosts"), "{err}");
    assert_eq!(server.auth_attempts(), 0);
}

#[tokio::test]
async fn zero_timeout_fails_at_once() {
    let server = TestServer::builder().password("u", "p").start().unwrap();
    let err = Dialer::builder()
        .timeout(Duration::ZERO)
        .host_keys(server.host_keys())
        .build()
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn huge_timeouts_mean_no_limit_not_a_panic() {
    let server = TestServer::builder().password("u", "p").start().unwrap();
    let client = Dialer::builder()
        .timeout(Duration::MAX)
        .connect_timeout(Some(Duration::MAX))
        .exec_timeout(Some(Duration::MAX))
        .host_keys(server.host_keys())
        .build()
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .unwrap();
    assert!(client.exec("true").await.unwrap().status.success());
}

#[test]
fn invalid_pins_are_rejected_when_built() {
    let err = HostKeys::pinned(["SHA256:not base64!", "ssh-ed25519"]).unwrap_err();
    assert!(err.to_string().contains("invalid pinned host key"), "{err}");
}

/// A host written into known_hosts as a pattern (`*`, `a,b`, `!x`) would
/// vouch for other hosts: such names are refused before any connection,
/// and accept-new writes nothing.
#[tokio::test]
async fn pattern_syntax_in_a_host_is_invalid_input_and_never_learned() {
    let server = TestServer::builder().password("u", "p").start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(3))
        .host_keys(HostKeys::accept_new(&path))
        .build();
    let port = server.addr().port();
    for host in [
        "*",
        "evil,*",
        "127.0.0.1,*",
        "!x",
        "h?st",
        "#h",
        "-oProxyCommand=x",
        "a|b",
    ] {
        let err = dialer
            .dial((host, port), "u", Auth::password("p"))
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{host:?}: {err}");
        assert_eq!(err.remote_addr(), None, "{host:?}: connected");
    }
    assert_eq!(server.auth_attempts(), 0);
    assert!(!path.exists(), "nothing learned");
}
