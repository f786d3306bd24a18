//! The `metrics` feature, scraped from a real Prometheus endpoint: the
//! series exist, and the in-flight gauge goes up during dials and back to 0.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use ssh_dial::testing::{MisbehavingServer, Mode, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("exporter listens");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_exist_and_in_flight_returns_to_zero() {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()
        .expect("exporter");
    let good = TestServer::builder().password("u", "p").start().unwrap();
    let silent = MisbehavingServer::start(Mode::Silent).unwrap();
    let dialer = Dialer::builder()
        .timeout(Duration::from_millis(800))
        .host_keys(HostKeys::insecure_accept_any())
        .build();

    let client = dialer
        .dial(good.addr(), "u", Auth::password("p"))
        .await
        .unwrap();
    let mut stalled = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (dialer, addr) = (dialer.clone(), silent.addr());
        stalled.spawn(async move { dialer.dial(addr, "u", Auth::password("p")).await.map(drop) });
    }
    // Wait (bounded) until the scrape shows all ten in flight.
    let mut during = String::new();
    for _ in 0..200 {
        during = scrape(listen).await;
        if gauge(&during, "ssh_dial_dials_in_flight") == Some(10.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        gauge(&during, "ssh_dial_dials_in_flight"),
        Some(10.0),
        "{during}"
    );
    assert_eq!(
        gauge(&during, "ssh_dial_sessions_open"),
        Some(1.0),
        "{during}"
    );
    while let Some(r) = stalled.join_next().await {
        assert!(r.unwrap().unwrap_err().is_timeout());
    }
    drop(client);

    let after = scrape(listen).await;
    assert_eq!(
        gauge(&after, "ssh_dial_dials_in_flight"),
        Some(0.0),
        "{after}"
    );
    assert_eq!(
        gauge(&after, "ssh_dial_sessions_open"),
        Some(0.0),
        "{after}"
    );
    for series in [
        r#"ssh_dial_dials_total{outcome="ok",phase="none"} 1"#,
        r#"ssh_dial_dials_total{outcome="timeout",phase="version-exchange"} 10"#,
        "ssh_dial_dial_duration_seconds",
        r#"ssh_dial_phase_duration_seconds{phase="key-exchange""#,
    ] {
        assert!(after.contains(series), "{series} missing from:\n{after}");
    }
}
