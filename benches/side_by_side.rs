//! ssh-dial beside the OpenSSH client, on one real sshd on loopback, with
//! the same algorithms pinned on both sides: key exchange
//! `curve25519-sha256`, host key `ssh-ed25519`, cipher
//! `chacha20-poly1305@openssh.com`, an Ed25519 user key. The OpenSSH 9.2
//! client would otherwise pick `sntrup761x25519-sha512`, which costs it
//! about 80 ms more CPU per host: a comparison that does not pin the key
//! exchange is not a comparison.
//!
//! ```text
//! cargo bench --bench side_by_side              # 1,000 hosts, 100 at a time, 3 rounds
//! cargo bench --bench side_by_side -- 300 2     # 300 hosts, 2 rounds
//! ```
//!
//! Per host: dial (or `ssh`), key auth, `exec("true")` (the remote command
//! `true`), close. Each client runs in a fresh process of its own (this
//! program re-executed), so that its CPU time (`getrusage`, children
//! included for `ssh`) and peak RSS are its alone; rounds alternate
//! between the clients. sshd's CPU per host (its own and its reaped
//! children's, from `/proc/PID/stat`) gives the ceiling this machine can
//! serve: cores / sshd CPU per host. `SIDE_BY_SIDE_WRAP="perf record -g
//! -o FILE --"` (or `strace -c -f -o FILE`) runs the ssh-dial worker under
//! that command.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh_dial::testing::Sshd;
use ssh_dial::{Auth, Dialer, HostKeys};

const CONCURRENT: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("--ssh-dial") => ssh_dial_worker(&args[1..]),
        Some("--openssh") => openssh_worker(&args[1..]),
        _ => orchestrate(&args),
    }
}

/// CPU seconds (user + system) of this process, or of its waited-for
/// children, and the peak RSS in KiB.
fn rusage(who: libc::c_int) -> (f64, i64) {
    // SAFETY: getrusage writes into the struct we own.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut r) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(r.ru_utime) + secs(r.ru_stime), r.ru_maxrss)
}

/// sshd's CPU seconds so far, its own and its reaped children's.
fn sshd_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14-17 (utime, stime, cutime, cstime) are 11..15 after the name.
    let ticks = f[11] + f[12] + f[13] + f[14];
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

struct Run {
    seconds: f64,
    cpu: f64,
    peak_kib: i64,
}

fn parse_run(stdout: &[u8]) -> Run {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("worker printed no RESULT:\n{text}"));
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    Run {
        seconds: v[0],
        cpu: v[1],
        peak_kib: v[2] as i64,
    }
}

fn orchestrate(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let hosts: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let sshd = Sshd::start()?;
    let known = sshd.write_file("known_hosts", &sshd.known_hosts_line())?;
    let have_ssh = ssh_dial::testing::find_program("ssh").is_ok();
    let exe = std::env::current_exe()?;
    // SIDE_BY_SIDE_WRAP="perf record -g -o FILE --" (or strace, ...):
    // runs the ssh-dial worker under that command.
    let wrap = std::env::var("SIDE_BY_SIDE_WRAP").unwrap_or_default();
    let common = |mode: &str| {
        let words: Vec<&str> = wrap.split_whitespace().collect();
        let mut c = match words.split_first() {
            Some((program, rest)) if mode == "--ssh-dial" => {
                let mut c = Command::new(program);
                c.args(rest).arg(&exe);
                c
            }
            _ => Command::new(&exe),
        };
        c.arg(mode)
            .arg(hosts.to_string())
            .arg(sshd.addr().to_string())
            .arg(sshd.user())
            .arg(sshd.user_key_path())
            .arg(&known);
        c
    };
    let cores = std::thread::available_parallelism()?.get() as f64;
    println!(
        "{hosts} hosts, {CONCURRENT} at a time, {rounds} rounds; both sides pinned to {}; \
         {cores} cores",
        common::PINNED
    );
    let mut results: Vec<(&str, Vec<(Run, f64)>)> = vec![("ssh-dial", Vec::new())];
    if have_ssh {
        results.push(("OpenSSH ssh, a process per host", Vec::new()));
    }
    for _ in 0..rounds {
        for (name, runs) in results.iter_mut() {
            let mode = if *name == "ssh-dial" {
                "--ssh-dial"
            } else {
                "--openssh"
            };
            let before = sshd_cpu(sshd.pid());
            let out = common(mode).output()?;
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let sshd_per_host = (sshd_cpu(sshd.pid()) - before) / hosts as f64;
            runs.push((parse_run(&out.stdout), sshd_per_host));
        }
    }
    println!();
    println!(
        "| client | hosts/s | client CPU per host | client peak RSS | sshd CPU per host | ceiling (cores / sshd CPU) | of ceiling |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, runs) in &results {
        let med = |f: &dyn Fn(&(Run, f64)) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let rate = med(&|r| hosts as f64 / r.0.seconds);
        let cpu_ms = med(&|r| r.0.cpu / hosts as f64 * 1e3);
        let peak = med(&|r| r.0.peak_kib as f64) / 1024.0;
        let sshd_ms = med(&|r| r.1 * 1e3);
        let ceiling = cores / (sshd_ms / 1e3);
        let peak = if *name == "ssh-dial" {
            format!("{peak:.1} MB")
        } else {
            format!("{peak:.1} MB per process")
        };
        println!(
            "| {name} | {rate:.1} | {cpu_ms:.2} ms | {peak} | {sshd_ms:.1} ms | {ceiling:.0} hosts/s | {:.0}% |",
            rate / ceiling * 100.0
        );
    }
    Ok(())
}

struct WorkerArgs {
    hosts: usize,
    addr: std::net::SocketAddr,
    user: String,
    key: std::path::PathBuf,
    known: std::path::PathBuf,
}

fn worker_args(args: &[String]) -> WorkerArgs {
    WorkerArgs {
        hosts: args[0].parse().unwrap(),
        addr: args[1].parse().unwrap(),
        user: args[2].clone(),
        key: args[3].clone().into(),
        known: args[4].clone().into(),
    }
}

fn ssh_dial_worker(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let w = worker_args(args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let start = Instant::now();
    runtime.block_on(async {
        let dialer = Dialer::builder()
            .timeout(Duration::from_secs(60))
            .host_keys(HostKeys::known_hosts(&w.known))
            .russh_config(common::pinned())
            .build();
        let key = Auth::key(ssh_dial::russh::keys::load_secret_key(&w.key, None)?);
        let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..w.hosts {
            let permit = permits.clone().acquire_owned().await?;
            let (dialer, key, user) = (dialer.clone(), key.clone(), w.user.clone());
            let addr = w.addr;
            set.spawn(async move {
                let client = dialer.dial(addr, user, key).await.expect("dial");
                let out = client.exec("true").await.expect("exec");
                client.close().await;
                drop(permit);
                out.status.success()
            });
        }
        while let Some(ok) = set.join_next().await {
            assert!(ok?, "`true` failed");
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    drop(runtime);
    let (cpu, peak) = rusage(libc::RUSAGE_SELF);
    println!("RESULT {seconds} {cpu} {peak}");
    Ok(())
}

fn openssh_worker(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let w = worker_args(args);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    runtime.block_on(async {
        let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..w.hosts {
            let permit = permits.clone().acquire_owned().await?;
            let mut command = tokio::process::Command::new("ssh");
            command
                .args([
                    "-F",
                    "none",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=yes",
                ])
                .args(["-o", "GlobalKnownHostsFile=/dev/null"])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", w.known.display()))
                .args(["-o", "KexAlgorithms=curve25519-sha256"])
                .args(["-o", "HostKeyAlgorithms=ssh-ed25519"])
                .args(["-o", "Ciphers=chacha20-poly1305@openssh.com"])
                .arg("-i")
                .arg(&w.key)
                .args(["-p", &w.addr.port().to_string()])
                .arg(format!("{}@{}", w.user, w.addr.ip()))
                .arg("true")
                .stdin(std::process::Stdio::null());
            set.spawn(async move {
                let status = command.status().await;
                drop(permit);
                status
            });
        }
        while let Some(r) = set.join_next().await {
            assert!(r??.success(), "ssh failed");
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let (cpu_self, _) = rusage(libc::RUSAGE_SELF);
    let (cpu_children, peak_child) = rusage(libc::RUSAGE_CHILDREN);
    println!("RESULT {seconds} {} {peak_child}", cpu_self + cpu_children);
    Ok(())
}
