//! Streaming a command's output, measured: `head -c SIZE /dev/zero` read
//! through `RemoteProcess::stdout` from a real sshd on loopback, beside
//! `ssh host 'head -c SIZE /dev/zero' > /dev/null` on the same sshd, both
//! pinned to the same key exchange (curve25519-sha256) and cipher; the
//! client's RSS growth while streaming; and `exec` of twice that with the
//! default 16 MiB cap.
//!
//! ```text
//! cargo bench --bench stream                        # 1 GiB, chacha20-poly1305
//! cargo bench --bench stream -- 256 aes128-gcm      # MiB, cipher
//! ```
//!
//! Needs `sshd` and `ssh` (openssh-server, openssh-client).

use std::borrow::Cow;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ssh_dial::testing::Sshd;
use ssh_dial::{Auth, Dialer, HostKeys};
use tokio::io::AsyncReadExt;

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

#[tokio::main(worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
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
    let known = sshd.write_file("known_hosts", &sshd.known_hosts_line())?;
    let mut russh_config = russh::client::Config::default();
    russh_config.preferred.kex = Cow::Owned(vec![russh::kex::CURVE25519]);
    russh_config.preferred.cipher = Cow::Owned(vec![cipher]);
    let client = Dialer::builder()
        .russh_config(russh_config)
        .host_keys(HostKeys::known_hosts(&known))
        .exec_timeout(Some(Duration::from_secs(600)))
        .build()
        .dial(sshd.addr(), sshd.user(), Auth::key(sshd.user_key().clone()))
        .await?;
    let command = format!("head -c {size} /dev/zero");
    println!(
        "{mib} MiB through stdout from sshd on loopback; kex curve25519-sha256, cipher {}",
        cipher.as_ref()
    );

    // ssh-dial, streaming.
    let rss_before = status_kib("VmRSS:");
    reset_peak();
    let start = Instant::now();
    let mut process = client.command(command.as_str()).spawn().await?;
    let stdout = process.stdout().expect("stdout");
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    process.wait().await?;
    let ours = start.elapsed();
    let peak_growth = status_kib("VmHWM:").saturating_sub(rss_before);
    assert_eq!(total, size, "short read");

    // OpenSSH's client on the same sshd, same algorithms.
    let start = Instant::now();
    let status = Command::new(ssh_dial::testing::find_program("ssh")?)
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args([
            "-o",
            "KexAlgorithms=curve25519-sha256",
            "-c",
            cipher.as_ref(),
        ])
        .arg("-i")
        .arg(sshd.user_key_path())
        .args(["-p", &sshd.addr().port().to_string()])
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg(&command)
        .stdout(Stdio::null())
        .status()?;
    let theirs = start.elapsed();
    assert!(status.success(), "ssh failed");

    let mbps = |d: Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    println!("{:<40} {:>9} {:>10}", "", "seconds", "MiB/s");
    println!(
        "{:<40} {:>9.2} {:>10.1}",
        "ssh-dial RemoteProcess::stdout",
        ours.as_secs_f64(),
        mbps(ours)
    );
    println!(
        "{:<40} {:>9.2} {:>10.1}",
        "OpenSSH ssh > /dev/null",
        theirs.as_secs_f64(),
        mbps(theirs)
    );
    println!("ratio ssh-dial / ssh: {:.2}", mbps(ours) / mbps(theirs));
    println!(
        "client peak RSS growth while streaming: {:.1} MiB",
        peak_growth as f64 / 1024.0
    );

    // exec of twice the size, with the default 16 MiB cap.
    let rss_before = status_kib("VmRSS:");
    reset_peak();
    let out = client
        .exec(&format!("head -c {} /dev/zero", 2 * size))
        .await?;
    let peak_growth = status_kib("VmHWM:").saturating_sub(rss_before);
    println!(
        "exec of {} MiB, default cap: kept {} MiB, truncated {}, peak RSS growth {:.1} MiB",
        2 * mib,
        out.stdout.len() >> 20,
        out.truncated,
        peak_growth as f64 / 1024.0
    );
    client.close().await;
    Ok(())
}
