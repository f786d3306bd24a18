//! The connection pool: reuse, sessions counted against `MaxSessions`, one
//! dial per cold host, never a dead connection, sick hosts failed fast,
//! bounds, and nothing left behind when it is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{self, alive_tasks, counting_fds, open_fds, sockets_to, wait_until};
use ssh_dial::pool::{Destination, Pool, PoolBuilder};
use ssh_dial::testing::{MisbehavingServer, Mode, Sshd, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys};

pub(crate) fn server() -> TestServer {
    TestServer::builder().password("u", "p").start().unwrap()
}

pub(crate) fn dialer(timeout: Duration) -> Dialer {
    Dialer::builder()
        .timeout(timeout)
        .host_keys(HostKeys::insecure_accept_any())
        .build()
}

pub(crate) fn pool() -> PoolBuilder {
    Pool::builder(dialer(Duration::from_secs(5)), Auth::password("p"))
}

pub(crate) fn dest(addr: std::net::SocketAddr) -> Destination {
    Destination::new(addr, "u").unwrap()
}

/// Logins the server let in: one per handshake.
pub(crate) fn logins(server: &TestServer) -> usize {
    server
        .auth_methods()
        .iter()
        .filter(|m| *m == "password")
        .count()
}

/// Logins sshd let in, from its log.
pub(crate) fn sshd_logins(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

/// A pool for `sshd`, which it trusts by its known_hosts line, logged in
/// with the authorized key.
pub(crate) fn sshd_pool(sshd: &Sshd, dialer: ssh_dial::DialerBuilder) -> PoolBuilder {
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    let dialer = dialer
        .timeout(Duration::from_secs(10))
        .host_keys(HostKeys::known_hosts(known))
        .build();
    Pool::builder(dialer, Auth::key(sshd.user_key().clone()))
}

pub(crate) fn sshd_dest(sshd: &Sshd) -> Destination {
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

/// sshd's `MaxSessions` as the pool's limit: 100 commands at once, none
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_commands_at_max_sessions_ten_are_never_refused() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::builder()
        .config_line("MaxSessions 10")
        .start()
        .unwrap();
    let pool = sshd_pool(&sshd, Dialer::builder()).build();
    let d = sshd_dest(&sshd);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (pool, d) = (pool.clone(), d.clone());
            tokio::spawn(async move { pool.exec(&d, &format!("sleep 0.1; echo {i}")).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let out = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
        assert_eq!(out.stdout, format!("{i}\n").as_bytes());
    }
    let stats = pool.state().statistics;
    assert_eq!((stats.sessions_refused, stats.retries), (0, 0), "{stats:?}");
    assert!(!sshd.log().contains("no more sessions"), "{}", sshd.log());
    assert!(stats.dials <= 4, "{stats:?}");
}

/// A server that allows fewer sessions than the pool thought: its refusal
/// lowers that connection's limit, and the command runs on another slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_session_lowers_the_limit_and_runs_again() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::builder()
        .config_line("MaxSessions 3")
        .start()
        .unwrap();
    let pool = sshd_pool(&sshd, Dialer::builder())
        .max_connections_per_host(1)
        .build();
    let d = sshd_dest(&sshd);
    // Three running hold the server's three sessions.
    let first: Vec<_> = (0..3)
        .map(|_| {
            let (pool, d) = (pool.clone(), d.clone());
            tokio::spawn(async move { pool.exec(&d, "sleep 0.5").await })
        })
        .collect();
    let stats = || pool.state();
    assert!(wait_until(Duration::from_secs(5), || stats().sessions_in_use == 3).await);
    // The fourth is refused, then waits for a slot under the lowered limit.
    let out = pool.exec(&d, "echo fourth").await.unwrap();
    assert_eq!(out.stdout, b"fourth\n");
    for t in first {
        t.await.unwrap().unwrap();
    }
    let s = pool.state().statistics;
    assert_eq!((s.sessions_refused, s.retries, s.dials), (1, 1, 1), "{s:?}");
    // From now on the connection is held to three: no more refusals.
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (pool, d) = (pool.clone(), d.clone());
            tokio::spawn(async move { pool.exec(&d, "sleep 0.05").await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(pool.state().statistics.sessions_refused, 1);
}

/// A connection that died before its command's channel opened: the
/// command runs once more on a fresh connection.
#[tokio::test]
async fn a_command_whose_connection_died_before_it_started_runs_on_a_fresh_one() {
    // Channels open 300 ms after they are asked for: time to cut the link.
    let server = TestServer::builder()
        .password("u", "p")
        .channel_open_delay(Duration::from_millis(300))
        .start()
        .unwrap();
    let pool = pool().build();
    let d = dest(server.addr());
    let held = pool.get(&d).await.unwrap();
    let run = {
        let (pool, d) = (pool.clone(), d.clone());
        tokio::spawn(async move { pool.exec(&d, "echo again").await })
    };
    // The command's channel is asked for: end the session under it.
    assert!(wait_until(Duration::from_secs(5), || held.sessions_in_use() == 1).await);
    held.handle()
        .disconnect(ssh_dial::russh::Disconnect::ByApplication, "", "en")
        .await
        .unwrap();
    let out = run.await.unwrap().unwrap();
    assert_eq!(out.stdout, b"again\n");
    let s = pool.state().statistics;
    assert_eq!((s.retries, s.dials), (1, 2), "{s:?}");
    drop(held);
}

/// A command that may have started never runs twice, whatever becomes of
/// its connection: here the exec request is out, unanswered, when the
/// connection dies.
#[tokio::test]
async fn a_command_that_may_have_started_is_never_run_again() {
    let server = server();
    let pool = pool().build();
    let d = dest(server.addr());
    let held = pool.get(&d).await.unwrap();
    let run = {
        let (pool, d) = (pool.clone(), d.clone());
        // `no-reply`: the server never answers the exec request.
        tokio::spawn(async move {
            pool.command(&d, "no-reply")
                .timeout(Duration::from_secs(2))
                .output()
                .await
        })
    };
    assert!(wait_until(Duration::from_secs(5), || server.channels_opened() == 1).await);
    // The exec request is out (the server has it, unanswered).
    assert!(wait_until(Duration::from_secs(5), || server.exec_requests().len() == 1).await);
    held.handle()
        .disconnect(ssh_dial::russh::Disconnect::ByApplication, "", "en")
        .await
        .unwrap();
    let e = run.await.unwrap().unwrap_err();
    assert!(e.exec_error().is_some_and(|e| e.is_closed()), "{e}");
    assert!(!e.is_retriable());
    assert_eq!(pool.state().statistics.retries, 0);
    assert_eq!(server.channels_opened(), 1, "not run again");
}

/// A connection whose session ended (the server closed it, a keepalive
/// gave up) is never handed out: the next request dials.
#[tokio::test]
async fn a_dead_connection_is_never_handed_out() {
    let server = server();
    let pool = pool().build();
    let d = dest(server.addr());
    let client = pool.get(&d).await.unwrap();
    client
        .handle()
        .disconnect(ssh_dial::russh::Disconnect::ByApplication, "", "en")
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || client.is_closed()).await);
    drop(client);
    let out = pool.exec(&d, "echo fresh").await.unwrap();
    assert_eq!(out.stdout, b"fresh\n");
    let s = pool.state().statistics;
    assert_eq!(
        (s.dials, s.retries, s.connections_closed_broken),
        (2, 0, 1),
        "{s:?}"
    );
}

#[tokio::test]
async fn idle_and_old_connections_are_closed() {
    let server = server();
    let pool = pool().idle_timeout(Duration::from_millis(200)).build();
    let d = dest(server.addr());
    pool.exec(&d, "true").await.unwrap();
    assert_eq!(sockets_to(server.addr()).len(), 1);
    assert!(
        wait_until(Duration::from_secs(3), || sockets_to(server.addr())
            .is_empty())
        .await
    );
    assert_eq!(pool.state().connections, 0);
    assert_eq!(pool.state().statistics.connections_closed_idle, 1);

    let pool = pool_lifetime(Duration::from_millis(300));
    let first = pool.get(&d).await.unwrap();
    let started = Instant::now();
    // Past its lifetime it is not handed out, though still in use...
    tokio::time::sleep_until((started + Duration::from_millis(350)).into()).await;
    let second = pool.get(&d).await.unwrap();
    assert_eq!(pool.state().statistics.dials, 2);
    // ... and it goes when its last checkout does.
    drop(first);
    assert_eq!(pool.state().connections, 1);
    assert_eq!(pool.state().statistics.connections_closed_lifetime, 1);
    drop(second);
}

fn pool_lifetime(lifetime: Duration) -> Pool {
    pool().idle_timeout(None).max_lifetime(lifetime).build()
}

/// A host that keeps failing is failed at once, with a typed, retriable
/// error; once it is back, one probe closes the circuit.
#[tokio::test]
async fn a_sick_host_fails_fast_and_one_probe_closes_its_circuit() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let backoff = Duration::from_millis(400);
    let d = Destination::new(addr, "u").unwrap();
    let pool = Pool::builder(dialer(Duration::from_secs(5)), Auth::password("p"))
        .circuit_breaker(2, backoff, Duration::from_secs(2))
        .build();
    for _ in 0..2 {
        let e = pool.exec(&d, "true").await.unwrap_err();
        assert!(e.dial_error().is_some_and(|d| d.is_refused()), "{e}");
    }
    let start = Instant::now();
    let e = pool.exec(&d, "true").await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
    assert!(
        e.is_circuit_open() && e.is_retriable() && !e.is_timeout(),
        "{e}"
    );
    assert!(e.retry_after().is_some_and(|r| r <= backoff), "{e}");
    assert!(
        e.to_string().contains("circuit open after 2 failed dials"),
        "{e}"
    );
    assert_eq!(pool.state().open_circuits, 1);
    assert_eq!(pool.state().statistics.dials_failed, 2);

    // A frozen sshd: its dials time out; then it thaws, and after the
    // backoff one probe closes the circuit.
    let sshd = Sshd::start().unwrap();
    // Dials of 300 ms, with the sshd's known_hosts line and key.
    let trusting = sshd_pool(&sshd, Dialer::builder()).build();
    let pool = Pool::builder(
        trusting.dialer().with_timeout(Duration::from_millis(300)),
        Auth::key(sshd.user_key().clone()),
    )
    .circuit_breaker(2, backoff, Duration::from_secs(2))
    .build();
    let d = sshd_dest(&sshd);
    let frozen = Frozen::stop(sshd.pid());
    for _ in 0..2 {
        let e = pool.exec(&d, "true").await.unwrap_err();
        assert!(e.is_timeout() && e.dial_error().is_some(), "{e}");
    }
    assert!(pool.exec(&d, "true").await.unwrap_err().is_circuit_open());
    drop(frozen);
    let start = Instant::now();
    let ok = loop {
        match pool.exec(&d, "echo back").await {
            Ok(out) => break out,
            Err(e) if e.is_circuit_open() => {
                tokio::time::sleep(e.retry_after().unwrap() + Duration::from_millis(10)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(ok.stdout, b"back\n");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let s = pool.state();
    assert_eq!((s.open_circuits, s.statistics.dials), (0, 1), "{s:?}");
    assert_eq!(s.statistics.dials_failed, 2, "one probe");
}

/// A process stopped (SIGSTOP) until dropped (SIGCONT).
struct Frozen(Vec<u32>);

impl Frozen {
    fn stop(pid: u32) -> Frozen {
        Frozen::stop_all(vec![pid])
    }

    fn stop_all(pids: Vec<u32>) -> Frozen {
        for &pid in &pids {
            // SAFETY: kill(2) on a process this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: as above.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
        }
    }
}

/// Dropping the pool closes every connection no checkout holds and
/// cancels dials in progress: tasks, descriptors and sockets back to where
/// they were.
#[test]
fn dropping_the_pool_leaves_nothing_behind() {
    counting_fds(true, || async {
        let good = server();
        let silent = MisbehavingServer::start(Mode::Silent).unwrap();
        let tasks_before = alive_tasks();
        let fds_before = open_fds();
        let pool = Pool::builder(dialer(Duration::from_secs(30)), Auth::password("p"))
            .max_sessions_per_connection(1)
            .build();
        let d = dest(good.addr());
        // Three connections: three commands at once, one session each.
        let runs: Vec<_> = (0..3)
            .map(|_| {
                let (pool, d) = (pool.clone(), d.clone());
                tokio::spawn(async move { pool.exec(&d, "sleep 0.3").await })
            })
            .collect();
        for r in runs {
            r.await.unwrap().unwrap();
        }
        assert_eq!(pool.state().connections, 3);
        // A dial in progress, whose only waiter gave up.
        let s = dest(silent.addr());
        let e = tokio::time::timeout(Duration::from_millis(100), pool.get(&s)).await;
        assert!(e.is_err());
        assert!(
            wait_until(Duration::from_secs(2), || sockets_to(silent.addr()).len()
                == 1)
            .await
        );
        assert_eq!(pool.state().dials_in_progress, 1);

        drop(pool);
        for addr in [good.addr(), silent.addr()] {
            assert!(
                wait_until(Duration::from_secs(2), || sockets_to(addr).is_empty()).await,
                "socket to {addr} left"
            );
        }
        assert!(
            wait_until(Duration::from_secs(2), || alive_tasks() <= tasks_before).await,
            "{} tasks left",
            alive_tasks() - tasks_before
        );
        assert!(
            wait_until(Duration::from_secs(2), || open_fds() <= fds_before).await,
            "{} descriptors left",
            open_fds() - fds_before
        );
    });
}

/// `close` says goodbye to idle connections and fails what comes after.
#[tokio::test]
async fn close_ends_every_idle_connection_and_refuses_new_requests() {
    let server = server();
    let pool = pool().build();
    let d = dest(server.addr());
    pool.exec(&d, "true").await.unwrap();
    let held = pool.get(&d).await.unwrap();
    pool.close().await;
    let e = pool.exec(&d, "true").await.unwrap_err();
    assert!(e.is_pool_closed() && !e.is_retriable(), "{e}");
    // The checkout still works until dropped; then its connection goes.
    assert_eq!(held.exec("echo held").await.unwrap().stdout, b"held\n");
    assert_eq!(sockets_to(server.addr()).len(), 1);
    drop(held);
    assert!(
        wait_until(Duration::from_secs(2), || sockets_to(server.addr())
            .is_empty())
        .await
    );
}

/// A host can gather no more than `max_waiters_per_host` requests; the
/// rest fail at once.
#[tokio::test]
async fn waiters_per_host_are_bounded() {
    let silent = MisbehavingServer::start(Mode::Silent).unwrap();
    let pool = Pool::builder(dialer(Duration::from_secs(30)), Auth::password("p"))
        .max_waiters_per_host(5)
        .build();
    let d = dest(silent.addr());
    let waiting: Vec<_> = (0..5)
        .map(|_| {
            let (pool, d) = (pool.clone(), d.clone());
            tokio::spawn(async move { pool.get(&d).await.map(|_| ()) })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(2), || pool.state().waiters == 5).await);
    let start = Instant::now();
    let e = pool.get(&d).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(50));
    assert!(e.is_busy() && e.is_retriable(), "{e}");
    for w in waiting {
        w.abort();
    }
    assert!(wait_until(Duration::from_secs(2), || pool.state().waiters == 0).await);
}

/// A black-holed host, with a hundred requests waiting on its dial, costs
/// the healthy hosts nothing: theirs run as fast as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_host_does_not_slow_the_others() {
    let healthy = server();
    let silent = MisbehavingServer::start(Mode::Silent).unwrap();
    let pool = Pool::builder(dialer(Duration::from_secs(30)), Auth::password("p"))
        .checkout_timeout(Duration::from_secs(30))
        .build();
    let good = dest(healthy.addr());
    let time = |n: usize| {
        let (pool, good) = (pool.clone(), good.clone());
        async move {
            let start = Instant::now();
            for _ in 0..n {
                pool.exec(&good, "true").await.unwrap();
            }
            start.elapsed()
        }
    };
    pool.exec(&good, "true").await.unwrap();
    let before = time(50).await;
    let bad = dest(silent.addr());
    let stuck: Vec<_> = (0..100)
        .map(|_| {
            let (pool, bad) = (pool.clone(), bad.clone());
            tokio::spawn(async move { pool.exec(&bad, "true").await })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(2), || pool.state().waiters == 100).await);
    let during = time(50).await;
    assert!(
        during < before * 2 + Duration::from_millis(50),
        "50 commands took {before:?} before, {during:?} beside the black hole"
    );
    assert_eq!(
        sockets_to(silent.addr()).len(),
        1,
        "one dial for the hundred"
    );
    for s in stuck {
        s.abort();
    }
}

/// Commands that hold their slots: the host gets another connection once
/// a request has waited as long as a dial takes, up to the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_hosts_get_more_connections_up_to_the_bound() {
    let server = server();
    let pool = pool()
        .max_sessions_per_connection(2)
        .max_connections_per_host(3)
        .build();
    let d = dest(server.addr());
    let runs: Vec<_> = (0..10)
        .map(|_| {
            let (pool, d) = (pool.clone(), d.clone());
            tokio::spawn(async move { pool.exec(&d, "sleep 0.3").await })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(3), || pool.state().connections == 3).await);
    let mut peak = 0;
    while runs.iter().any(|r| !r.is_finished()) {
        let s = pool.state();
        peak = peak.max(s.sessions_in_use);
        assert!(s.connections <= 3, "{s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for r in runs {
        r.await.unwrap().unwrap();
    }
    assert!(
        peak <= 6,
        "at most 2 sessions on each of 3 connections: {peak}"
    );
    assert_eq!(logins(&server), 3);
}

/// Past `max_connections` a new host takes the place of the longest-idle
/// connection of another.
#[tokio::test]
async fn a_full_pool_closes_the_longest_idle_connection_for_a_new_host() {
    let servers: Vec<TestServer> = (0..3).map(|_| server()).collect();
    let pool = pool().max_connections(2).build();
    for s in &servers {
        pool.exec(&dest(s.addr()), "true").await.unwrap();
    }
    assert_eq!(pool.state().connections, 2);
    assert!(
        wait_until(Duration::from_secs(2), || sockets_to(servers[0].addr())
            .is_empty())
        .await
    );
    assert_eq!(sockets_to(servers[2].addr()).len(), 1);
    assert_eq!(pool.state().statistics.connections_closed_idle, 1);
}

/// A request for a new host that waits for room under `max_connections`
/// gets it as soon as another host's connection is given back, not when
/// that one idles out.
#[tokio::test]
async fn a_request_waiting_for_room_gets_it_when_a_connection_is_given_back() {
    let servers: Vec<TestServer> = (0..3).map(|_| server()).collect();
    let pool = pool()
        .max_connections(2)
        .checkout_timeout(Duration::from_secs(30))
        .build();
    let a = pool.get(&dest(servers[0].addr())).await.unwrap();
    let _b = pool.get(&dest(servers[1].addr())).await.unwrap();
    let waiting = {
        let (pool, c) = (pool.clone(), dest(servers[2].addr()));
        tokio::spawn(async move { pool.exec(&c, "true").await })
    };
    assert!(wait_until(Duration::from_secs(2), || pool.state().waiters == 1).await);
    let given_back = Instant::now();
    drop(a);
    let out = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting request got room")
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    assert!(
        given_back.elapsed() < Duration::from_secs(2),
        "{:?}",
        given_back.elapsed()
    );
    assert_eq!(pool.state().statistics.connections_closed_idle, 1);
}

/// A host that freezes (SIGSTOP: its kernel still acknowledges, only SSH
/// keepalive can tell): no caller waits past the keepalive bound, and once
/// it thaws, a checkout and a command succeed within one dial time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_host_costs_no_caller_more_than_the_keepalive_bound() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    const INTERVAL: Duration = Duration::from_millis(500);
    const MAX: usize = 2;
    // Keepalive gives up after MAX unanswered, one interval apart; slack
    // for the interval the freeze began in.
    let bound = INTERVAL * (MAX as u32 + 2) + Duration::from_millis(500);
    let sshd = Sshd::start().unwrap();
    let pool = sshd_pool(
        &sshd,
        Dialer::builder()
            .ssh_keepalive_interval(INTERVAL)
            .ssh_keepalive_max(MAX),
    )
    .build();
    let d = sshd_dest(&sshd);
    pool.exec(&d, "true").await.unwrap();
    let dial_time = pool.get(&d).await.unwrap().timings().total();

    // One command running.
    let running = {
        let (pool, d) = (pool.clone(), d.clone());
        tokio::spawn(async move { pool.exec(&d, "sleep 30").await })
    };
    assert!(wait_until(Duration::from_secs(5), || pool.state().sessions_in_use == 1).await);
    let mut tree = vec![sshd.pid()];
    tree.extend(crate::dead_peers::descendants(sshd.pid()));
    let frozen = Frozen::stop_all(tree);
    let start = Instant::now();
    // Nine more: with the running one, every session slot of the
    // connection (10), each taken once and only once.
    let late: Vec<_> = (0..9)
        .map(|_| {
            let (pool, d) = (pool.clone(), d.clone());
            tokio::spawn(async move { (pool.exec(&d, "true").await, Instant::now()) })
        })
        .collect();
    let e = running.await.unwrap().unwrap_err();
    assert!(e.exec_error().is_some_and(|e| e.is_closed()), "{e}");
    assert!(
        start.elapsed() <= bound,
        "{:?} > {bound:?}",
        start.elapsed()
    );
    for l in late {
        let (result, at) = l.await.unwrap();
        let e = result.unwrap_err();
        assert!(at - start <= bound, "{e}: {:?} > {bound:?}", at - start);
        assert!(e.exec_error().is_some_and(|e| e.is_closed()), "{e}");
    }
    assert_eq!(
        pool.state().statistics.retries,
        0,
        "no second wait on a silent host"
    );

    drop(frozen);
    let start = Instant::now();
    let out = pool.exec(&d, "echo back").await.unwrap();
    assert_eq!(out.stdout, b"back\n");
    assert!(
        start.elapsed() < dial_time * 3 + Duration::from_millis(200),
        "{:?} (a dial took {dial_time:?})",
        start.elapsed()
    );
}

/// Durations of "forever" (`Duration::MAX`) are taken as such, never as a
/// panic: the checkout timeout, the breaker's backoff cap (the reaper goes
/// on reaping after a failure), the dialer's timeout for a pooled jump
/// host, and the fleet's retry backoff through the pool.
#[tokio::test]
async fn durations_of_forever_never_panic() {
    use ssh_dial::fleet::{Fleet, Host, Retry};
    let good = server();
    let refused = dest(([127, 0, 0, 1], closed_port()).into());
    let pool = Pool::builder(dialer(Duration::MAX), Auth::password("p"))
        .checkout_timeout(Duration::MAX)
        .circuit_breaker(1, Duration::from_secs(1), Duration::MAX)
        .idle_timeout(Duration::from_millis(50))
        .max_lifetime(Duration::MAX)
        .build();
    let g = dest(good.addr());
    drop(pool.get(&g).await.unwrap());
    pool.exec(&refused, "true").await.unwrap_err();
    let e = pool.exec(&refused, "true").await.unwrap_err();
    assert!(e.is_circuit_open(), "{e}");
    // The reaper's rounds see the failed host (its forgetting time is
    // twice the backoff cap) and still close the idle connection.
    for _ in 0..2 {
        pool.exec(&g, "true").await.unwrap();
        assert!(wait_until(Duration::from_secs(5), || pool.state().connections == 0).await);
    }
    // The fleet waits for a retry at most what is left of its deadline.
    let fleet = Fleet::builder(dialer(Duration::from_secs(5)))
        .pool(pool.clone())
        .retry(Retry::attempts(3).backoff(Duration::MAX, Duration::MAX))
        .build();
    let hosts = vec![Host::new(refused.addr(), "u").unwrap()];
    let reports = fleet.run(hosts, "true").collect().await;
    assert!(!reports[0].is_success());

    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let bastion = Sshd::start().unwrap();
    let target = Sshd::start().unwrap();
    let jumped = Pool::builder(
        Dialer::builder()
            .timeout(Duration::MAX)
            .host_keys(HostKeys::insecure_accept_any())
            .build(),
        Auth::key(bastion.user_key().clone()),
    )
    .jump_host(sshd_dest(&bastion))
    .build();
    let t = sshd_dest(&target).with_auth(Auth::key(target.user_key().clone()));
    let out = jumped.exec(&t, "echo via").await.unwrap();
    assert_eq!(out.stdout, b"via\n");
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
