//! How far past its deadline a dial returns, and what it leaves behind,
//! against every stalling peer: many dials, some at a time, per mode.
//!
//! ```text
//! cargo bench --bench overshoot -- [DIALS] [CONCURRENT] [DEADLINE_MS]
//! ```
//!
//! Defaults: 1000 dials, 200 at a time, 1000 ms. Prints one row per mode:
//! overshoot (return time minus deadline) at p50, p99 and max, and the
//! dialing runtime's alive tasks and the process's open fds before and after
//! (after: once the in-process servers, which close their side when the
//! client closes its own, have done so, waited for up to 5 s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh_dial::testing::{MisbehavingServer, Mode};
use ssh_dial::{Auth, Dialer, HostKeys};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .map(|a| a.parse::<u64>());
    let dials = args.next().transpose()?.unwrap_or(1000) as usize;
    let concurrent = args.next().transpose()?.unwrap_or(200) as usize;
    let deadline = Duration::from_millis(args.next().transpose()?.unwrap_or(1000));

    let metrics = tokio::runtime::Handle::current().metrics();
    println!("{dials} dials per mode, {concurrent} at a time, deadline {deadline:?}");
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>13} {:>11}",
        "mode", "p50", "p99", "max", "tasks bef/aft", "fds bef/aft"
    );
    for mode in Mode::ALL.into_iter().filter(|m| m.stalls()) {
        let server = MisbehavingServer::start(mode)?;
        let addr = server.addr();
        let dialer = Dialer::builder()
            .timeout(deadline)
            .host_keys(HostKeys::insecure_accept_any())
            .build();
        let tasks_before = metrics.num_alive_tasks();
        let fds_before = open_fds();
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrent));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..dials {
            let dialer = dialer.clone();
            let permits = permits.clone();
            set.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore open");
                let start = Instant::now();
                let result = dialer.dial(addr, "bench", Auth::password("bench")).await;
                (start.elapsed(), result.err().map(|e| e.is_timeout()))
            });
        }
        let mut overshoot_us = Vec::with_capacity(dials);
        while let Some(joined) = set.join_next().await {
            let (took, timed_out) = joined?;
            assert_eq!(timed_out, Some(true), "{mode}: every dial should time out");
            overshoot_us.push(took.saturating_sub(deadline).as_micros() as u64);
        }
        overshoot_us.sort_unstable();
        let pct = |p: usize| overshoot_us[(overshoot_us.len() - 1) * p / 100] as f64 / 1000.0;
        let until = Instant::now() + Duration::from_secs(5);
        while open_fds() > fds_before && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!(
            "{:<20} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>6}/{:<6} {:>5}/{:<5}",
            mode.name(),
            pct(50),
            pct(99),
            pct(100),
            tasks_before,
            metrics.num_alive_tasks(),
            fds_before,
            open_fds()
        );
    }
    Ok(())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}
