//! Hosts per second for the whole job: dial, `exec("true")`, close, for
//! 1,000 hosts, 100 at a time. First against the in-process russh server;
//! then against a real OpenSSH sshd on loopback, beside the OpenSSH client
//! (`ssh -o BatchMode=yes ... true`, also 100 at a time) on the same sshd.
//!
//! ```text
//! cargo bench --bench throughput            # 1,000 hosts
//! cargo bench --bench throughput -- 200     # fewer
//! ```
//!
//! Needs `sshd` and `ssh` (openssh-server, openssh-client).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh_dial::testing::{Sshd, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys};

const CONCURRENT: usize = 100;

#[tokio::main(worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hosts: usize = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1000);
    println!("{hosts} hosts, {CONCURRENT} at a time: dial + exec(\"true\") + close");
    println!("{:<34} {:>10} {:>12}", "", "seconds", "hosts/s");

    let server = TestServer::builder().password("bench", "bench").start()?;
    let dialer = Dialer::builder().host_keys(server.host_keys()).build();
    let took = run_ssh_dial(
        &dialer,
        server.addr(),
        "bench",
        Auth::password("bench"),
        hosts,
    )
    .await?;
    row("ssh-dial, in-process russh server", took, hosts);

    let sshd = Sshd::start()?;
    let known_hosts = sshd.write_file("known_hosts", &sshd.known_hosts_line())?;
    let dialer = Dialer::builder()
        .host_keys(HostKeys::known_hosts(&known_hosts))
        .build();
    let ours = run_ssh_dial(
        &dialer,
        sshd.addr(),
        sshd.user(),
        Auth::key(sshd.user_key().clone()),
        hosts,
    )
    .await?;
    row("ssh-dial, OpenSSH sshd", ours, hosts);

    let theirs = run_openssh_client(&sshd, &known_hosts, hosts).await?;
    row("OpenSSH ssh client, same sshd", theirs, hosts);
    println!(
        "ssh-dial / OpenSSH client throughput: {:.2}x",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    Ok(())
}

fn row(label: &str, took: Duration, hosts: usize) {
    println!(
        "{label:<34} {:>10.2} {:>12.1}",
        took.as_secs_f64(),
        hosts as f64 / took.as_secs_f64()
    );
}

async fn run_ssh_dial(
    dialer: &Dialer,
    addr: std::net::SocketAddr,
    user: &str,
    auth: Auth,
    hosts: usize,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
    let mut set = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..hosts {
        let permit = permits.clone().acquire_owned().await?;
        let (dialer, auth, user) = (dialer.clone(), auth.clone(), user.to_owned());
        set.spawn(async move {
            let client = dialer.dial(addr, user, auth).await?;
            let out = client.exec("true").await?;
            client.close().await;
            drop(permit);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(out.status.success())
        });
    }
    while let Some(r) = set.join_next().await {
        assert!(r?.map_err(|e| e.to_string())?, "`true` failed");
    }
    Ok(start.elapsed())
}

async fn run_openssh_client(
    sshd: &Sshd,
    known_hosts: &std::path::Path,
    hosts: usize,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
    let mut set = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..hosts {
        let permit = permits.clone().acquire_owned().await?;
        let mut command = tokio::process::Command::new("ssh");
        command
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(sshd.user_key_path())
            .args(["-p", &sshd.addr().port().to_string()])
            .arg(format!("{}@127.0.0.1", sshd.user()))
            .arg("true");
        set.spawn(async move {
            let status = command.status().await;
            drop(permit);
            status
        });
    }
    while let Some(r) = set.join_next().await {
        assert!(r??.success(), "ssh failed");
    }
    Ok(start.elapsed())
}
