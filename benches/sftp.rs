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
//! cargo bench --bench sftp -- 1024 chacha20-poly1305 50  # at 50 ms RTT
//! cargo bench --bench sftp -- 256 chacha20-poly1305 50 2  # ours with a 2 MiB SSH window
//! ```
//!
//! Our SSH channel window is the dialer's default (8 MiB) unless a fourth
//! argument gives another in MiB (`DialerBuilder::channel_window`; 2 is
//! russh's own default); OpenSSH's is 2 MiB, topped up every 96 KiB.
//!
//! The round trip is made by a delay line in a process of its own, which
//! both clients connect through: it holds what it reads, each way, for
//! half the RTT before passing it on (this machine's kernel has no netem,
//! and a delay line needs no root). Needs `sshd` and `sftp`
//! (openssh-server, openssh-client).

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

/// CPU time (user + system) of this process, or of its reaped children.
fn cpu(children: bool) -> Duration {
    // SAFETY: getrusage writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    unsafe { libc::getrusage(who, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
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

/// `--delay TARGET_PORT ONE_WAY_MS`: a delay line to `127.0.0.1:TARGET_PORT`
/// on a port it prints, holding what it reads for ONE_WAY_MS each way.
async fn serve_delay(target: u16, one_way: Duration) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    while let Ok((near, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(far) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let _ = (near.set_nodelay(true), far.set_nodelay(true));
            let (near_read, near_write) = near.into_split();
            let (far_read, far_write) = far.into_split();
            tokio::join!(
                delayed(near_read, far_write, one_way),
                delayed(far_read, near_write, one_way)
            );
        });
    }
}

/// Passes what `from` gives to `to`, each piece `delay` after it came.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((due, piece)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&piece).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// The delay line, started as a child; killed when dropped.
struct DelayLine(std::process::Child, u16);

impl DelayLine {
    fn start(target: u16, rtt_ms: u64) -> std::io::Result<DelayLine> {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--delay", &target.to_string(), &(rtt_ms / 2).to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let port = line.trim().parse().map_err(std::io::Error::other)?;
        Ok(DelayLine(child, port))
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    /// Ours: the russh window, if not the default.
    window: Option<u32>,
    sshd: Sshd,
    /// Where the clients connect: sshd, or the delay line to it.
    port: u16,
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
        let mut builder = Dialer::builder().russh_config(config);
        if let Some(window) = self.window {
            builder = builder.channel_window(window);
        }
        let client = builder
            .host_keys(HostKeys::known_hosts(&self.known))
            .build()
            .dial(
                std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
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
            .args(["-P", &self.port.to_string(), "-b"])
            .arg(&batch)
            .arg(format!("{}@127.0.0.1", self.sshd.user()))
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
    if args.first().map(String::as_str) == Some("--delay") {
        let target = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(22);
        let ms = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
        serve_delay(target, Duration::from_millis(ms)).await;
        return Ok(());
    }
    let mib: u64 = args.first().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    let cipher_name = args.get(1).map_or("chacha20-poly1305", String::as_str);
    let rtt: u64 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(0);
    let window: Option<u32> = args
        .get(3)
        .map(|a| a.parse::<u32>())
        .transpose()?
        .map(|m| m << 20);
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
    let delay = if rtt > 0 {
        Some(DelayLine::start(sshd.addr().port(), rtt)?)
    } else {
        None
    };
    let port = delay.as_ref().map_or(sshd.addr().port(), |d| d.1);
    let line = format!("[127.0.0.1]:{port} {}", sshd.host_key());
    let known = sshd.write_file("known_hosts", &line)?;
    let setup = Setup {
        window,
        sshd,
        port,
        known,
        cipher,
    };
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let source = d.join("source");
    make_file(&source, size)?;
    println!(
        "{mib} MiB put and got over sftp, sshd's internal-sftp on loopback{}; kex curve25519-sha256, cipher {}; ssh-dial's SSH window {}",
        if rtt > 0 { format!(" through a {rtt} ms RTT delay line") } else { String::new() },
        cipher.as_ref(),
        window.map_or("8 MiB (the dialer's default)".into(), |w| format!("{} MiB", w >> 20)),
    );

    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut cpus = [Duration::ZERO; 4];
    let mut peak_growth = 0;
    // The content, not only the length: ours' first put and get are
    // checked byte for byte (sha256) against the source.
    let source_sha = sha256(&source)?;
    for turn in 0..3 {
        for (i, put) in [(0, true), (2, false)] {
            let (from, to) = if put {
                (source.clone(), d.join("remote"))
            } else {
                (source.clone(), d.join("local"))
            };
            let rss_before = status_kib("VmRSS:");
            reset_peak();
            let (start, cpu_before) = (Instant::now(), cpu(false));
            let n = setup.ours(put, &from, &to).await?;
            times[i].push(start.elapsed());
            cpus[i] += cpu(false) - cpu_before;
            peak_growth = peak_growth.max(status_kib("VmHWM:").saturating_sub(rss_before));
            assert_eq!(n, size, "short transfer through ssh-dial");
            assert_eq!(std::fs::metadata(&to)?.len(), size);
            if turn == 0 {
                assert_eq!(sha256(&to)?, source_sha, "content through ssh-dial");
            }
            std::fs::remove_file(&to)?;
            let (start, cpu_before) = (Instant::now(), cpu(true));
            setup.theirs(put, &from, &to)?;
            times[i + 1].push(start.elapsed());
            cpus[i + 1] += cpu(true) - cpu_before;
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
    println!(
        "{:<28} {:>22} {:>10} {:>18}",
        "", "MiB/s, each turn", "median", "client CPU s/GiB"
    );
    let per_gib = |c: Duration| c.as_secs_f64() / 3.0 / (size as f64 / (1u64 << 30) as f64);
    let rows = [
        "ssh-dial Sftp::put",
        "OpenSSH sftp put",
        "ssh-dial Sftp::get",
        "OpenSSH sftp get",
    ];
    for ((row, t), c) in rows.iter().zip(&times).zip(cpus) {
        println!(
            "{row:<28} {:>22} {:>10.1} {:>18.2}",
            show(t),
            median(t),
            per_gib(c)
        );
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
    drop(delay);
    Ok(())
}

/// The file's sha256, in hex.
fn sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
