//! Metrics through the `metrics` facade (cargo feature `metrics`; the names
//! are listed in the crate docs). Without the feature these are no-ops.

use std::time::Duration;

use crate::error::{DialError, Phase};

/// Counts a dial in flight from `start` until dropped, however the dial ends.
pub(crate) struct InFlight(());

#[cfg(feature = "metrics")]
mod imp {
    use super::*;

    impl InFlight {
        pub(crate) fn start() -> Self {
            metrics::gauge!("ssh_dial_dials_in_flight").increment(1.0);
            InFlight(())
        }
    }

    impl Drop for InFlight {
        fn drop(&mut self) {
            metrics::gauge!("ssh_dial_dials_in_flight").decrement(1.0);
        }
    }

    pub(crate) fn dial_finished(
        result: Result<[(Phase, Duration); 5], &DialError>,
        elapsed: Duration,
    ) {
        let (outcome, phase) = match result {
            Ok(_) => ("ok", "none"),
            Err(e) if e.is_timeout() => ("timeout", e.phase().as_str()),
            Err(e) => ("error", e.phase().as_str()),
        };
        metrics::counter!("ssh_dial_dials_total", "outcome" => outcome, "phase" => phase)
            .increment(1);
        metrics::histogram!("ssh_dial_dial_duration_seconds", "outcome" => outcome)
            .record(elapsed.as_secs_f64());
        if let Ok(phases) = result {
            for (phase, d) in phases {
                metrics::histogram!("ssh_dial_phase_duration_seconds", "phase" => phase.as_str())
                    .record(d.as_secs_f64());
            }
        }
    }

    pub(crate) fn session_opened() {
        metrics::gauge!("ssh_dial_sessions_open").increment(1.0);
    }

    pub(crate) fn session_closed() {
        metrics::gauge!("ssh_dial_sessions_open").decrement(1.0);
    }

    /// A pool's gauge moved by `delta`: `connections`, `idle_connections`,
    /// `waiters` or `open_circuits`.
    pub(crate) fn pool_gauge(which: PoolGauge, delta: f64) {
        let g = match which {
            PoolGauge::Connections => metrics::gauge!("ssh_dial_pool_connections"),
            PoolGauge::Idle => metrics::gauge!("ssh_dial_pool_idle_connections"),
            PoolGauge::Waiters => metrics::gauge!("ssh_dial_pool_waiters"),
            PoolGauge::OpenCircuits => metrics::gauge!("ssh_dial_pool_open_circuits"),
        };
        g.increment(delta);
    }

    /// A checkout's outcome: `hit`, `waited`, `timeout`, `circuit_open`,
    /// `busy`, `error` or `closed`.
    pub(crate) fn pool_checkout(outcome: &'static str) {
        metrics::counter!("ssh_dial_pool_checkouts_total", "outcome" => outcome).increment(1);
    }

    pub(crate) fn pool_dial(ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        metrics::counter!("ssh_dial_pool_dials_total", "outcome" => outcome).increment(1);
    }

    /// A connection left a pool, and why.
    pub(crate) fn pool_closed(reason: &'static str) {
        metrics::counter!("ssh_dial_pool_connections_closed_total", "reason" => reason)
            .increment(1);
    }

    pub(crate) fn pool_session_refused() {
        metrics::counter!("ssh_dial_pool_sessions_refused_total").increment(1);
    }

    pub(crate) fn pool_retry() {
        metrics::counter!("ssh_dial_pool_retries_total").increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use super::*;

    impl InFlight {
        pub(crate) fn start() -> Self {
            InFlight(())
        }
    }

    pub(crate) fn dial_finished(_: Result<[(Phase, Duration); 5], &DialError>, _: Duration) {}
    pub(crate) fn session_opened() {}
    pub(crate) fn session_closed() {}
    pub(crate) fn pool_gauge(_: PoolGauge, _: f64) {}
    pub(crate) fn pool_checkout(_: &'static str) {}
    pub(crate) fn pool_dial(_: bool) {}
    pub(crate) fn pool_closed(_: &'static str) {}
    pub(crate) fn pool_session_refused() {}
    pub(crate) fn pool_retry() {}
}

/// A pool's gauges.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PoolGauge {
    Connections,
    Idle,
    Waiters,
    OpenCircuits,
}

pub(crate) use imp::*;
