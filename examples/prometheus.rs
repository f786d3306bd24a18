//! ssh-dial's metrics as Prometheus text on `/metrics`, while dialing the
//! embedded well-behaved server and every misbehaving one in a loop, so you
//! can watch dials in flight stay bounded.
//!
//! ```text
//! cargo run --example prometheus                   # serves 127.0.0.1:9184 until Ctrl-C
//! cargo run --example prometheus -- 127.0.0.1:9300 # another address
//! curl -s http://127.0.0.1:9184/metrics | grep ssh_dial
//! ```
//!
//! The series come through the `metrics` facade, so any exporter works; in
//! a service, install `metrics-exporter-prometheus` (or another) instead
//! of the small in-memory recorder this example renders from
//! (`testing::MetricsRecorder`, which keeps the crate's own build light).
//! Needs the `metrics` and `testing` features, which the crate's own
//! examples get without asking (see `[dev-dependencies]`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use ssh_dial::testing::{MetricsRecorder, MisbehavingServer, Mode, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serve ssh-dial's metrics as Prometheus text while dialing the embedded
/// good and misbehaving servers in a loop.
#[derive(Parser)]
#[command(name = "prometheus")]
struct Args {
    /// Where to serve /metrics.
    #[arg(default_value = "127.0.0.1:9184")]
    listen: SocketAddr,
}

/// Answers every request with the metrics (one small request at a time).
async fn serve(listener: tokio::net::TcpListener, metrics: MetricsRecorder) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut request));
            if !matches!(read.await, Ok(Ok(n)) if n > 0) {
                return;
            }
            let body = metrics.render();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = Args::parse().listen;
    let metrics = MetricsRecorder::install()?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
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
        () = serve(listener, metrics) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
