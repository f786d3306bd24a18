//! Every misbehaving peer fails the dial in the right phase, on time, with
//! the right classification.

mod support;

use std::time::{Duration, Instant};

use ssh_dial::testing::{MisbehavingServer, Mode};
use ssh_dial::{Auth, Dialer, HostKeys, Phase};

const DEADLINE: Duration = Duration::from_secs(1);
/// How far past the deadline a dial may return.
const SLACK: Duration = Duration::from_millis(100);

async fn dial_mode(mode: Mode) {
    let server = MisbehavingServer::start(mode).expect("server starts");
    let dialer = Dialer::builder()
        .timeout(DEADLINE)
        .host_keys(HostKeys::insecure_accept_any())
        .build();
    let start = Instant::now();
    let err = dialer
        .dial(server.addr(), "test", Auth::password("test"))
        .await
        .expect_err("a misbehaving peer cannot be dialed");
    let took = start.elapsed();
    let msg = err.to_string();

    assert!(
        took <= DEADLINE + SLACK,
        "{mode}: returned after {took:?}: {msg}"
    );
    assert_eq!(err.is_timeout(), mode.stalls(), "{mode}: is_timeout: {msg}");
    if mode == Mode::ResetAfterBanner {
        assert!(
            matches!(err.phase(), Phase::VersionExchange | Phase::KeyExchange),
            "{mode}: phase {}: {msg}",
            err.phase()
        );
        assert!(err.is_closed(), "{mode}: is_closed: {msg}");
    } else {
        assert_eq!(err.phase(), mode.expected_phase(), "{mode}: {msg}");
    }
    assert!(msg.starts_with(&format!("dial {}", server.addr())), "{msg}");
    assert!(msg.contains(err.phase().as_str()), "{msg}");
    if mode.stalls() {
        assert!(
            took >= DEADLINE,
            "{mode}: a stall ended early, after {took:?}: {msg}"
        );
        assert!(msg.contains("timed out after 1.0"), "{msg}");
    }
    assert_eq!(
        err.remote_addr(),
        if mode == Mode::BlackHole {
            None
        } else {
            Some(server.addr())
        }
    );
    assert!(err.elapsed() <= took);
}

#[tokio::test]
async fn silent_peer_times_out_in_version_exchange() {
    dial_mode(Mode::Silent).await;
}

#[tokio::test]
async fn dripping_banner_times_out_in_version_exchange() {
    dial_mode(Mode::Drip).await;
}

#[tokio::test]
async fn stall_after_banner_times_out_in_key_exchange() {
    dial_mode(Mode::StallAfterBanner).await;
}

#[tokio::test]
async fn stall_after_kexinit_times_out_in_key_exchange() {
    dial_mode(Mode::StallAfterKexInit).await;
}

#[tokio::test]
async fn stalled_auth_times_out_in_auth() {
    dial_mode(Mode::StallAuth).await;
}

#[tokio::test]
async fn reset_after_banner_fails_fast_as_closed() {
    dial_mode(Mode::ResetAfterBanner).await;
}

#[tokio::test]
async fn garbage_fails_fast_as_protocol_error() {
    dial_mode(Mode::Garbage).await;
    let server = MisbehavingServer::start(Mode::Garbage).unwrap();
    let err = Dialer::builder()
        .host_keys(HostKeys::insecure_accept_any())
        .build()
        .dial(server.addr(), "test", Auth::password("test"))
        .await
        .unwrap_err();
    assert!(
        err.is_protocol() && !err.is_timeout() && !err.is_closed(),
        "{err}"
    );
}

#[tokio::test]
async fn black_hole_times_out_in_connect() {
    dial_mode(Mode::BlackHole).await;
}

#[tokio::test]
async fn connect_timeout_bounds_an_attempt_within_the_total() {
    let hole = MisbehavingServer::start(Mode::BlackHole).unwrap();
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Some(Duration::from_millis(300)))
        .host_keys(HostKeys::insecure_accept_any())
        .build();
    let start = Instant::now();
    let err = dialer
        .dial(hole.addr(), "u", Auth::password("p"))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(1),
        "{took:?}: {err}"
    );
    assert!(err.is_timeout() && err.is_connect(), "{err}");
}

#[tokio::test]
async fn refused_connection_is_recognisable() {
    let refusing = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = Dialer::builder()
        .host_keys(HostKeys::insecure_accept_any())
        .build()
        .dial(refusing, "u", Auth::password("p"))
        .await
        .unwrap_err();
    assert!(
        err.is_refused() && err.is_connect() && !err.is_timeout(),
        "{err}"
    );
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}

#[tokio::test]
async fn localhost_tries_every_resolved_address() {
    // "localhost" resolves to ::1 and/or 127.0.0.1; a port nobody listens
    // on refuses on each, and every attempt is reported.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Dialer::builder()
        .host_keys(HostKeys::insecure_accept_any())
        .build()
        .dial(("localhost", port), "u", Auth::password("p"))
        .await
        .unwrap_err();
    let resolved: Vec<_> = tokio::net::lookup_host(("localhost", port))
        .await
        .unwrap()
        .collect();
    let msg = err.to_string();
    for addr in &resolved {
        assert!(
            msg.contains(&addr.to_string()),
            "{addr} missing from: {msg}"
        );
    }
    assert!(err.is_refused(), "{msg}");
}
