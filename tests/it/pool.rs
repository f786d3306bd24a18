//! The connection pool: reuse, sessions counted against `MaxSessions`, one
//! dial per cold host, never a dead connection, sick hosts failed fast,
//! bounds, and nothing left behind when it is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{self, sockets_to};
use ssh_dial::pool::{Destination, Pool, PoolBuilder};
use ssh_dial::testing::{MisbehavingServer, Mode, Sshd, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys};

fn server() -> TestServer {
    TestServer::builder().password("u", "p").start().unwrap()
}

fn dialer(timeout: Duration) -> Dialer {
    Dialer::builder()
        .timeout(timeout)
        .host_keys(HostKeys::insecure_accept_any())
        .build()
}

fn pool() -> PoolBuilder {
    Pool::builder(dialer(Duration::from_secs(5)), Auth::password("p"))
}

fn dest(addr: std::net::SocketAddr) -> Destination {
    Destination::new(addr, "u").unwrap()
}

/// Logins the server let in: one per handshake.
fn logins(server: &TestServer) -> usize {
    server
        .auth_methods()
        .iter()
        .filter(|m| *m == "password")
        .count()
}

/// Logins sshd let in, from its log.
fn sshd_logins(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

/// A pool for `sshd`, which it trusts by its known_hosts line, logged in
/// with the authorized key.
fn sshd_pool(sshd: &Sshd, dialer: ssh_dial::DialerBuilder) -> PoolBuilder {
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    let dialer = dialer
        .timeout(Duration::from_secs(10))
        .host_keys(HostKeys::known_hosts(known))
        .build();
    Pool::builder(dialer, Auth::key(sshd.user_key().clone()))
}

fn sshd_dest(sshd: &Sshd) -> Destination {
    Destination::new(sshd.addr(), sshd.user()).unwrap()
}

#[tokio::test]
async fn commands_in_turn_reuse_one_connection() {
    let server = server();
    let pool = pool().build();
    let d = dest(server.addr());
    for i in 0..20 {
        let out = pool.exec(&d, &format!("echo {i}")).await.unwrap();
        assert_eq!(out.stdout, format!("{i}\n").as_bytes());
    }
    assert_eq!(logins(&server), 1, "one handshake for 20 commands");
    let stats = pool.state().statistics;
    assert_eq!((stats.dials, stats.checkouts_hit), (1, 19), "{stats:?}");
    assert_eq!(pool.state().connections, 1);
}

#[tokio::test]
async fn destinations_differ_by_user_port_and_credentials() {
    let server = TestServer::builder()
        .password("u", "p")
        .password("v", "p")
        .start()
        .unwrap();
    let pool = pool().build();
    let u = dest(server.addr());
    let v = Destination::new(server.addr(), "v").unwrap();
    let own = dest(server.addr()).with_auth(Auth::password("p"));
    for d in [&u, &v, &own, &u, &v, &own, &own.clone()] {
        let out = pool.exec(d, "whoami-not-here; true").await.unwrap();
        assert!(out.status.success());
    }
    assert_eq!(logins(&server), 3, "u, v, and u with its own credentials");
    // Wrong credentials of a destination's own never ride another's login.
    let wrong = dest(server.addr()).with_auth(Auth::password("wrong"));
    let e = pool.exec(&wrong, "true").await.unwrap_err();
    assert!(e.dial_error().is_some_and(|d| d.is_auth_rejected()), "{e}");
}

#[tokio::test]
async fn a_hundred_cold_checkouts_share_one_dial_and_its_failure() {
    // A server that never speaks: the dial times out, once, for everyone.
    let silent = MisbehavingServer::start(Mode::Silent).unwrap();
    let pool = Pool::builder(dialer(Duration::from_millis(600)), Auth::password("p"))
        .circuit_breaker(0, Duration::ZERO, Duration::ZERO)
        .build();
    let d = dest(silent.addr());
    let start = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (pool, d) = (pool.clone(), d.clone());
            tokio::spawn(async move { pool.get(&d).await.map(|_| ()).unwrap_err() })
        })
        .collect();
    // One connection at a time, all the while.
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watch = {
        let peak = peak.clone();
        let addr = silent.addr();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(sockets_to(addr).len(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut errors = Vec::new();
    for t in tasks {
        errors.push((t.await.unwrap(), start.elapsed()));
    }
    watch.abort();
    assert_eq!(peak.load(std::sync::atomic::Ordering::Relaxed), 1);
    let first = errors[0].0.to_string();
    for (e, at) in &errors {
        assert!(e.is_timeout() && e.dial_error().is_some(), "{e}");
        assert_eq!(e.to_string(), first, "the same error for everyone");
        assert!(
            *at >= Duration::from_millis(600) && *at < Duration::from_millis(1500),
            "{at:?}"
        );
    }
    assert_eq!(pool.state().statistics.dials_failed, 1);
}

#[tokio::test]
async fn a_cold_host_gets_one_handshake_for_a_hundred_concurrent_checkouts() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    // Room for all of them on one connection (sshd here: MaxSessions 100).
    let pool = sshd_pool(&sshd, Dialer::builder())
        .max_sessions_per_connection(100)
        .build();
    let d = sshd_dest(&sshd);
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (pool, d, barrier) = (pool.clone(), d.clone(), barrier.clone());
            tokio::spawn(async move {
                let client = pool.get(&d).await.unwrap();
                // Every checkout holds its slot until all have one.
                barrier.wait().await;
                drop(client);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sshd_logins(&sshd), 1, "{}", sshd.log());
    assert_eq!(pool.state().statistics.dials, 1);
}
