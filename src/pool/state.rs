//! What the pool holds and has done: [`PoolState`] for a caller, and the
//! counters behind it (also sent to the `metrics` facade).

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a pool, from [`Pool::state`](super::Pool::state) (bb8's
/// `State`, deadpool's `Status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Destinations the pool keeps an entry for.
    pub hosts: usize,
    /// Open connections.
    pub connections: usize,
    /// Open connections no checkout holds.
    pub idle_connections: usize,
    /// Session channels open over all connections (closes in flight included).
    pub sessions_in_use: usize,
    /// Dials in progress.
    pub dials_in_progress: usize,
    /// Requests waiting for a connection or a slot.
    pub waiters: usize,
    /// Destinations whose circuit is open.
    pub open_circuits: usize,
    /// Counts since the pool was built.
    pub statistics: PoolStatistics,
}

/// Counts since a pool was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatistics {
    /// Checkouts that found a free slot on an open connection at once.
    pub checkouts_hit: u64,
    /// Checkouts that got a slot after waiting (for a slot or a dial).
    pub checkouts_waited: u64,
    /// Checkouts whose deadline passed while they waited.
    pub checkouts_timed_out: u64,
    /// Checkouts that failed otherwise: the dial they waited on failed,
    /// too many waiting, the pool closed.
    pub checkouts_failed: u64,
    /// Checkouts failed at once by an open circuit.
    pub circuit_rejections: u64,
    /// Dials that connected.
    pub dials: u64,
    /// Dials that failed.
    pub dials_failed: u64,
    /// Session channels the server refused (its `MaxSessions` below the
    /// pool's limit).
    pub sessions_refused: u64,
    /// Commands run again on another slot or a fresh connection, having
    /// failed before they started.
    pub retries: u64,
    /// Connections closed because their session had ended.
    pub connections_closed_broken: u64,
    /// Connections closed idle: past `idle_timeout` or `max_idle_per_host`,
    /// or to make room for another host's.
    pub connections_closed_idle: u64,
    /// Connections closed past `max_lifetime`.
    pub connections_closed_lifetime: u64,
}

/// The counters, shared by a pool's handles.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) waited: AtomicU64,
    pub(super) timed_out: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) circuit: AtomicU64,
    pub(super) dials: AtomicU64,
    pub(super) dials_failed: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) closed_broken: AtomicU64,
    pub(super) closed_idle: AtomicU64,
    pub(super) closed_lifetime: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(super) fn snapshot(&self) -> PoolStatistics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PoolStatistics {
            checkouts_hit: get(&self.hits),
            checkouts_waited: get(&self.waited),
            checkouts_timed_out: get(&self.timed_out),
            checkouts_failed: get(&self.failed),
            circuit_rejections: get(&self.circuit),
            dials: get(&self.dials),
            dials_failed: get(&self.dials_failed),
            sessions_refused: get(&self.refused),
            retries: get(&self.retries),
            connections_closed_broken: get(&self.closed_broken),
            connections_closed_idle: get(&self.closed_idle),
            connections_closed_lifetime: get(&self.closed_lifetime),
        }
    }
}
