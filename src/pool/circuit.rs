//! The circuit breaker of one host: after a run of failed dials, the host
//! is left alone for a while, and requests fail at once instead of each
//! waiting a dial's deadline; then one probe dial decides.
//!
//! Closed → (N failures in a row) → open until a jittered backoff passes →
//! the next request probes (others still fail fast) → closed if it
//! connects, open again with twice the backoff (capped) if not.

use std::time::Duration;

use tokio::time::Instant;

/// When a host's circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Breaker {
    /// Failed dials in a row that open the circuit; 0 never opens it.
    pub(super) failures: u32,
    pub(super) backoff: Duration,
    pub(super) max_backoff: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failures: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// One host's circuit.
#[derive(Debug, Default)]
pub(super) struct Circuit {
    /// Failed dials in a row.
    failures: u32,
    /// Times it has opened in a row (for the backoff).
    opened: u32,
    open_until: Option<Instant>,
    /// A probe dial is in flight.
    probing: bool,
}

/// What the circuit lets a request do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Dial as usual.
    Dial,
    /// The circuit is open but its backoff has passed: this dial is the probe.
    Probe,
    /// Fail at once; the host may be tried again after this long.
    Open(Duration),
}

impl Circuit {
    /// Whether a dial may start now (a `Probe` marks the probe in flight).
    pub(super) fn verdict(&mut self, now: Instant) -> Verdict {
        let Some(until) = self.open_until else {
            return Verdict::Dial;
        };
        if self.probing {
            // The probe decides; at worst it takes a dial's deadline.
            return Verdict::Open(Duration::ZERO);
        }
        if now < until {
            return Verdict::Open(until - now);
        }
        self.probing = true;
        Verdict::Probe
    }

    /// Would a request fail at once? (Without starting a probe.)
    pub(super) fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    /// How long until the host may be tried, if the circuit is open.
    pub(super) fn retry_after(&self, now: Instant) -> Option<Duration> {
        self.open_until.map(|u| u.saturating_duration_since(now))
    }

    /// Failed dials in a row.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// A dial connected: the circuit closes. Returns whether it had been open.
    pub(super) fn succeeded(&mut self) -> bool {
        let was_open = self.open_until.is_some();
        *self = Circuit::default();
        was_open
    }

    /// A dial failed; returns true if the circuit opened (or opened again).
    pub(super) fn failed(&mut self, breaker: &Breaker, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.probing = false;
        if breaker.failures == 0 || self.failures < breaker.failures {
            return false;
        }
        let full = breaker
            .backoff
            .saturating_mul(1 << self.opened.min(20))
            .min(breaker.max_backoff.max(breaker.backoff));
        self.opened = self.opened.saturating_add(1);
        self.open_until = Some(crate::deadline::deadline_after(
            now,
            crate::deadline::jittered(full),
        ));
        true
    }

    /// A probe that ended with no verdict (cancelled with the pool): the
    /// next request may probe.
    pub(super) fn probe_abandoned(&mut self) {
        self.probing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_n_failures_probes_once_and_backs_off_doubling_to_the_cap() {
        let breaker = Breaker {
            failures: 2,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
        };
        let mut c = Circuit::default();
        let t0 = Instant::now();
        assert!(!c.failed(&breaker, t0));
        assert_eq!(c.verdict(t0), Verdict::Dial);
        assert!(c.failed(&breaker, t0));
        let Verdict::Open(wait) = c.verdict(t0) else {
            panic!("open")
        };
        assert!(wait >= Duration::from_millis(500) && wait <= Duration::from_secs(1));
        // After the backoff: one probe, the others still fail fast.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(c.verdict(later), Verdict::Probe);
        assert!(matches!(c.verdict(later), Verdict::Open(_)));
        // The probe fails: open again, for up to twice as long.
        assert!(c.failed(&breaker, later));
        let Verdict::Open(wait) = c.verdict(later) else {
            panic!("open")
        };
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2));
        // Capped.
        for _ in 0..10 {
            c.failed(&breaker, later);
        }
        let Verdict::Open(wait) = c.verdict(later) else {
            panic!("open")
        };
        assert!(wait <= Duration::from_secs(3), "{wait:?}");
        // A probe that connects closes it.
        assert!(c.succeeded());
        assert_eq!(c.verdict(later), Verdict::Dial);
        assert_eq!(c.failures(), 0);
    }

    #[test]
    fn zero_failures_never_opens() {
        let breaker = Breaker {
            failures: 0,
            ..Breaker::default()
        };
        let mut c = Circuit::default();
        for _ in 0..100 {
            assert!(!c.failed(&breaker, Instant::now()));
        }
        assert_eq!(c.verdict(Instant::now()), Verdict::Dial);
    }
}
