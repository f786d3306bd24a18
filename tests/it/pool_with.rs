//! The pool with the rest of the crate: the fleet through it, its metrics
//! and tracing spans, the `poll` example, a bastion as a pooled
//! destination, and connections that come and go keeping nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::pool::{dest, dialer, logins, pool, server, sshd_dest, sshd_logins};
use crate::support::{self, alive_tasks, sockets_to, wait_until};
use ssh_dial::pool::{Destination, Pool};
use ssh_dial::testing::{Sshd, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys};

/// The fleet runner through a pool: a host named five times in one run
/// is dialed once.
#[tokio::test]
async fn the_fleet_reuses_a_pools_connections() {
    use ssh_dial::fleet::{Fleet, Host};
    let server = server();
    let pool = pool().build();
    let hosts: Vec<Host> = (0..5)
        .map(|_| Host::new(server.addr(), "u").unwrap())
        .collect();
    let fleet = Fleet::builder(dialer(Duration::from_secs(5)))
        .concurrency(5)
        .pool(pool.clone())
        .build();
    let reports = fleet.run(hosts.clone(), "echo hi").collect().await;
    assert!(reports.iter().all(|r| r.is_success()), "{reports:?}");
    // And a second run reuses it too.
    let reports = fleet.run(hosts, "echo again").collect().await;
    assert!(reports.iter().all(|r| r.is_success()), "{reports:?}");
    assert_eq!(logins(&server), 1);
    assert_eq!(pool.state().statistics.dials, 1);
}

/// The pool's series, read back: checkouts by outcome, dials, and gauges
/// that return to zero when the pool is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pools_metrics_count_checkouts_dials_and_return_to_zero() {
    // The recorder is the process's: alone.
    if support::rerun_alone() {
        return;
    }
    use ssh_dial::testing::MetricsRecorder;
    let metrics = MetricsRecorder::install().expect("the only recorder of this process");
    let good = server();
    let pool = pool()
        .circuit_breaker(1, Duration::from_secs(60), Duration::from_secs(60))
        .build();
    let d = dest(good.addr());
    pool.exec(&d, "true").await.unwrap();
    pool.exec(&d, "true").await.unwrap();
    let checkouts =
        |outcome| metrics.counter("ssh_dial_pool_checkouts_total", &[("outcome", outcome)]);
    assert_eq!(checkouts("waited"), Some(1), "{}", metrics.render());
    assert_eq!(checkouts("hit"), Some(1));
    assert_eq!(
        metrics.counter("ssh_dial_pool_dials_total", &[("outcome", "ok")]),
        Some(1)
    );
    let gauge = |name| metrics.gauge(name, &[]).unwrap_or(0.0);
    assert_eq!(gauge("ssh_dial_pool_connections"), 1.0);
    assert_eq!(gauge("ssh_dial_pool_idle_connections"), 1.0);
    // A refused port: a failed dial opens the circuit (1 failure here).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = dest(port);
    pool.exec(&refused, "true").await.unwrap_err();
    assert!(pool
        .exec(&refused, "true")
        .await
        .unwrap_err()
        .is_circuit_open());
    assert_eq!(checkouts("circuit_open"), Some(1));
    assert_eq!(gauge("ssh_dial_pool_open_circuits"), 1.0);
    drop(pool);
    // (The reaper may hold the pool for the moment of a round.)
    let names = [
        "ssh_dial_pool_connections",
        "ssh_dial_pool_idle_connections",
        "ssh_dial_pool_waiters",
        "ssh_dial_pool_open_circuits",
    ];
    let zero = || names.iter().all(|n| gauge(n) == 0.0);
    assert!(
        wait_until(Duration::from_secs(2), zero).await,
        "{}",
        metrics.render()
    );
}

/// The `poll` example, as a user runs it: one JSON line per command, each
/// host dialed once, a sick host's circuit said.
#[test]
fn the_poll_example_reuses_each_hosts_connection() {
    let good: Vec<TestServer> = (0..3).map(|_| server()).collect();
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let mut list: String = good.iter().map(|s| format!("u@{}\n", s.addr())).collect();
    list.push_str(&format!("# down\nu@{refused}\n"));
    std::fs::write(&hosts, list).unwrap();
    let out = std::process::Command::new(support::example("poll"))
        .args([
            "--accept-any-host-key",
            "--password-env",
            "PW",
            "--repeat",
            "4",
        ])
        .args(["--timeout", "5", "--hosts"])
        .arg(&hosts)
        .args(["--", "echo", "hi"])
        .env("PW", "p")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the refused host failed");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 17, "16 commands and the summary");
    for l in &lines[..16] {
        for field in ["host", "ok", "ms", "error", "circuit_open"] {
            assert!(l.get(field).is_some(), "{field} missing in {l}");
        }
    }
    let summary = &lines[16];
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["commands"], 16);
    assert_eq!(summary["ok"], 12);
    assert_eq!(summary["dials"], 3, "{summary}");
    assert_eq!(summary["reused"], 9, "{summary}");
    for s in &good {
        assert_eq!(logins(s), 1);
    }
    let down = lines[..16]
        .iter()
        .filter(|l| l["host"] == format!("u@{refused}"))
        .count();
    assert_eq!(down, 4);
}

/// A pool whose jump host is `bastion` (logged in with its key).
fn through(bastion: &Sshd) -> ssh_dial::pool::PoolBuilder {
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(HostKeys::insecure_accept_any())
        .build();
    Pool::builder(dialer, Auth::key(bastion.user_key().clone())).jump_host(sshd_dest(bastion))
}

/// Through the pool's jump host: a burst of first dials to several
/// targets opens one connection to the bastion, not one per target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_dials_through_a_jump_host_opens_one_bastion_connection() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let bastion = Sshd::start().unwrap();
    let targets: Vec<Sshd> = (0..3).map(|_| Sshd::start().unwrap()).collect();
    let pool = through(&bastion).build();
    let dests: Vec<Destination> = targets
        .iter()
        .map(|t| sshd_dest(t).with_auth(Auth::key(t.user_key().clone())))
        .collect();
    let runs: Vec<_> = (0..30)
        .map(|i| {
            let (pool, d) = (pool.clone(), dests[i % 3].clone());
            tokio::spawn(async move { pool.exec(&d, "echo via").await })
        })
        .collect();
    for r in runs {
        let out = r
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", bastion.log()));
        assert_eq!(out.stdout, b"via\n");
    }
    assert_eq!(sshd_logins(&bastion), 1, "{}", bastion.log());
    for t in &targets {
        assert_eq!(sshd_logins(t), 1);
    }
    // The bastion's connection carries the targets': never idle meanwhile.
    assert_eq!(pool.state().connections, 4);
    assert_eq!(sockets_to(bastion.addr()).len(), 1);
}

/// A full pool with a jump host: as many cold targets as `max_connections`
/// at once each took a place, and the jump host's connection they wait on
/// is made anyway instead of waiting for room none of them will give.
#[tokio::test]
async fn a_full_pool_still_reaches_its_jump_host() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let bastion = Sshd::start().unwrap();
    let targets: Vec<Sshd> = (0..2).map(|_| Sshd::start().unwrap()).collect();
    let pool = through(&bastion)
        .max_connections(2)
        .checkout_timeout(Duration::from_secs(10))
        .build();
    let start = std::time::Instant::now();
    let runs: Vec<_> = targets
        .iter()
        .map(|t| {
            let (pool, d) = (
                pool.clone(),
                sshd_dest(t).with_auth(Auth::key(t.user_key().clone())),
            );
            tokio::spawn(async move { pool.exec(&d, "echo via").await })
        })
        .collect();
    for r in runs {
        assert_eq!(r.await.unwrap().unwrap().stdout, b"via\n");
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(sshd_logins(&bastion), 1);
}

/// Connections that come and go (each dialed, used for a command, then
/// found dead and replaced) keep nothing: the pool's bookkeeping and each
/// connection's session count are freed with it.
#[test]
fn connections_that_come_and_go_keep_nothing() {
    // On one thread, where the counting allocator sees the pool's every
    // allocation (the server runs on a thread of its own).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = server();
    let pool = rt.block_on(async { pool().build() });
    let d = dest(server.addr());
    // Each cycle starts and ends with one live connection in the pool.
    rt.block_on(pool.exec(&d, "true")).unwrap();
    let cycle = || {
        rt.block_on(async {
            let tasks = alive_tasks();
            let held = pool.get(&d).await.unwrap();
            held.handle()
                .disconnect(ssh_dial::russh::Disconnect::ByApplication, "", "en")
                .await
                .unwrap();
            assert!(wait_until(Duration::from_secs(5), || held.is_closed()).await);
            drop(held);
            pool.exec(&d, "true").await.unwrap();
            // The old connection's session task ends.
            assert!(wait_until(Duration::from_secs(5), || alive_tasks() <= tasks).await);
        })
    };
    for _ in 0..10 {
        cycle();
    }
    let ((), kept) = crate::support::alloc::measure(|| {
        for _ in 0..50 {
            cycle();
        }
    });
    // 112 bytes a connection when each command's session count kept its
    // connection's counters alive.
    assert!(
        kept.kept < 50 * 16,
        "{} bytes kept over 50 connections",
        kept.kept
    );
    assert_eq!(pool.state().statistics.connections_closed_broken, 60);
}

/// Each checkout is a span named after the pool, with its destination,
/// and says how it went.
#[tokio::test]
async fn each_checkout_is_a_span_that_says_how_it_went() {
    // The subscriber is the process's: alone.
    if support::rerun_alone() {
        return;
    }
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();
    let server = server();
    let pool = pool().build();
    let d = dest(server.addr());
    pool.exec(&d, "true").await.unwrap();
    pool.exec(&d, "true").await.unwrap();
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let span = format!("ssh_dial::pool::checkout{{dest=u@{}}}", server.addr());
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&span)).collect();
    assert!(lines.iter().any(|l| l.contains("dialing")), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("checked out") && l.contains("outcome=\"waited\"")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("checked out") && l.contains("outcome=\"hit\"")),
        "{text}"
    );
}
