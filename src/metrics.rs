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
}

pub(crate) use imp::*;
