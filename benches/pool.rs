//! The connection pool, measured against real sshd processes on loopback:
//!
//! - `poll`: H hosts (one sshd each) polled every E seconds for T seconds
//!   through one pool: handshakes (counted in sshd's logs), hit rate, and
//!   each command's latency, beside a dial per command for a few rounds.
//! - `blackhole`: the same hosts with a black-holed one among them (a
//!   server that accepts and never speaks), rounds with and without it
//!   alternating: the healthy hosts' p50 and p99.
//! - `memory`: N idle pooled connections to one sshd: the RSS each costs;
//!   with `--asyncssh`, the same for Python's asyncssh, in a process of its
//!   own.
//! - `soak`: H hosts polled every second for M minutes while one host at a
//!   time dies (its sshd and sessions killed) and comes back on its port:
//!   RSS and tasks each minute.
//!
//! ```text
//! cargo bench --bench pool -- poll 50 2 60        # hosts, every, for (seconds)
//! cargo bench --bench pool -- blackhole 50 10     # hosts, rounds each way
//! cargo bench --bench pool -- memory 200 --asyncssh
//! cargo bench --bench pool -- soak 20 30          # hosts, minutes (--no-churn: none dies)
//! ```
//!
//! Needs `sshd` and `ssh-keygen` (openssh-server, openssh-client).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh_dial::pool::{Destination, Pool};
use ssh_dial::testing::{MisbehavingServer, Mode, Sshd};
use ssh_dial::{Auth, Dialer, HostKeys};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A user key every host lets in.
struct Key {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Key {
    fn new() -> Key {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        ssh_dial::testing::ssh_keygen(&path, "ed25519", "").unwrap();
        Key { _dir: dir, path }
    }

    fn public(&self) -> std::path::PathBuf {
        self.path.with_extension("pub")
    }
}

/// An sshd that lets `key` in.
fn host(key: &Key, port: Option<u16>) -> Sshd {
    let mut b = Sshd::builder();
    if let Some(p) = port {
        b = b.port(p);
    }
    let sshd = b.start().unwrap();
    sshd.authorize(&key.public()).unwrap();
    sshd
}

fn handshakes(hosts: &[Sshd]) -> usize {
    hosts
        .iter()
        .map(|s| s.log().matches("Accepted publickey").count())
        .sum()
}

fn pool_for(key: &Key, timeout: Duration) -> Pool {
    let dialer = Dialer::builder()
        .timeout(timeout)
        .host_keys(HostKeys::insecure_accept_any())
        .build();
    Pool::builder(dialer, Auth::key_file(&key.path, None))
        .checkout_timeout(timeout)
        .build()
}

fn dest(sshd: &Sshd) -> Destination {
    Destination::new(sshd.addr(), sshd.user()).unwrap()
}

/// Runs `repeat` commands on each host, at most 50 at once; each
/// command's latency from the moment it had a concurrency slot.
async fn round(
    pool: &Pool,
    hosts: &[Destination],
    repeat: usize,
    command: &str,
) -> Vec<(usize, Result<Duration, String>)> {
    let slots = Arc::new(Semaphore::new(50));
    let mut running = JoinSet::new();
    for (i, h) in hosts.iter().enumerate() {
        for _ in 0..repeat {
            let (pool, h, slots, command) =
                (pool.clone(), h.clone(), slots.clone(), command.to_owned());
            running.spawn(async move {
                let _slot = slots.acquire_owned().await.unwrap();
                let start = Instant::now();
                let r = pool.exec(&h, &command).await;
                (i, r.map(|_| start.elapsed()).map_err(|e| e.to_string()))
            });
        }
    }
    let mut out = Vec::new();
    while let Some(r) = running.join_next().await {
        out.push(r.unwrap());
    }
    out
}

async fn poll(n: usize, every: Duration, total: Duration) {
    let key = Key::new();
    let hosts: Vec<Sshd> = (0..n).map(|_| host(&key, None)).collect();
    let dests: Vec<Destination> = hosts.iter().map(dest).collect();
    let pool = pool_for(&key, Duration::from_secs(10));
    let rss_before = rss_kib();
    let start = Instant::now();
    let mut latencies = Vec::new();
    let (mut commands, mut failed, mut rounds) = (0, 0, 0u32);
    loop {
        for (_, r) in round(&pool, &dests, 1, "true").await {
            commands += 1;
            match r {
                Ok(d) => latencies.push(d),
                Err(e) => {
                    failed += 1;
                    eprintln!("{e}");
                }
            }
        }
        rounds += 1;
        let next = every * rounds;
        if next >= total {
            break;
        }
        tokio::time::sleep_until((start + next).into()).await;
    }
    let elapsed = start.elapsed();
    let rss_after = rss_kib();
    let stats = pool.state().statistics;
    let checkouts = stats.checkouts_hit + stats.checkouts_waited;
    latencies.sort();
    let logged = handshakes(&hosts);
    // The same hosts, a dial per command, for comparison.
    let dialer = pool.dialer().clone();
    let mut dialed = Vec::new();
    for _ in 0..3 {
        let mut running = JoinSet::new();
        for h in &hosts {
            let (dialer, addr, user, path) = (
                dialer.clone(),
                h.addr(),
                h.user().to_owned(),
                key.path.clone(),
            );
            running.spawn(async move {
                let start = Instant::now();
                let c = dialer
                    .dial(addr, user, Auth::key_file(path, None))
                    .await
                    .unwrap();
                c.exec("true").await.unwrap();
                c.close().await;
                start.elapsed()
            });
        }
        while let Some(d) = running.join_next().await {
            dialed.push(d.unwrap());
        }
    }
    dialed.sort();
    println!("poll: {n} hosts (one sshd each), every {every:?} for {total:?}, command `true`");
    println!("| | value |");
    println!("|---|---|");
    println!("| rounds | {rounds} in {:.1} s |", elapsed.as_secs_f64());
    println!("| commands | {commands} ({failed} failed) |");
    println!(
        "| handshakes (sshd logs) | {logged} (pool dials: {}) |",
        stats.dials
    );
    println!(
        "| hit rate | {:.2} % ({} of {checkouts} checkouts reused a connection) |",
        100.0 * checkouts.saturating_sub(stats.dials) as f64 / checkouts.max(1) as f64,
        checkouts.saturating_sub(stats.dials)
    );
    println!(
        "| latency through the pool | p50 {:.2} ms, p99 {:.2} ms |",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    println!(
        "| a dial per command (3 rounds) | p50 {:.2} ms, p99 {:.2} ms |",
        ms(percentile(&dialed, 0.5)),
        ms(percentile(&dialed, 0.99))
    );
    println!(
        "| RSS of this process | {rss_before} KiB before, {rss_after} KiB after the polling |"
    );
}

async fn blackhole(n: usize, rounds: usize) {
    let key = Key::new();
    let hosts: Vec<Sshd> = (0..n).map(|_| host(&key, None)).collect();
    let healthy: Vec<Destination> = hosts.iter().map(dest).collect();
    let hole = MisbehavingServer::start(Mode::Silent).unwrap();
    let mut with_hole = healthy.clone();
    with_hole.push(Destination::new(hole.addr(), "u").unwrap());
    let pool = pool_for(&key, Duration::from_secs(2));
    // Warm: every healthy host has its connection.
    round(&pool, &healthy, 1, "true").await;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let mut hole_errors = 0;
    for _ in 0..rounds {
        for (set, into) in [(&healthy, &mut without), (&with_hole, &mut with)] {
            for (i, r) in round(&pool, set, 4, "true").await {
                match r {
                    Ok(d) if i < n => into.push(d),
                    Ok(_) => {}
                    Err(_) if i == n => hole_errors += 1,
                    Err(e) => panic!("a healthy host failed: {e}"),
                }
            }
        }
    }
    without.sort();
    with.sort();
    let stats = pool.state().statistics;
    println!(
        "blackhole: {n} healthy hosts (sshd), 4 commands each per round, 50 at once; \
         {rounds} rounds without and {rounds} with a black-holed host, alternating"
    );
    println!("| healthy hosts' latency | p50 | p99 |");
    println!("|---|---|---|");
    for (name, l) in [("without the black hole", &without), ("with it", &with)] {
        println!(
            "| {name} | {:.2} ms | {:.2} ms |",
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99))
        );
    }
    println!(
        "p99 with / without: {:.3}; the black hole's {hole_errors} commands failed \
         ({} dials, {} at once by its open circuit)",
        percentile(&with, 0.99).as_secs_f64() / percentile(&without, 0.99).as_secs_f64(),
        stats.dials_failed,
        stats.circuit_rejections
    );
}

async fn memory(n: usize, asyncssh: bool) {
    let key = Key::new();
    let sshd = Sshd::builder()
        .config_line("MaxStartups 10000")
        .start()
        .unwrap();
    sshd.authorize(&key.public()).unwrap();
    let d = dest(&sshd);
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(30))
        .host_keys(HostKeys::insecure_accept_any())
        .build();
    // A warm-up connection, closed, so that first-use allocations are not
    // charged to the connections.
    let warm = Pool::new(dialer.clone(), Auth::key_file(&key.path, None));
    warm.exec(&d, "true").await.unwrap();
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: as below.
    unsafe { libc::malloc_trim(0) };
    let before = rss_kib();
    let pool = Pool::builder(dialer, Auth::key_file(&key.path, None))
        .max_sessions_per_connection(1)
        .max_connections_per_host(n)
        .max_connections(n)
        .build();
    // n at once, one session each: n connections; then all idle.
    let mut held = Vec::new();
    for chunk in 0..n.div_ceil(50) {
        let mut running = JoinSet::new();
        for _ in 0..50.min(n - chunk * 50) {
            let (pool, d) = (pool.clone(), d.clone());
            running.spawn(async move { pool.get(&d).await.unwrap() });
        }
        while let Some(c) = running.join_next().await {
            held.push(c.unwrap());
        }
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    let state = pool.state();
    assert_eq!(state.idle_connections, n, "{state:?}");
    let ours = (after - before) as f64 / n as f64;
    println!("memory: {n} idle connections to one sshd (curve25519, ed25519, chacha20-poly1305 or as negotiated)");
    println!("| client | RSS per idle connection |");
    println!("|---|---|");
    println!("| ssh-dial pool | {ours:.1} KiB ({before} -> {after} KiB) |");
    // What the allocator keeps but is free, from the handshakes' buffers,
    // handed back: the connections' own share.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let trimmed = rss_kib();
    println!(
        "| ssh-dial pool, after malloc_trim(0) | {:.1} KiB ({before} -> {trimmed} KiB) |",
        (trimmed as f64 - before as f64) / n as f64
    );
    if asyncssh {
        let script = format!(
            r#"
import asyncio, asyncssh, resource
def rss():
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS:'): return int(l.split()[1])
async def main():
    opts = dict(username={user:?}, client_keys=[{key:?}], known_hosts=None)
    warm = await asyncssh.connect('127.0.0.1', {port}, **opts)
    await warm.run('true'); warm.close(); await warm.wait_closed()
    before = rss()
    conns = []
    for i in range(0, {n}, 50):
        conns += await asyncio.gather(*[asyncssh.connect('127.0.0.1', {port}, **opts) for _ in range(min(50, {n} - i))])
    await asyncio.sleep(0.5)
    after = rss()
    print(before, after)
    for c in conns: c.close()
asyncio.run(main())
"#,
            user = sshd.user(),
            key = key.path.display().to_string(),
            port = sshd.addr().port(),
        );
        let out = std::process::Command::new("python3")
            .args(["-W", "ignore", "-c", &script])
            .output()
            .expect("python3 runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let nums: Vec<f64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        match nums.as_slice() {
            [b, a] => println!(
                "| asyncssh {} | {:.1} KiB ({b} -> {a} KiB) |",
                asyncssh_version(),
                (a - b) / n as f64
            ),
            _ => println!(
                "| asyncssh | failed: {}{} |",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
}

fn asyncssh_version() -> String {
    std::process::Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import asyncssh; print(asyncssh.__version__)",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Every process below `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        {
            parents.push((child, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found
}

/// A row of the soak's table: what the process and the pool hold now.
fn row(at: &str, pool: &Pool, [commands, failed, deaths]: [u64; 3]) {
    let s = pool.state();
    println!(
        "| {at} | {} | {} | {} | {commands} | {failed} | {deaths} | {} |",
        rss_kib(),
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        s.connections,
        s.statistics.circuit_rejections
    );
}

async fn soak(n: usize, minutes: u64, churn: bool) {
    let key = Key::new();
    let mut hosts: Vec<Option<Sshd>> = (0..n).map(|_| Some(host(&key, None))).collect();
    let ports: Vec<u16> = hosts
        .iter()
        .map(|h| h.as_ref().unwrap().addr().port())
        .collect();
    let user = hosts[0].as_ref().unwrap().user().to_owned();
    let dests: Vec<Destination> = ports
        .iter()
        .map(|&p| Destination::new(("127.0.0.1", p), user.as_str()).unwrap())
        .collect();
    let pool = Pool::builder(
        Dialer::builder()
            .timeout(Duration::from_secs(3))
            .ssh_keepalive_interval(Duration::from_secs(2))
            .host_keys(HostKeys::insecure_accept_any())
            .build(),
        Auth::key_file(&key.path, None),
    )
    .checkout_timeout(Duration::from_secs(3))
    .idle_timeout(Duration::from_secs(20))
    .build();
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let start = Instant::now();
    let end = start + Duration::from_secs(minutes * 60);
    let mut next_sample = start;
    let mut minute = 0;
    let (mut commands, mut failed, mut deaths) = (0u64, 0u64, 0u64);
    let mut victim = 0;
    let mut dead_since: Option<Instant> = None;
    if churn {
        println!("soak: {n} hosts (sshd) polled every second for {minutes} min; every 5 s one host dies (sshd and sessions killed), back on its port 3 s later");
    } else {
        println!("soak: {n} hosts (sshd) polled every second for {minutes} min, none dying");
    }
    println!("| minute | RSS KiB | tasks | connections | commands | failed | deaths | circuit rejections |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut tick = 0u64;
    while Instant::now() < end {
        if Instant::now() >= next_sample {
            row(&minute.to_string(), &pool, [commands, failed, deaths]);
            minute += 1;
            next_sample = start + Duration::from_secs(60 * minute);
        }
        // Churn: kill a host every 5 s, bring it back 3 s later.
        if churn && tick.is_multiple_of(5) && dead_since.is_none() {
            if let Some(h) = hosts[victim].take() {
                let pids = descendants(h.pid());
                for p in pids.iter().rev() {
                    // SAFETY: kill(2) on processes this bench started.
                    unsafe { libc::kill(*p as libc::pid_t, libc::SIGKILL) };
                }
                drop(h);
                deaths += 1;
                dead_since = Some(Instant::now());
            }
        }
        if dead_since.is_some_and(|d| d.elapsed() >= Duration::from_secs(3)) {
            hosts[victim] = Some(host(&key, Some(ports[victim])));
            dead_since = None;
            victim = (victim + 1) % n;
        }
        for (_, r) in round(&pool, &dests, 1, "true").await {
            commands += 1;
            failed += u64::from(r.is_err());
        }
        tick += 1;
        tokio::time::sleep_until((start + Duration::from_secs(tick)).into()).await;
    }
    row("end", &pool, [commands, failed, deaths]);
    drop(pool);
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "pool dropped: tasks {} (before the pool: {tasks_before})",
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    );
}

#[tokio::main(worker_threads = 2)]
async fn main() {
    raise_fd_limit();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let num = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("poll") => {
            poll(
                num(1, 50) as usize,
                Duration::from_secs(num(2, 2)),
                Duration::from_secs(num(3, 60)),
            )
            .await
        }
        Some("blackhole") => blackhole(num(1, 50) as usize, num(2, 10) as usize).await,
        Some("memory") => {
            memory(num(1, 200) as usize, args.iter().any(|a| a == "--asyncssh")).await
        }
        Some("soak") => {
            let churn = !args.iter().any(|a| a == "--no-churn");
            soak(num(1, 20) as usize, num(2, 30), churn).await
        }
        _ => {
            poll(10, Duration::from_secs(1), Duration::from_secs(5)).await;
            println!();
            blackhole(10, 3).await;
            println!();
            memory(50, false).await;
        }
    }
}
