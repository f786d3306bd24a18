//! Fleet scale, measured: how precisely thousands of concurrent dials
//! against stalled peers keep their deadline, and what each in-flight dial
//! costs in memory.
//!
//! ```text
//! cargo bench --bench scale               # 100, 1,000 and 10,000 dials
//! cargo bench --bench scale -- 100 1000   # other sizes
//! cargo bench --bench scale -- --check-before-banner 2000 7
//!                                         # fails if a dial before the banner takes over 7 KiB
//! ```
//!
//! The stalled peers run in one child process and every measurement in a
//! fresh one of its own (both this program, re-executed), so the RSS, tasks
//! and fds reported are the dialing side's alone, untouched by earlier runs.
//!
//! - precision: N concurrent dials, deadline 2 s, spread over silent,
//!   stall-after-banner, stall-after-kexinit and stall-auth peers, then each
//!   mode alone: p50, p99 and max of (return time - deadline);
//! - memory: N dials held in flight (deadline 120 s) against a silent peer
//!   (stalled before the banner) and a stall-after-kexinit peer (key
//!   exchange under way, russh's session task alive): (RSS with N in flight
//!   - RSS before) / N, then RSS, alive tasks and open fds once all are dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ssh_dial::testing::{MisbehavingServer, Mode};
use ssh_dial::{Auth, Dialer, HostKeys};

const X25519_ONLY: &str = "stall-auth, x25519 kex";
const STALLED: [Mode; 4] = [
    Mode::Silent,
    Mode::StallAfterBanner,
    Mode::StallAfterKexInit,
    Mode::StallAuth,
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    raise_fd_limit();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("--peers") => run_peers(),
        Some("--precision") => worker(|| precision(&args[1..])),
        Some("--memory") => worker(|| memory(&args[1..])),
        Some("--check-before-banner") => check_before_banner(&args[1..]),
        _ => orchestrate(&args),
    }
}

fn orchestrate(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![100, 1000, 10_000];
    }
    let peers = Peers::spawn()?;
    let addr = |m: Mode| peers.addrs[m.name()].to_string();
    let mix: Vec<String> = STALLED.iter().map(|&m| addr(m)).collect();

    println!("precision: N concurrent dials, deadline 2 s; overshoot = return time - deadline");
    println!(
        "{:<22} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "peers", "dials", "p50", "p99", "max", "timed out"
    );
    for &n in &sizes {
        let mut a = vec!["--precision".to_string(), "mix of 4".into(), n.to_string()];
        a.extend(mix.iter().cloned());
        run_worker(&a)?;
    }
    let biggest = *sizes.iter().max().unwrap_or(&1000);
    for mode in STALLED {
        run_worker(&[
            "--precision".into(),
            mode.name().into(),
            biggest.to_string(),
            addr(mode),
        ])?;
    }
    // The auth stall makes the client finish a key exchange per dial; by
    // default that is post-quantum mlkem768x25519. The same with x25519:
    run_worker(&[
        "--precision".into(),
        X25519_ONLY.into(),
        biggest.to_string(),
        addr(Mode::StallAuth),
    ])?;
    println!();
    println!("memory: N dials in flight; per dial = (RSS in flight - RSS before) / N;");
    println!("after* = once all are dropped and malloc_trim(0) has returned freed memory");
    println!(
        "{:<22} {:>7} {:>10} {:>10} {:>11} {:>11} {:>9}",
        "stalled", "dials", "per dial", "RSS before", "RSS in fl.", "RSS after*", "tasks/fds"
    );
    for (label, mode) in [
        ("before banner (silent)", Mode::Silent),
        ("in key exchange", Mode::StallAfterKexInit),
    ] {
        for &n in &sizes {
            run_worker(&[
                "--memory".into(),
                label.into(),
                n.to_string(),
                addr(mode),
                mode.name().into(),
            ])?;
        }
    }
    Ok(())
}

fn run_worker(args: &[String]) -> std::io::Result<()> {
    let status = Command::new(std::env::current_exe()?).args(args).status()?;
    if !status.success() {
        eprintln!("worker {args:?} failed: {status}");
    }
    Ok(())
}

/// `--check-before-banner N MAX_KIB`: N dials in flight against a silent
/// peer, failing (non-zero exit) if each takes more than MAX_KIB of RSS.
/// CI runs it, so that the memory a stalled dial holds cannot creep up.
fn check_before_banner(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let n = args.first().map(String::as_str).unwrap_or("2000");
    let max = args.get(1).map(String::as_str).unwrap_or("7");
    let peers = Peers::spawn()?;
    let status = Command::new(std::env::current_exe()?)
        .args(["--memory", "before banner (silent)", n])
        .arg(peers.addrs[Mode::Silent.name()].to_string())
        .args([Mode::Silent.name(), max])
        .status()?;
    if !status.success() {
        return Err(format!("a dial before the banner takes more than {max} KiB").into());
    }
    Ok(())
}

fn worker<F, Fut>(f: F) -> Result<(), Box<dyn std::error::Error>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::error::Error>>>,
{
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f())
}

fn dialer(timeout: Duration) -> Dialer {
    Dialer::builder()
        .timeout(timeout)
        .host_keys(HostKeys::insecure_accept_any())
        .build()
}

/// `--precision LABEL N ADDR...`
async fn precision(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let label = &args[0];
    let n: usize = args[1].parse()?;
    let addrs: Vec<SocketAddr> = args[2..]
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let deadline = Duration::from_secs(2);
    let dialer = if label == X25519_ONLY {
        use ssh_dial::russh::{kex, Preferred};
        let preferred = Preferred {
            kex: std::borrow::Cow::Borrowed(&[
                kex::CURVE25519,
                kex::EXTENSION_SUPPORT_AS_CLIENT,
                kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            ]),
            ..Preferred::default()
        };
        Dialer::builder()
            .timeout(deadline)
            .host_keys(HostKeys::insecure_accept_any())
            .russh_config(ssh_dial::russh::client::Config {
                preferred,
                ..Default::default()
            })
            .build()
    } else {
        dialer(deadline)
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (dialer, addr) = (dialer.clone(), addrs[i % addrs.len()]);
        set.spawn(async move {
            let start = Instant::now();
            let r = dialer.dial(addr, "bench", Auth::password("bench")).await;
            (start.elapsed(), r.err().is_some_and(|e| e.is_timeout()))
        });
    }
    let mut over = Vec::with_capacity(n);
    let mut timed_out = 0;
    while let Some(r) = set.join_next().await {
        let (took, t) = r?;
        timed_out += usize::from(t);
        over.push(took.saturating_sub(deadline));
    }
    over.sort_unstable();
    let pct = |p: usize| over[(over.len() - 1) * p / 100].as_secs_f64() * 1000.0;
    println!(
        "{:<22} {:>7} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>9}",
        label,
        n,
        pct(50),
        pct(99),
        pct(100),
        timed_out
    );
    Ok(())
}

/// `--memory LABEL N ADDR MODE`
async fn memory(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let label = &args[0];
    let n: usize = args[1].parse()?;
    let addr: SocketAddr = args[2].parse()?;
    let in_kex = args[3] != Mode::Silent.name();
    let metrics = tokio::runtime::Handle::current().metrics();
    // Warm up the runtime and the allocator with one dial, then measure.
    let dialer = dialer(Duration::from_secs(120));
    let _ = tokio::time::timeout(
        Duration::from_millis(100),
        dialer.dial(addr, "bench", Auth::password("bench")),
    )
    .await;
    settle().await;
    let (tasks_before, fds_before, rss_before) = (metrics.num_alive_tasks(), open_fds(), rss_kib());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let dialer = dialer.clone();
        set.spawn(async move {
            dialer
                .dial(addr, "bench", Auth::password("bench"))
                .await
                .map(drop)
        });
    }
    // In flight: every socket connected and, in key exchange, every russh
    // session task spawned (one beside each dial's own).
    let want_tasks = tasks_before + if in_kex { 2 * n } else { n };
    let until = Instant::now() + Duration::from_secs(60);
    while (open_fds() < fds_before + n || metrics.num_alive_tasks() < want_tasks)
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_in_flight = open_fds() >= fds_before + n && metrics.num_alive_tasks() >= want_tasks;
    settle().await;
    let rss_in_flight = rss_kib();
    set.abort_all();
    while set.join_next().await.is_some() {}
    let until = Instant::now() + Duration::from_secs(10);
    while (open_fds() > fds_before || metrics.num_alive_tasks() > tasks_before)
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    settle().await;
    // Hand freed memory back to the system, so that what is left is what
    // is still held, not what the allocator keeps for reuse.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let per_dial = rss_in_flight.saturating_sub(rss_before) as f64 / n as f64;
    let limit: Option<f64> = args.get(4).map(|m| m.parse()).transpose()?;
    println!(
        "{:<22} {:>7} {:>6.1} KiB {:>6} KiB {:>7} KiB {:>7} KiB {:>+4}/{:<+4}{}",
        label,
        n,
        per_dial,
        rss_before,
        rss_in_flight,
        rss_kib(),
        metrics.num_alive_tasks() as i64 - tasks_before as i64,
        open_fds() as i64 - fds_before as i64,
        if all_in_flight {
            ""
        } else {
            "  (not all got in flight)"
        }
    );
    if !all_in_flight {
        return Err("not all dials got in flight".into());
    }
    match limit {
        Some(max) if per_dial > max => {
            Err(format!("{per_dial:.1} KiB per dial, over the {max} KiB limit").into())
        }
        _ => Ok(()),
    }
}

/// Lets closing sockets and exiting tasks settle before a reading.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64 / 1024
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Raises the soft open-file limit to the hard one: 10,000 dials hold
/// 10,000 sockets on each side.
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

/// The child process holding the stalled peers.
struct Peers {
    child: Child,
    addrs: HashMap<String, SocketAddr>,
}

impl Peers {
    fn spawn() -> std::io::Result<Peers> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--peers")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut addrs = HashMap::new();
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if line == "ready" {
                break;
            }
            if let Some((mode, addr)) = line.split_once(' ') {
                addrs.insert(
                    mode.to_owned(),
                    addr.parse().map_err(std::io::Error::other)?,
                );
            }
        }
        Ok(Peers { child, addrs })
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In the child: start the peers, say where they are, and live until the
/// parent goes away (its end of stdin closes).
fn run_peers() -> Result<(), Box<dyn std::error::Error>> {
    let servers: Vec<MisbehavingServer> = STALLED
        .iter()
        .map(|&m| MisbehavingServer::start(m))
        .collect::<Result<_, _>>()?;
    let mut out = std::io::stdout().lock();
    for s in &servers {
        writeln!(out, "{} {}", s.mode().name(), s.addr())?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink)? > 0 {}
    Ok(())
}
