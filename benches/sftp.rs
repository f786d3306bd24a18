//! SFTP throughput, measured: a file of SIZE put and got through
//! `Sftp::put`/`Sftp::get` and through OpenSSH's `sftp -b` on the same
//! sshd (its `internal-sftp`), both pinned to the same key exchange
//! (curve25519-sha256) and cipher, turns alternated, three each, medians;
//! each turn is a whole run (dial, auth, subsystem, transfer, close), as
//! `sftp -b` does; the client's peak RSS growth during ours.
//!
//! ```text
//! cargo bench --bench sftp                             # 1 GiB, chacha20-poly1305, loopback
//! cargo bench --bench sftp -- 256 aes128-gcm           # MiB, cipher
//! cargo bench --bench sftp -- 1024 chacha20-poly1305 50  # at 50 ms RTT (root: netem in a namespace)
//! ```
//!
//! Needs `sshd` and `sftp` (openssh-server, openssh-client); the RTT runs
//! need root and `ip`/`tc` (iproute2).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ssh_dial::testing::Sshd;
use ssh_dial::{Auth, Dialer, HostKeys};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS (VmHWM) to the current RSS.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A file of `size` bytes that neither compresses nor has holes.
fn make_file(path: &Path, size: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs this bench again inside a network namespace of its own whose
/// loopback delays each packet by half of `rtt_ms`.
fn in_namespace(rtt_ms: u64, args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("sftpbench-{}", std::process::id());
    run("ip", &["netns", "add", &name])?;
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        run(
            "ip",
            &["netns", "exec", &name, "ip", "link", "set", "lo", "up"],
        )?;
        let delay = format!("{}ms", rtt_ms / 2);
        run(
            "ip",
            &[
                "netns", "exec", &name, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                "delay", &delay, "limit", "100000",
            ],
        )?;
        let status = Command::new("ip")
            .args(["netns", "exec", &name])
            .arg(std::env::current_exe()?)
            .args(args)
            .env("SFTP_BENCH_RTT", rtt_ms.to_string())
            .status()?;
        if !status.success() {
            return Err("the run inside the namespace failed".into());
        }
        Ok(())
    })();
    let _ = run("ip", &["netns", "del", &name]);
    result
}

struct Setup {
    sshd: Sshd,
    known: PathBuf,
    cipher: russh::cipher::Name,
}

impl Setup {
    async fn ours(
        &self,
        put: bool,
        from: &Path,
        to: &Path,
    ) -> Result<u64, Box<dyn std::error::Error>> {
        let mut config = russh::client::Config::default();
        config.preferred.kex = Cow::Owned(vec![russh::kex::CURVE25519]);
        config.preferred.cipher = Cow::Owned(vec![self.cipher]);
        let client = Dialer::builder()
            .russh_config(config)
            .host_keys(HostKeys::known_hosts(&self.known))
            .build()
            .dial(
                self.sshd.addr(),
                self.sshd.user(),
                Auth::key(self.sshd.user_key().clone()),
            )
            .await?;
        let sftp = client.sftp().await?;
        let n = if put {
            sftp.put(from, to.to_str().unwrap()).await?
        } else {
            sftp.get(from.to_str().unwrap(), to).await?
        };
        drop(sftp);
        client.close().await;
        Ok(n)
    }

    fn theirs(&self, put: bool, from: &Path, to: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let verb = if put { "put" } else { "get" };
        let batch = self.sshd.write_file(
            "batch",
            &format!("{verb} {} {}\n", from.display(), to.display()),
        )?;
        let out = Command::new(ssh_dial::testing::find_program("sftp")?)
            .args(["-F", "/dev/null", "-q", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known.display()))
            .args([
                "-o",
                "KexAlgorithms=curve25519-sha256",
                "-c",
                self.cipher.as_ref(),
            ])
            .arg("-i")
            .arg(self.sshd.user_key_path())
            .args(["-P", &self.sshd.addr().port().to_string(), "-b"])
            .arg(&batch)
            .arg(format!("{}@{}", self.sshd.user(), self.sshd.addr().ip()))
            .output()?;
        if !out.status.success() {
            return Err(format!("sftp: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(())
    }
}

#[tokio::main(worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mib: u64 = args.first().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    let cipher_name = args.get(1).map_or("chacha20-poly1305", String::as_str);
    let rtt: u64 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(0);
    if rtt > 0 && std::env::var_os("SFTP_BENCH_RTT").is_none() {
        let inner = [mib.to_string(), cipher_name.to_owned(), rtt.to_string()];
        return in_namespace(rtt, &inner);
    }
    let cipher = match cipher_name {
        "chacha20-poly1305" => russh::cipher::CHACHA20_POLY1305,
        "aes128-gcm" => russh::cipher::AES_128_GCM,
        "aes256-gcm" => russh::cipher::AES_256_GCM,
        other => return Err(format!("unknown cipher {other}").into()),
    };
    let size = mib << 20;
    let sshd = match Sshd::start() {
        Ok(s) => s,
        Err(e) => {
            println!("skipped: {e}");
            return Ok(());
        }
    };
    let known = sshd.write_file("known_hosts", &sshd.known_hosts_line())?;
    let setup = Setup {
        sshd,
        known,
        cipher,
    };
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let source = d.join("source");
    make_file(&source, size)?;
    println!(
        "{mib} MiB put and got over sftp, sshd's internal-sftp on loopback{}; kex curve25519-sha256, cipher {}",
        if rtt > 0 { format!(" at {rtt} ms RTT (netem)") } else { String::new() },
        cipher.as_ref()
    );

    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut peak_growth = 0;
    for _ in 0..3 {
        for (i, put) in [(0, true), (2, false)] {
            let (from, to) = if put {
                (source.clone(), d.join("remote"))
            } else {
                (source.clone(), d.join("local"))
            };
            let rss_before = status_kib("VmRSS:");
            reset_peak();
            let start = Instant::now();
            let n = setup.ours(put, &from, &to).await?;
            times[i].push(start.elapsed());
            peak_growth = peak_growth.max(status_kib("VmHWM:").saturating_sub(rss_before));
            assert_eq!(n, size, "short transfer through ssh-dial");
            assert_eq!(std::fs::metadata(&to)?.len(), size);
            std::fs::remove_file(&to)?;
            let start = Instant::now();
            setup.theirs(put, &from, &to)?;
            times[i + 1].push(start.elapsed());
            assert_eq!(
                std::fs::metadata(&to)?.len(),
                size,
                "short transfer through sftp"
            );
            std::fs::remove_file(&to)?;
        }
    }

    let mbps = |d: &Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let median = |d: &[Duration]| {
        let mut d = d.to_vec();
        d.sort();
        mbps(&d[d.len() / 2])
    };
    let show = |d: &[Duration]| {
        d.iter()
            .map(|d| format!("{:.0}", mbps(d)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!("{:<28} {:>22} {:>10}", "", "MiB/s, each turn", "median");
    let rows = [
        "ssh-dial Sftp::put",
        "OpenSSH sftp put",
        "ssh-dial Sftp::get",
        "OpenSSH sftp get",
    ];
    for (row, t) in rows.iter().zip(&times) {
        println!("{row:<28} {:>22} {:>10.1}", show(t), median(t));
    }
    println!(
        "ratio of medians ssh-dial / sftp: put {:.2}, get {:.2}",
        median(&times[0]) / median(&times[1]),
        median(&times[2]) / median(&times[3])
    );
    println!(
        "client peak RSS growth during a transfer: {:.1} MiB",
        peak_growth as f64 / 1024.0
    );
    Ok(())
}
