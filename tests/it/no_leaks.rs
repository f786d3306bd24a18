//! A dial that fails, times out or is dropped leaves no task and no socket.
//!
//! How resources are counted: the misbehaving servers run in this process,
//! but each on a thread and Tokio runtime of its own (see
//! `ssh_dial::testing`), so the dialing runtime's `num_alive_tasks` counts
//! only the client's tasks. File descriptors are counted two ways: the
//! client's own sockets, found as the sockets in `/proc/self/fd` whose peer
//! is the server (these must be gone the moment a dial returns), and the
//! process's total, which also holds the servers' sides; those close when
//! the server sees the client's close, so the total is awaited, bounded.
//! Each test runs alone, on a runtime of its own (`support::counting_fds`),
//! so that other tests cannot disturb the count.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{alive_tasks, counting_fds, open_fds, sockets_to, wait_until};
use ssh_dial::testing::{MisbehavingServer, Mode};
use ssh_dial::{Auth, Dialer, HostKeys};

fn dialer(timeout: Duration) -> Dialer {
    Dialer::builder()
        .timeout(timeout)
        .host_keys(HostKeys::insecure_accept_any())
        .build()
}

/// 200 dials, 50 at a time, against one misbehaving server.
async fn many_dials_leave_nothing(mode: Mode) {
    let server = MisbehavingServer::start(mode).expect("server starts");
    let addr = server.addr();
    // The black hole's own queue-filling connection is one of these.
    let sockets_before = sockets_to(addr);
    let tasks_before = alive_tasks();
    let fds_before = open_fds();

    let dialer = dialer(Duration::from_millis(500));
    let permits = Arc::new(tokio::sync::Semaphore::new(50));
    let mut dials = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let dialer = dialer.clone();
        let permits = permits.clone();
        dials.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            dialer.dial(addr, "test", Auth::password("test")).await
        });
    }
    while let Some(result) = dials.join_next().await {
        let err = result.expect("dial task").expect_err("misbehaving peer");
        assert_eq!(err.is_timeout(), mode.stalls(), "{mode}: {err}");
    }

    let client_sockets = sockets_to(addr);
    assert_eq!(
        client_sockets, sockets_before,
        "{mode}: client sockets still open after every dial returned"
    );
    let tasks_ok = wait_until(Duration::from_secs(2), || alive_tasks() <= tasks_before).await;
    assert!(
        tasks_ok,
        "{mode}: {} tasks alive, {tasks_before} before",
        alive_tasks()
    );
    let fds_ok = wait_until(Duration::from_secs(5), || open_fds() <= fds_before).await;
    assert!(
        fds_ok,
        "{mode}: {} fds open, {fds_before} before",
        open_fds()
    );
}

#[test]
fn silent_peers_leak_nothing() {
    counting_fds(true, || async {
        many_dials_leave_nothing(Mode::Silent).await;
    });
}

#[test]
fn dripping_peers_leak_nothing() {
    counting_fds(true, || async {
        many_dials_leave_nothing(Mode::Drip).await;
    });
}

#[test]
fn key_exchange_stalls_after_banner_leak_nothing() {
    counting_fds(true, || async {
        many_dials_leave_nothing(Mode::StallAfterBanner).await;
    });
}

#[test]
fn key_exchange_stalls_after_kexinit_leak_nothing() {
    counting_fds(true, || async {
        many_dials_leave_nothing(Mode::StallAfterKexInit).await;
    });
}

#[test]
fn auth_stalls_leak_nothing() {
    counting_fds(true, || async {
        many_dials_leave_nothing(Mode::StallAuth).await;
    });
}

#[test]
fn resets_leak_nothing() {
    counting_fds(true, || async {
        many_dials_leave_nothing(Mode::ResetAfterBanner).await;
    });
}

#[test]
fn garbage_peers_leak_nothing() {
    counting_fds(true, || async {
        many_dials_leave_nothing(Mode::Garbage).await;
    });
}

#[test]
fn black_holes_leak_nothing() {
    counting_fds(true, || async {
        many_dials_leave_nothing(Mode::BlackHole).await;
    });
}

/// On a current-thread runtime nothing runs between the dial's return and
/// the next line, so this checks the promise exactly: by the time `dial`
/// returns an error, russh's session task has ended and the socket is closed.
#[test]
fn a_failed_dial_has_released_everything_when_it_returns() {
    counting_fds(false, || async {
        let dialer = dialer(Duration::from_millis(300));
        for mode in Mode::ALL {
            let server = MisbehavingServer::start(mode).expect("server starts");
            let sockets_before = sockets_to(server.addr());
            let tasks_before = alive_tasks();
            for round in 0..3 {
                let err = dialer
                    .dial(server.addr(), "test", Auth::password("test"))
                    .await
                    .expect_err("misbehaving peer");
                assert_eq!(
                    alive_tasks(),
                    tasks_before,
                    "{mode} round {round}: task left at return: {err}"
                );
                assert_eq!(
                    sockets_to(server.addr()),
                    sockets_before,
                    "{mode} round {round}: socket left at return: {err}"
                );
            }
        }
    });
}

/// Drops dial futures mid-phase (racing them against a sleep, as a caller's
/// `select!` would) while the dial's own deadline is far away.
async fn dropped_dials_leave_nothing(mode: Mode, drop_after: Duration) {
    let server = MisbehavingServer::start(mode).expect("server starts");
    let addr = server.addr();
    let sockets_before = sockets_to(addr);
    let tasks_before = alive_tasks();
    let fds_before = open_fds();

    let dialer = dialer(Duration::from_secs(30));
    let mut dials = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let dialer = dialer.clone();
        dials.spawn(async move {
            tokio::select! {
                r = dialer.dial(addr, "test", Auth::password("test")) => Some(r.map(|_| ())),
                () = tokio::time::sleep(drop_after) => None,
            }
        });
    }
    let mut dropped = 0;
    while let Some(result) = dials.join_next().await {
        if result.expect("dial task").is_none() {
            dropped += 1;
        }
    }
    assert_eq!(
        dropped, 50,
        "{mode}: every dial should still have been in progress"
    );

    let sockets_ok = wait_until(Duration::from_secs(2), || {
        sockets_to(addr) == sockets_before
    })
    .await;
    assert!(
        sockets_ok,
        "{mode}: client sockets left after the drop: {:?}",
        sockets_to(addr)
    );
    let tasks_ok = wait_until(Duration::from_secs(2), || alive_tasks() <= tasks_before).await;
    assert!(
        tasks_ok,
        "{mode}: {} tasks alive, {tasks_before} before",
        alive_tasks()
    );
    let fds_ok = wait_until(Duration::from_secs(5), || open_fds() <= fds_before).await;
    assert!(
        fds_ok,
        "{mode}: {} fds open, {fds_before} before",
        open_fds()
    );
}

#[test]
fn dial_dropped_during_connect_leaves_nothing() {
    counting_fds(true, || async {
        dropped_dials_leave_nothing(Mode::BlackHole, Duration::from_millis(200)).await;
    });
}

#[test]
fn dial_dropped_during_version_exchange_leaves_nothing() {
    counting_fds(true, || async {
        dropped_dials_leave_nothing(Mode::Silent, Duration::from_millis(200)).await;
    });
}

#[test]
fn dial_dropped_during_key_exchange_leaves_nothing() {
    counting_fds(true, || async {
        dropped_dials_leave_nothing(Mode::StallAfterKexInit, Duration::from_millis(200)).await;
    });
}

#[test]
fn dial_dropped_during_auth_leaves_nothing() {
    counting_fds(true, || async {
        dropped_dials_leave_nothing(Mode::StallAuth, Duration::from_millis(200)).await;
    });
}

/// The control: the measurement above can fail. A plain
/// `tokio::time::timeout` around russh's `connect_stream` against a peer that
/// stalls key exchange leaves russh's session task and the socket behind,
/// and the same counters see them.
#[test]
fn naive_timeout_around_russh_leaks_and_the_counters_see_it() {
    counting_fds(true, || async {
        struct AcceptAny;
        impl ssh_dial::russh::client::Handler for AcceptAny {
            type Error = ssh_dial::russh::Error;
            async fn check_server_key(
                &mut self,
                _: &ssh_dial::russh::keys::PublicKeyOrCertificate,
            ) -> Result<bool, Self::Error> {
                Ok(true)
            }
        }

        let server = MisbehavingServer::start(Mode::StallAfterBanner).expect("server starts");
        let tasks_before = alive_tasks();
        let config = Arc::new(ssh_dial::russh::client::Config::default());
        for _ in 0..10 {
            let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
            let dial = ssh_dial::russh::client::connect_stream(config.clone(), tcp, AcceptAny);
            assert!(tokio::time::timeout(Duration::from_millis(200), dial)
                .await
                .is_err());
        }
        // Give the leaked tasks every chance to end; they do not.
        let ended = wait_until(Duration::from_millis(500), || alive_tasks() <= tasks_before).await;
        assert!(
            !ended,
            "russh's session tasks ended on their own; the leak this crate guards against is gone"
        );
        assert_eq!(
            sockets_to(server.addr()).len(),
            10,
            "each leaked task holds its socket"
        );
        // Stopping the server closes its side; only then do russh's tasks end.
        let addr = server.addr();
        drop(server);
        assert!(wait_until(Duration::from_secs(5), || alive_tasks() <= tasks_before).await);
        assert!(wait_until(Duration::from_secs(5), || sockets_to(addr).is_empty()).await);
    });
}

/// A small, seeded xorshift: the runs are reproducible without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Drops 1,000 dials at random instants, in every mode, against a dial
/// deadline of 500 ms: some are dropped in each phase, some end by their
/// deadline first. Set `SSH_DIAL_SEED` to replay a run.
#[test]
fn dials_dropped_at_random_instants_leave_nothing() {
    counting_fds(true, || async {
        let seed = std::env::var("SSH_DIAL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_d1a1_u64);
        eprintln!("seed {seed} (set SSH_DIAL_SEED to replay)");
        let servers: Vec<MisbehavingServer> = Mode::ALL
            .into_iter()
            .map(|m| MisbehavingServer::start(m).expect("server starts"))
            .collect();
        let sockets_before: Vec<_> = servers.iter().map(|s| sockets_to(s.addr())).collect();
        let tasks_before = alive_tasks();
        let fds_before = open_fds();

        let dialer = dialer(Duration::from_millis(500));
        let mut rng = Rng(seed);
        let permits = Arc::new(tokio::sync::Semaphore::new(50));
        let mut dials = tokio::task::JoinSet::new();
        let (mut dropped, mut finished) = (0, 0);
        for _ in 0..1000 {
            let addr = servers[(rng.next() % servers.len() as u64) as usize].addr();
            let drop_after = Duration::from_millis(rng.next() % 600);
            let (dialer, permits) = (dialer.clone(), permits.clone());
            dials.spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                tokio::select! {
                    _ = dialer.dial(addr, "test", Auth::password("test")) => false,
                    () = tokio::time::sleep(drop_after) => true,
                }
            });
        }
        while let Some(was_dropped) = dials.join_next().await {
            if was_dropped.unwrap() {
                dropped += 1;
            } else {
                finished += 1;
            }
        }
        eprintln!("{dropped} dropped, {finished} ended by themselves");
        assert!(
            dropped > 100 && finished > 100,
            "the drops should land on both sides of the deadline"
        );

        for (server, before) in servers.iter().zip(&sockets_before) {
            let addr = server.addr();
            let ok = wait_until(Duration::from_secs(2), || &sockets_to(addr) == before).await;
            assert!(ok, "{}: client sockets left", server.mode());
        }
        let tasks_ok = wait_until(Duration::from_secs(2), || alive_tasks() <= tasks_before).await;
        assert!(
            tasks_ok,
            "{} tasks alive, {tasks_before} before",
            alive_tasks()
        );
        let fds_ok = wait_until(Duration::from_secs(5), || open_fds() <= fds_before).await;
        assert!(fds_ok, "{} fds open, {fds_before} before", open_fds());
    });
}
