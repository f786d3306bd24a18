//! A DNS server that never answers starves nothing: stalled lookups hold
//! neither the runtime's blocking pool nor an unbounded number of threads
//! and sockets, a name from `/etc/hosts` still resolves in milliseconds
//! while a thousand lookups stall, lookups past the bound fail at once as
//! "resolver busy", everything is released when the system resolver gives
//! up, and a program exits as soon as it returns from `main`.
//!
//! The stalled DNS server is a UDP socket that reads and never answers, on
//! 127.0.0.1:53 inside a network namespace the test makes, whose
//! `/etc/netns/NAME/resolv.conf` points there (`ip netns exec` mounts it over
//! `/etc/resolv.conf`). The dials run in a child process (this test binary,
//! test `child_in_namespace`) started inside the namespace.

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use ssh_dial::testing::TestServer;
use ssh_dial::{Auth, Dialer, Phase};

const CHILD_ENV: &str = "SSH_DIAL_DNS_STALL_CHILD";
const STALLED: usize = 1000;
const DEADLINE: Duration = Duration::from_secs(1);

/// A network namespace with its own resolv.conf, hosts and nsswitch.conf.
fn dns_namespace() -> Result<support::Namespace, String> {
    support::Namespace::create(
        "ssh-dial-dns",
        &[
            (
                "resolv.conf",
                "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n",
            ),
            ("hosts", "127.0.0.1 localhost healthy.test\n"),
            ("nsswitch.conf", "hosts: files dns\n"),
        ],
    )
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

/// `key=value` from the child's `RESULT` line.
fn result(stdout: &str, key: &str) -> f64 {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .flat_map(str::split_whitespace)
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the child's output:\n{stdout}"))
}

#[test]
#[ignore = "needs root and network namespaces (ip netns); .ci/run runs it with --ignored"]
fn a_stalled_dns_server_starves_nothing() {
    let ns = dns_namespace().unwrap_or_else(|why| {
        panic!("this test needs root and network namespaces, and could not make one: {why}")
    });
    let stdout = ns.run_test("child_in_namespace", CHILD_ENV);
    eprintln!(
        "{}",
        stdout
            .lines()
            .filter(|l| l.starts_with("RESULT"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let limit = 64.0;
    assert!(result(&stdout, "healthy_resolve_ms") < 5.0, "{stdout}");
    assert!(
        result(&stdout, "peak_threads_added") <= limit + 4.0,
        "{stdout}"
    );
    assert!(
        result(&stdout, "peak_fds_added") <= 2.0 * limit + 8.0,
        "{stdout}"
    );
    assert!(
        result(&stdout, "busy") >= STALLED as f64 - limit,
        "{stdout}"
    );
    // Every stalled dial returned by its deadline (they start within the
    // first 100 ms).
    assert!(
        result(&stdout, "all_returned_ms") <= (DEADLINE.as_millis() + 300) as f64,
        "{stdout}"
    );

    // A program that returns from `main` exits at once, stalled lookups or
    // not (the `dial` example, 0.5 s deadline, a stalled name).
    assert!(result(&stdout, "dial_example_exit_ms") < 1500.0, "{stdout}");
}

/// The dials, inside the namespace. Run by `a_stalled_dns_server_starves_nothing`.
#[test]
#[ignore = "runs inside the namespace of a_stalled_dns_server_starves_nothing"]
fn child_in_namespace() {
    if std::env::var_os(CHILD_ENV).is_none() {
        eprintln!("child_in_namespace runs only inside a_stalled_dns_server_starves_nothing");
        return;
    }
    // The DNS server that never answers.
    let _black_hole = std::net::UdpSocket::bind("127.0.0.1:53").expect("bind 127.0.0.1:53");
    let server = TestServer::builder().password("u", "p").start().unwrap();
    let port = server.addr().port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dialer = Dialer::builder()
            .timeout(DEADLINE)
            .host_keys(server.host_keys())
            .build();
        // Warm up: the runtime's and the server's threads and sockets.
        dialer
            .dial(("healthy.test", port), "u", Auth::password("p"))
            .await
            .unwrap();
        let (threads_before, fds_before) = (threads(), support::open_fds());

        let start = Instant::now();
        let mut stalled = tokio::task::JoinSet::new();
        for i in 0..STALLED {
            let dialer = dialer.clone();
            stalled.spawn(async move {
                dialer
                    .dial(
                        (format!("sick-{i}.stall.test").as_str(), port),
                        "u",
                        Auth::password("p"),
                    )
                    .await
                    .map(drop)
            });
        }
        // Every lookup slot taken by a stalled lookup before the healthy dial.
        assert!(
            support::wait_until(Duration::from_secs(5), || threads() >= threads_before + 64).await,
            "the stalled lookups did not start"
        );
        let healthy_start = Instant::now();
        let client = dialer
            .dial(("healthy.test", port), "u", Auth::password("p"))
            .await
            .expect("a name from /etc/hosts dials while DNS stalls");
        let healthy = healthy_start.elapsed();
        let healthy_resolve = client.timings().resolve;
        drop(client);
        let (peak_threads, peak_fds) = (threads(), support::open_fds());

        let (mut timeouts, mut busy) = (0, 0);
        while let Some(done) = stalled.join_next().await {
            let err = done.unwrap().expect_err("a stalled name cannot be dialed");
            assert_eq!(err.phase(), Phase::Resolve, "{err}");
            if err.is_resolver_busy() {
                busy += 1;
            } else {
                assert!(err.is_timeout(), "{err}");
                timeouts += 1;
            }
        }
        let returned = start.elapsed();

        // The lookups end when the system resolver gives up (2 s here).
        let released = support::wait_until(Duration::from_secs(15), || {
            threads() <= threads_before && support::open_fds() <= fds_before
        })
        .await;
        let released_after = start.elapsed();
        println!(
            "RESULT stalled={STALLED} timeouts={timeouts} busy={busy} healthy_ms={:.2} \
             healthy_resolve_ms={:.3} \
             threads_before={threads_before} peak_threads_added={} fds_before={fds_before} \
             peak_fds_added={} all_returned_ms={} released={released} released_ms={}",
            healthy.as_secs_f64() * 1000.0,
            healthy_resolve.as_secs_f64() * 1000.0,
            peak_threads.saturating_sub(threads_before),
            peak_fds.saturating_sub(fds_before),
            returned.as_millis(),
            released_after.as_millis(),
        );
        assert!(released, "threads or fds left after the resolver gave up");
    });

    let start = Instant::now();
    let out = Command::new(support::example("dial"))
        .args([
            "--timeout",
            "0.5",
            "--accept-any-host-key",
            "--password-env",
            "PW",
        ])
        .arg("u@stalled-name.test:22")
        .env("PW", "p")
        .output()
        .unwrap();
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resolve timed out"), "{stderr}");
    println!("RESULT dial_example_exit_ms={}", took.as_millis());
}
