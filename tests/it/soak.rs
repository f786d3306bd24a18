//! 50,000 timed-out dials in one process: tasks and descriptors return to
//! their baseline, and memory does not creep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{alive_tasks, counting_fds, open_fds, wait_until};
use ssh_dial::testing::{MisbehavingServer, Mode};
use ssh_dial::{Auth, Dialer, HostKeys};

const DIALS: usize = 50_000;
const CONCURRENT: usize = 500;
const CHECKPOINT: usize = 5_000;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page / 1024
}

/// Raises the soft open-file limit to the hard one: 500 dials in flight hold
/// 500 sockets here and the servers' 500 more.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// `count` dials, `CONCURRENT` at a time, round-robin over `addrs`; each
/// must time out.
async fn run(dialer: &Dialer, addrs: &[std::net::SocketAddr], count: usize) {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
    let mut dials = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (dialer, addr) = (dialer.clone(), addrs[i % addrs.len()]);
        dials.spawn(async move {
            let result = dialer.dial(addr, "soak", Auth::password("soak")).await;
            drop(permit);
            result.err().map(|e| e.is_timeout())
        });
        while let Some(r) = dials.try_join_next() {
            assert_eq!(r.unwrap(), Some(true), "every dial times out");
        }
    }
    while let Some(r) = dials.join_next().await {
        assert_eq!(r.unwrap(), Some(true), "every dial times out");
    }
}

/// Waits for tasks and fds to return to their baseline, then trims the
/// allocator and reads RSS.
async fn settled_rss(tasks_before: usize, fds_before: usize) -> u64 {
    assert!(
        wait_until(Duration::from_secs(5), || alive_tasks() <= tasks_before).await,
        "{} tasks alive, {tasks_before} before",
        alive_tasks()
    );
    assert!(
        wait_until(Duration::from_secs(10), || open_fds() <= fds_before).await,
        "{} fds open, {fds_before} before",
        open_fds()
    );
    // The servers' threads free their side a moment after the fds close:
    // trim and read until the reading stops falling (at most a second).
    let mut lowest = u64::MAX;
    for _ in 0..10 {
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        let now = rss_kib();
        if now >= lowest {
            break;
        }
        lowest = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lowest
}

#[test]
#[ignore = "runs about half a minute; .ci/run runs it with --ignored"]
fn fifty_thousand_timed_out_dials_leave_nothing_and_memory_stays_flat() {
    raise_fd_limit();
    counting_fds(true, || async {
        let modes = [
            Mode::Silent,
            Mode::StallAfterBanner,
            Mode::StallAfterKexInit,
            Mode::StallAuth,
        ];
        let servers: Vec<MisbehavingServer> = modes
            .iter()
            .map(|&m| MisbehavingServer::start(m).unwrap())
            .collect();
        let addrs: Vec<_> = servers.iter().map(|s| s.addr()).collect();
        let tasks_before = alive_tasks();
        let fds_before = open_fds();
        let dialer = Dialer::builder()
            .timeout(Duration::from_millis(200))
            .host_keys(HostKeys::insecure_accept_any())
            .build();

        let start = Instant::now();
        // The first 5,000, then the rest; each time drained, and with freed
        // memory handed back (malloc_trim), so that the two readings compare
        // what is still held, not what is in flight or cached by the allocator.
        run(&dialer, &addrs, CHECKPOINT).await;
        let rss_at_checkpoint = settled_rss(tasks_before, fds_before).await;
        run(&dialer, &addrs, DIALS - CHECKPOINT).await;
        let elapsed = start.elapsed();
        let checkpoint = rss_at_checkpoint;
        let end = settled_rss(tasks_before, fds_before).await;
        eprintln!("{DIALS} dials in {elapsed:?}; RSS {checkpoint} KiB after {CHECKPOINT}, {end} KiB after all");
        assert!(
            (end as f64) <= checkpoint as f64 * 1.10,
            "RSS grew from {checkpoint} KiB after {CHECKPOINT} dials to {end} KiB after {DIALS}"
        );
    });
}
