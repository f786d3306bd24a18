//! Running a command on many hosts: bounded time, the right phase for every
//! sick host, retries only where they can help, and nothing left behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{alive_tasks, counting_fds, open_fds, sockets_to, wait_until};
use ssh_dial::fleet::{FailedIn, Fleet, Host, HostError, Retry};
use ssh_dial::testing::{MisbehavingServer, Mode, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys, Phase};

fn dialer() -> Dialer {
    Dialer::builder()
        .host_keys(HostKeys::insecure_accept_any())
        .build()
}

#[test]
fn a_mixed_fleet_finishes_on_time_with_every_host_in_its_phase() {
    counting_fds(true, || async {
        let good = TestServer::builder().password("u", "p").start().unwrap();
        let sick: Vec<MisbehavingServer> = Mode::ALL
            .iter()
            .map(|&m| MisbehavingServer::start(m).unwrap())
            .collect();
        let tasks_before = alive_tasks();
        let fds_before = open_fds();

        // 100 hosts: the good server and every sick one, in turn.
        let hosts: Vec<Host> = (0..100)
            .map(|i| match i % (sick.len() + 1) {
                0 => Host::new(good.addr(), "u").unwrap(),
                k => Host::new(sick[k - 1].addr(), "u").unwrap(),
            })
            .collect();
        let fleet = Fleet::builder(dialer())
            .auth(Auth::password("p"))
            .concurrency(20)
            .host_timeout(Duration::from_secs(1))
            .build();
        let start = Instant::now();
        let reports = fleet.run(hosts, "echo hi").collect().await;
        let took = start.elapsed();
        // ceil(100 / 20) waves of at most 1 s each, and half a second to spare.
        assert!(
            took <= Duration::from_millis(5_500),
            "the run took {took:?}"
        );
        assert_eq!(reports.len(), 100);

        for report in &reports {
            let addr = report.host.addr();
            let kind = if addr == good.addr().to_string() {
                None
            } else {
                sick.iter()
                    .find(|s| s.addr().to_string() == addr)
                    .map(|s| s.mode())
            };
            match kind {
                None => {
                    let out = report
                        .outcome
                        .as_ref()
                        .unwrap_or_else(|e| panic!("{}: {e}", report.host));
                    assert_eq!(out.stdout, b"hi\n");
                    assert!(report.is_success() && report.timings.is_some());
                }
                Some(mode) => {
                    let Err(HostError::Dial(e)) = &report.outcome else {
                        panic!("{mode}: expected a dial error, got {:?}", report.outcome)
                    };
                    if mode == Mode::ResetAfterBanner {
                        assert!(
                            matches!(e.phase(), Phase::VersionExchange | Phase::KeyExchange),
                            "{e}"
                        );
                    } else {
                        assert_eq!(e.phase(), mode.expected_phase(), "{mode}: {e}");
                    }
                    assert_eq!(e.is_timeout(), mode.stalls(), "{mode}: {e}");
                    assert!(
                        report.elapsed <= Duration::from_millis(1_100),
                        "{mode}: {:?}",
                        report.elapsed
                    );
                }
            }
        }
        assert!(
            wait_until(Duration::from_secs(2), || alive_tasks() <= tasks_before).await,
            "tasks left"
        );
        assert!(
            wait_until(Duration::from_secs(5), || open_fds() <= fds_before).await,
            "fds left"
        );
    });
}

/// Resets the first `resets` connections it accepts, then relays the rest
/// to `to`.
async fn flaky_front(
    to: std::net::SocketAddr,
    resets: usize,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            if count.fetch_add(1, Ordering::SeqCst) < resets {
                let _ = socket.set_zero_linger();
                drop(socket);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_cure_resets_but_not_rejections() {
    let good = TestServer::builder().password("u", "p").start().unwrap();
    let (flaky, accepted) = flaky_front(good.addr(), 2).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let fleet = Fleet::builder(dialer())
        .auth(Auth::password("p"))
        .host_timeout(Duration::from_secs(10))
        .retry(Retry::attempts(3).backoff(Duration::from_millis(20), Duration::from_millis(50)))
        .build();
    let hosts = vec![
        Host::new(flaky, "u").unwrap(),
        Host::new(good.addr(), "u")
            .unwrap()
            .with_auth(Auth::password("wrong")),
        Host::new(closed, "u").unwrap(),
    ];
    let reports = fleet.run(hosts, "echo ok").collect().await;
    let by_addr = |a: std::net::SocketAddr| {
        reports
            .iter()
            .find(|r| r.host.addr() == a.to_string())
            .unwrap()
    };

    let flaky_report = by_addr(flaky);
    assert!(flaky_report.is_success(), "{:?}", flaky_report.outcome);
    assert_eq!(flaky_report.attempts, 3);
    assert_eq!(accepted.load(Ordering::SeqCst), 3);

    let rejected = by_addr(good.addr());
    assert_eq!(rejected.failed_in(), Some(FailedIn::Dial(Phase::Auth)));
    assert_eq!(rejected.attempts, 1, "an auth rejection is not retried");

    let refused = by_addr(closed);
    assert!(matches!(&refused.outcome, Err(HostError::Dial(e)) if e.is_refused()));
    assert_eq!(
        refused.attempts, 3,
        "refused connections are retried up to the limit"
    );
}

#[test]
fn dropping_a_run_stops_it_and_leaves_nothing() {
    counting_fds(true, || async {
        let silent = MisbehavingServer::start(Mode::Silent).unwrap();
        let addr = silent.addr();
        let tasks_before = alive_tasks();
        let fds_before = open_fds();
        let hosts: Vec<Host> = (0..50).map(|_| Host::new(addr, "u").unwrap()).collect();
        let fleet = Fleet::builder(dialer())
            .auth(Auth::password("p"))
            .concurrency(10)
            .host_timeout(Duration::from_secs(30))
            .build();
        let run = fleet.run(hosts, "true");
        assert!(
            wait_until(Duration::from_secs(5), || sockets_to(addr).len() == 10).await,
            "ten hosts should be in flight"
        );
        drop(run);
        assert!(
            wait_until(Duration::from_secs(2), || sockets_to(addr).is_empty()).await,
            "sockets left"
        );
        assert!(
            wait_until(Duration::from_secs(2), || alive_tasks() <= tasks_before).await,
            "tasks left"
        );
        assert!(
            wait_until(Duration::from_secs(5), || open_fds() <= fds_before).await,
            "fds left"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_deadline_cancels_what_is_left() {
    let silent = MisbehavingServer::start(Mode::Silent).unwrap();
    let hosts: Vec<Host> = (0..10)
        .map(|_| Host::new(silent.addr(), "u").unwrap())
        .collect();
    let fleet = Fleet::builder(dialer())
        .auth(Auth::password("p"))
        .concurrency(2)
        .host_timeout(Duration::from_secs(10))
        .run_timeout(Some(Duration::from_millis(300)))
        .build();
    let start = Instant::now();
    let reports = fleet.run(hosts, "true").collect().await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(reports.len(), 10);
    assert!(reports
        .iter()
        .all(|r| matches!(r.outcome, Err(HostError::Cancelled))));
    assert!(
        wait_until(Duration::from_secs(2), || sockets_to(silent.addr())
            .is_empty())
        .await
    );
}
