//! Every misbehaving peer fails the dial in the right phase, on time, with
//! the right classification.

use crate::support;

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
    // The black hole's own queue-filling connection is one of ours.
    let sockets_before = support::sockets_to(server.addr());
    let start = Instant::now();
    let err = dialer
        .dial(server.addr(), "test", Auth::password("test"))
        .await
        .expect_err("a misbehaving peer cannot be dialed");
    let took = start.elapsed();
    let msg = err.to_string();
    // One printable line that shows its cause, and no raw peer text
    // further down the chain for an error reporter to print.
    assert!(
        msg.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
        "{mode}: {msg:?}"
    );
    assert!(std::error::Error::source(&err).is_none(), "{mode}: {msg}");
    assert_eq!(
        support::sockets_to(server.addr()),
        sockets_before,
        "{mode}: a socket to the peer is still open as the dial returns: {msg}"
    );

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

/// Every mode, at once: each fails in its phase, on time, classified, with
/// nothing left open as `dial` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaving_peer_fails_in_its_phase_on_time() {
    let mut modes = tokio::task::JoinSet::new();
    for mode in Mode::ALL {
        modes.spawn(dial_mode(mode));
    }
    while let Some(done) = modes.join_next().await {
        done.unwrap();
    }
}

#[tokio::test]
async fn garbage_fails_fast_as_protocol_error() {
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

#[tokio::test]
async fn a_keyboard_interactive_storm_is_given_up_at_once() {
    let server = MisbehavingServer::start(Mode::KeyboardInteractiveStorm).unwrap();
    let start = Instant::now();
    let err = Dialer::builder()
        .timeout(Duration::from_secs(5))
        .host_keys(HostKeys::insecure_accept_any())
        .build()
        .dial(server.addr(), "test", Auth::password("test"))
        .await
        .unwrap_err();
    assert!(err.is_auth_rejected(), "{err}");
    assert!(err.to_string().contains("rounds"), "{err}");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "took {:?}",
        start.elapsed()
    );
}

/// An ssh-agent on `path` that lists `key` and never answers a request to
/// sign with it. Its threads live as long as the test process.
fn stalling_agent(path: &std::path::Path, key: &russh::keys::PublicKey) {
    use std::io::{Read, Write};
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let blob = key.to_bytes().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let blob = blob.clone();
            std::thread::spawn(move || loop {
                let mut len = [0u8; 4];
                if conn.read_exact(&mut len).is_err() {
                    return;
                }
                let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
                if conn.read_exact(&mut msg).is_err() {
                    return;
                }
                if msg.first() == Some(&11) {
                    // SSH_AGENT_IDENTITIES_ANSWER with one key.
                    let mut body = vec![12u8];
                    body.extend_from_slice(&1u32.to_be_bytes());
                    body.extend_from_slice(&(blob.len() as u32).to_be_bytes());
                    body.extend_from_slice(&blob);
                    body.extend_from_slice(&0u32.to_be_bytes());
                    let mut reply = (body.len() as u32).to_be_bytes().to_vec();
                    reply.extend_from_slice(&body);
                    if conn.write_all(&reply).is_err() {
                        return;
                    }
                }
                // A signing request is never answered.
            });
        }
    });
}

/// At the deadline russh's session task is waiting on the handle (for the
/// agent's signature), not on the socket: the dial still returns on time
/// with the socket closed.
#[tokio::test]
async fn a_stalled_agent_signature_times_out_on_time_with_nothing_left() {
    let key = ssh_dial::testing::ed25519_key().unwrap();
    let server = ssh_dial::testing::TestServer::builder()
        .authorized_key("u", key.public_key().clone())
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    stalling_agent(&socket, key.public_key());
    let start = Instant::now();
    let err = Dialer::builder()
        .timeout(DEADLINE)
        .host_keys(server.host_keys())
        .build()
        .dial(server.addr(), "u", Auth::agent_at(&socket))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(err.is_timeout() && err.phase() == Phase::Auth, "{err}");
    assert!(took <= DEADLINE + SLACK, "returned after {took:?}");
    assert!(
        support::sockets_to(server.addr()).is_empty(),
        "a socket to the server is still open as the dial returns"
    );
}

/// At the deadline russh's session task is waiting on our host key check,
/// which waits for another writer's lock on known_hosts (accept-new): the
/// dial still returns on time, with the socket closed and nothing learned.
#[tokio::test]
async fn a_host_key_check_waiting_for_a_lock_times_out_on_time() {
    let server = ssh_dial::testing::TestServer::builder()
        .password("u", "p")
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let holder = std::fs::File::create(&path).unwrap();
    holder.lock().unwrap();
    let start = Instant::now();
    let err = Dialer::builder()
        .timeout(DEADLINE)
        .host_keys(HostKeys::accept_new(&path).global_files(Vec::<std::path::PathBuf>::new()))
        .build()
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        err.is_timeout() && err.phase() == Phase::KeyExchange,
        "{err}"
    );
    assert!(took <= DEADLINE + SLACK, "returned after {took:?}");
    assert!(support::sockets_to(server.addr()).is_empty());
    assert_eq!(server.auth_attempts(), 0);
    holder.unlock().unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "",
        "nothing learned"
    );
}

/// Peer-written text (here a host key algorithm name carrying a terminal
/// escape and a forged second line) never reaches a message raw.
#[tokio::test]
async fn peer_text_in_errors_is_one_escaped_line() {
    let server = MisbehavingServer::start(Mode::ForgedKeyName).unwrap();
    let err = Dialer::builder()
        .timeout(DEADLINE)
        .host_keys(HostKeys::insecure_accept_any())
        .build()
        .dial(server.addr(), "test", Auth::password("test"))
        .await
        .unwrap_err();
    for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n') && !shown.contains("\ndial"),
            "{shown:?}"
        );
    }
    let line = err.to_string();
    assert!(!line.contains('\n'), "{line:?}");
    eprintln!("{line}");
}
