//! Dials the embedded well-behaved server and every misbehaving peer with a
//! 2 s deadline, and prints what happened and what was left behind.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! All servers run in this process on 127.0.0.1, each on its own thread and
//! runtime; the task count is the dialing runtime's, the fd count the
//! process's (servers close their side once the client closes its own).

use std::time::{Duration, Instant};

use clap::Parser;
use ssh_dial::testing::{ed25519_key, MisbehavingServer, Mode, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys};

/// Dial an embedded server and every kind of sick peer with a 2 s deadline,
/// and show what each dial left behind.
#[derive(Parser)]
#[command(name = "demo")]
struct Args {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    Args::parse();
    let user_key = ed25519_key()?;
    let good = TestServer::builder()
        .authorized_key("demo", user_key.public_key().clone())
        .start()?;
    let mut peers = vec![("good (russh)".to_string(), good.addr(), None)];
    let mut servers = Vec::new();
    for mode in Mode::ALL {
        let server = MisbehavingServer::start(mode)?;
        peers.push((mode.name().to_string(), server.addr(), Some(mode)));
        servers.push(server);
    }

    let deadline = Duration::from_secs(2);
    let metrics = tokio::runtime::Handle::current().metrics();
    println!(
        "{:<27} {:<8} {:<17} {:>9} {:>6} {:>5}",
        "peer", "outcome", "phase", "elapsed", "tasks", "fds"
    );
    for (name, addr, mode) in peers {
        let host_keys = match mode {
            None => good.host_keys(),
            // The misbehaving peers never get as far as a host key check,
            // except the auth stall, whose key is random.
            Some(_) => HostKeys::insecure_accept_any(),
        };
        let dialer = Dialer::builder()
            .timeout(deadline)
            .host_keys(host_keys)
            .build();
        let tasks_before = metrics.num_alive_tasks();
        let fds_before = open_fds();
        let start = Instant::now();
        let result = dialer.dial(addr, "demo", Auth::key(user_key.clone())).await;
        let elapsed = start.elapsed();
        let (outcome, phase, detail) = match result {
            Ok(client) => {
                let out = client.exec("echo hello from the embedded server").await?;
                client.close().await;
                (
                    "ok",
                    "-".to_string(),
                    String::from_utf8_lossy(&out.stdout).trim().to_string(),
                )
            }
            Err(e) => (
                if e.is_timeout() { "timeout" } else { "error" },
                e.phase().to_string(),
                e.to_string(),
            ),
        };
        // The server closes its side when it sees our close, and on this
        // multi-threaded runtime an ended task is counted for one more turn
        // of the scheduler: give both a moment.
        let fds_after = settle(open_fds, fds_before).await;
        let tasks_after = settle(|| metrics.num_alive_tasks(), tasks_before).await;
        println!(
            "{:<27} {:<8} {:<17} {:>8.3}s {:>+6} {:>+5}",
            name,
            outcome,
            phase,
            elapsed.as_secs_f64(),
            tasks_after as i64 - tasks_before as i64,
            fds_after as i64 - fds_before as i64,
        );
        println!("{:<27} {}", "", detail);
    }
    Ok(())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Polls `count` until it is back to `target` or a second has passed.
async fn settle(count: impl Fn() -> usize, target: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        let n = count();
        if n <= target || Instant::now() >= until {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
