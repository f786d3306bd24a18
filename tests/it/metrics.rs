//! The `metrics` feature: the series exist, and the in-flight gauge goes up
//! during dials and back to 0, read through `testing::MetricsRecorder`.

use crate::support;

use std::time::Duration;

use ssh_dial::testing::{MetricsRecorder, MisbehavingServer, Mode, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_exist_and_in_flight_returns_to_zero() {
    // The recorder is the process's: alone, so that no other test's dials
    // count in it.
    if support::rerun_alone() {
        return;
    }
    let metrics = MetricsRecorder::install().expect("the only recorder of this process");
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
    let in_flight = || metrics.gauge("ssh_dial_dials_in_flight", &[]);
    assert!(
        support::wait_until(Duration::from_secs(2), || in_flight() == Some(10.0)).await,
        "{}",
        metrics.render()
    );
    assert_eq!(metrics.gauge("ssh_dial_sessions_open", &[]), Some(1.0));
    while let Some(r) = stalled.join_next().await {
        assert!(r.unwrap().unwrap_err().is_timeout());
    }
    drop(client);

    assert_eq!(in_flight(), Some(0.0), "{}", metrics.render());
    assert_eq!(metrics.gauge("ssh_dial_sessions_open", &[]), Some(0.0));
    let dials = |outcome, phase| {
        metrics.counter(
            "ssh_dial_dials_total",
            &[("outcome", outcome), ("phase", phase)],
        )
    };
    assert_eq!(dials("ok", "none"), Some(1));
    assert_eq!(dials("timeout", "version-exchange"), Some(10));
    assert_eq!(
        metrics.histogram_count("ssh_dial_dial_duration_seconds", &[("outcome", "ok")]),
        Some(1)
    );
    assert!(metrics
        .histogram_count(
            "ssh_dial_phase_duration_seconds",
            &[("phase", "key-exchange")]
        )
        .is_some());
    let text = metrics.render();
    assert!(
        text.contains("ssh_dial_dials_total{outcome=\"timeout\",phase=\"version-exchange\"} 10"),
        "{text}"
    );
}
