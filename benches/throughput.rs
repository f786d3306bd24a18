//! Hosts per second for the whole job: dial, `exec("true")`, close, for
//! 1,000 hosts, 100 at a time, against the in-process russh server: what
//! the client side alone can do. Against a real sshd, beside the OpenSSH
//! client with the algorithms pinned, see `benches/side_by_side.rs`.
//!
//! ```text
//! cargo bench --bench throughput            # 1,000 hosts
//! cargo bench --bench throughput -- 200     # fewer
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh_dial::testing::TestServer;
use ssh_dial::{Auth, Dialer};

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
