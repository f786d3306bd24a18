//! A service polling hosts through one connection pool: every round runs
//! the command `--repeat` times on every host, at most `--concurrency` at
//! once, one round or one every `--every` seconds for `--for` seconds. A
//! host is dialed once and its connection reused; a host that keeps failing
//! is failed at once (its circuit is open) until one probe gets through.
//!
//! ```text
//! cargo run --example poll -- --help
//! cargo run --example poll -- --hosts hosts.txt -i ~/.ssh/id_ed25519 --every 2 --for 60 -- uptime
//! ```
//!
//! One JSON line per command (`host`, `ok`, `ms`, `error`, `circuit_open`),
//! then `{"summary": true, "commands": N, "ok": N, "dials": N, "reused": N}`.
//! Exits 0 if every command exited 0, 1 otherwise, 2 on bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ssh_dial::pool::{Destination, Pool};
use ssh_dial::{Auth, Dialer, HostKeys};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Poll hosts with a command through one connection pool.
#[derive(Parser)]
#[command(name = "poll")]
struct Args {
    /// One [user@]host[:port] per line; '#' starts a comment.
    #[arg(long, value_name = "FILE")]
    hosts: PathBuf,
    /// Private key (default: the ssh-agent).
    #[arg(short = 'i', value_name = "KEYFILE")]
    key: Option<PathBuf>,
    /// Password from this environment variable.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// known_hosts file (default: OpenSSH's user and global files).
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Trust any host key (throwaway test servers only).
    #[arg(long)]
    accept_any_host_key: bool,
    /// Per command, checkout (a dial included) and run, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = secs)]
    timeout: Duration,
    /// Commands at once, over all hosts.
    #[arg(long, value_name = "N", default_value_t = 50)]
    concurrency: usize,
    /// Times to run the command on each host per round.
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: usize,
    /// Start a round every SECS seconds (with --for).
    #[arg(long, value_name = "SECS", value_parser = secs, requires = "for_")]
    every: Option<Duration>,
    /// How long to keep polling, in seconds (with --every).
    #[arg(long = "for", id = "for_", value_name = "SECS", value_parser = secs, requires = "every")]
    for_: Option<Duration>,
    /// The most connections to one host.
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_connections_per_host: usize,
    /// The most sessions at once on one connection (sshd's MaxSessions).
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_sessions_per_connection: usize,
    /// The command, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

fn read_hosts(path: &PathBuf) -> Result<Vec<Destination>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| Destination::parse(l, &user).map_err(|e| format!("{}: {e}", path.display())))
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> Result<bool, String> {
    let args = Args::parse();
    let hosts = read_hosts(&args.hosts)?;
    let auth = match (&args.key, &args.password_env) {
        (Some(key), _) => Auth::key_file(key, None),
        (None, Some(var)) => {
            Auth::password(std::env::var(var).map_err(|_| format!("{var} is not set"))?)
        }
        (None, None) => Auth::agent(),
    };
    let mut dialer = Dialer::builder().timeout(args.timeout);
    match (&args.known_hosts, args.accept_any_host_key) {
        (_, true) => dialer = dialer.host_keys(HostKeys::insecure_accept_any()),
        (Some(p), false) => dialer = dialer.host_keys(HostKeys::known_hosts(p)),
        (None, false) => {}
    }
    let pool = Pool::builder(dialer.build(), auth)
        .max_connections_per_host(args.max_connections_per_host)
        .max_sessions_per_connection(args.max_sessions_per_connection)
        .checkout_timeout(args.timeout)
        .build();
    let command = args.command.join(" ");
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (mut commands, mut ok) = (0usize, 0usize);
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        let mut running = JoinSet::new();
        for host in &hosts {
            for _ in 0..args.repeat {
                let (pool, host, command, slots) =
                    (pool.clone(), host.clone(), command.clone(), slots.clone());
                let timeout = args.timeout;
                running.spawn(async move {
                    let _slot = slots.acquire_owned().await.expect("never closed");
                    let began = Instant::now();
                    let result = pool.command(&host, command).timeout(timeout).output().await;
                    (host, began.elapsed(), result)
                });
            }
        }
        while let Some(done) = running.join_next().await {
            let (host, took, result) = done.map_err(|e| e.to_string())?;
            commands += 1;
            let success = matches!(&result, Ok(out) if out.status.success());
            ok += usize::from(success);
            let error = match &result {
                Ok(out) if !out.status.success() => Some(out.status.to_string()),
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            println!(
                "{}",
                serde_json::json!({
                    "host": host.to_string(),
                    "ok": success,
                    "ms": took.as_secs_f64() * 1e3,
                    "error": error,
                    "circuit_open": result.as_ref().err().is_some_and(|e| e.is_circuit_open()),
                })
            );
        }
        round += 1;
        let (Some(every), Some(total)) = (args.every, args.for_) else {
            break;
        };
        let next = every * round;
        if next >= total {
            break;
        }
        tokio::time::sleep_until((start + next).into()).await;
    }
    let stats = pool.state().statistics;
    let checkouts = stats.checkouts_hit + stats.checkouts_waited;
    println!(
        "{}",
        serde_json::json!({
            "summary": true,
            "commands": commands,
            "ok": ok,
            "dials": stats.dials,
            "reused": checkouts.saturating_sub(stats.dials),
            "circuit_rejections": stats.circuit_rejections,
            "sessions_refused": stats.sessions_refused,
            "seconds": start.elapsed().as_secs_f64(),
        })
    );
    pool.close().await;
    Ok(ok == commands)
}
