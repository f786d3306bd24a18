//! Bulk throughput through local forwarding, measured: a server on this
//! machine sends SIZE bytes to whoever connects, reached through
//! `Client::forward_local` and through `ssh -N -L` on the same sshd, both
//! pinned to the same key exchange (curve25519-sha256) and cipher; the
//! client's peak RSS growth while forwarding.
//!
//! ```text
//! cargo bench --bench forward                        # 1 GiB, chacha20-poly1305
//! cargo bench --bench forward -- 256 aes128-gcm      # MiB, cipher
//! ```
//!
//! Needs `sshd` and `ssh` (openssh-server, openssh-client).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ssh_dial::testing::Sshd;
use ssh_dial::{Auth, Dialer, HostKeys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// `--source SIZE`: a server, in a process of its own (so that its work
/// is charged to neither client), that writes SIZE bytes to each
/// connection and closes it; prints its port.
async fn serve_source(size: u64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    while let Ok((mut tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let chunk = vec![0u8; 256 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if tcp.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n as u64;
            }
        });
    }
}

/// The source, started as a child; killed when dropped.
struct Source(std::process::Child, u16);

impl Source {
    fn start(size: u64) -> std::io::Result<Source> {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--source", &size.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let port = line.trim().parse().map_err(std::io::Error::other)?;
        Ok(Source(child, port))
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads everything from `addr`; the bytes read.
async fn drain(addr: SocketAddr) -> u64 {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = tcp.read(&mut buf).await.unwrap();
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

#[tokio::main(worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .peekable();
    if args.peek().map(String::as_str) == Some("--source") {
        let size = args.nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        serve_source(size).await;
        return Ok(());
    }
    let mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    let cipher = match args.next().as_deref() {
        None | Some("chacha20-poly1305") => russh::cipher::CHACHA20_POLY1305,
        Some("aes128-gcm") => russh::cipher::AES_128_GCM,
        Some("aes256-gcm") => russh::cipher::AES_256_GCM,
        Some(other) => return Err(format!("unknown cipher {other}").into()),
    };
    let size = mib << 20;
    let sshd = match Sshd::start() {
        Ok(s) => s,
        Err(e) => {
            println!("skipped: {e}");
            return Ok(());
        }
    };
    let source = Source::start(size)?;
    let source_port = source.1;
    let known = sshd.write_file("known_hosts", &sshd.known_hosts_line())?;
    let mut russh_config = russh::client::Config::default();
    russh_config.preferred.kex = Cow::Owned(vec![russh::kex::CURVE25519]);
    russh_config.preferred.cipher = Cow::Owned(vec![cipher]);
    let client = Dialer::builder()
        .russh_config(russh_config)
        .host_keys(HostKeys::known_hosts(&known))
        .build()
        .dial(sshd.addr(), sshd.user(), Auth::key(sshd.user_key().clone()))
        .await?;
    println!(
        "{mib} MiB through a local forward from sshd on loopback; kex curve25519-sha256, cipher {}",
        cipher.as_ref()
    );

    // ssh-dial's -L and OpenSSH's -L on the same sshd, same algorithms,
    // measured in turns (three each), so that load on the machine falls on
    // both.
    let forward = client
        .forward_local("127.0.0.1:0".parse()?, "127.0.0.1", source_port)
        .await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut ssh = Command::new(ssh_dial::testing::find_program("ssh")?)
        .args(["-F", "/dev/null", "-N", "-o", "BatchMode=yes"])
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ExitOnForwardFailure=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args([
            "-o",
            "KexAlgorithms=curve25519-sha256",
            "-c",
            cipher.as_ref(),
        ])
        .arg("-L")
        .arg(format!("{port}:127.0.0.1:{source_port}"))
        .arg("-i")
        .arg(sshd.user_key_path())
        .args(["-p", &sshd.addr().port().to_string()])
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .stdin(Stdio::null())
        .spawn()?;
    let theirs_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(theirs_addr).is_err() {
        if Instant::now() > until {
            let _ = ssh.kill();
            return Err("ssh -L did not listen within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut ours, mut theirs, mut peak_growth) = (Vec::new(), Vec::new(), 0);
    for _ in 0..3 {
        let rss_before = status_kib("VmRSS:");
        reset_peak();
        let start = Instant::now();
        let total = drain(forward.local_addr()).await;
        ours.push(start.elapsed());
        peak_growth = peak_growth.max(status_kib("VmHWM:").saturating_sub(rss_before));
        assert_eq!(total, size, "short read through ssh-dial");
        let start = Instant::now();
        let total = drain(theirs_addr).await;
        theirs.push(start.elapsed());
        assert_eq!(total, size, "short read through ssh");
    }
    let _ = ssh.kill();
    let _ = ssh.wait();
    forward.close().await;

    let mbps = |d: &Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let median = |mut d: Vec<Duration>| {
        d.sort();
        d[d.len() / 2]
    };
    let show = |d: &[Duration]| {
        d.iter()
            .map(|d| format!("{:.0}", mbps(d)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!("{:<34} {:>22} {:>10}", "", "MiB/s, each turn", "median");
    println!(
        "{:<34} {:>22} {:>10.1}",
        "ssh-dial Client::forward_local",
        show(&ours),
        mbps(&median(ours.clone()))
    );
    println!(
        "{:<34} {:>22} {:>10.1}",
        "OpenSSH ssh -N -L",
        show(&theirs),
        mbps(&median(theirs.clone()))
    );
    println!(
        "ratio of medians ssh-dial / ssh: {:.2}",
        mbps(&median(ours)) / mbps(&median(theirs))
    );
    println!(
        "client peak RSS growth while forwarding: {:.1} MiB",
        peak_growth as f64 / 1024.0
    );
    client.close().await;
    Ok(())
}
