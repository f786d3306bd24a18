//! ssh-dial's metrics on a Prometheus scrape endpoint, while dialing the
//! embedded well-behaved server and every misbehaving one in a loop, so you
//! can watch dials in flight stay bounded.
//!
//! ```text
//! cargo run --example prometheus                   # serves 127.0.0.1:9184 until Ctrl-C
//! cargo run --example prometheus -- 127.0.0.1:9300 # another address
//! curl -s http://127.0.0.1:9184/metrics | grep ssh_dial
//! ```
//!
//! Needs the `metrics` feature, which the crate's own examples get without
//! asking (see `[dev-dependencies]`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use metrics_exporter_prometheus::PrometheusBuilder;
use ssh_dial::testing::{MisbehavingServer, Mode, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys};

/// Serve ssh-dial's metrics for Prometheus while dialing the embedded good
/// and misbehaving servers in a loop.
#[derive(Parser)]
#[command(name = "prometheus")]
struct Args {
    /// Where to serve /metrics.
    #[arg(default_value = "127.0.0.1:9184")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = Args::parse().listen;
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()?;
    println!("metrics on http://{listen}/metrics (Ctrl-C to stop)");

    let good = TestServer::builder().password("demo", "demo").start()?;
    let sick: Vec<MisbehavingServer> = Mode::ALL
        .iter()
        .map(|&m| MisbehavingServer::start(m))
        .collect::<Result<_, _>>()?;
    let mut addrs = vec![good.addr()];
    addrs.extend(sick.iter().map(|s| s.addr()));
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(1))
        .host_keys(HostKeys::insecure_accept_any())
        .build();

    let dialing = async {
        loop {
            let mut round = tokio::task::JoinSet::new();
            for &addr in &addrs {
                let dialer = dialer.clone();
                round.spawn(async move {
                    if let Ok(client) = dialer.dial(addr, "demo", Auth::password("demo")).await {
                        let _ = client.exec("sleep 0.5").await;
                        client.close().await;
                    }
                });
            }
            while round.join_next().await.is_some() {}
        }
    };
    tokio::select! {
        () = dialing => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
