//! One destination's connections, dial in flight, waiters and circuit, and
//! what makes a connection fit to hand out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::builder::Config;
use super::circuit::Circuit;
use super::destination::Destination;
use super::error::DialFailure;
use crate::Client;

/// A pooled connection.
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) client: Arc<Client>,
    pub(super) created: Instant,
    /// Since when no lease has held it (`None` while one does).
    pub(super) idle_since: Option<Instant>,
    /// Checkouts holding a session slot on it.
    pub(super) leases: usize,
    /// Leases whose session channel `sessions_in_use` does not count yet.
    pub(super) pending: usize,
    /// Session channels it may have open: the pool's setting, lowered when
    /// the server refused one below it.
    pub(super) limit: usize,
    /// Session releases the server has surely read (a round trip after
    /// them has come back).
    pub(super) synced: u64,
}

impl Conn {
    pub(super) fn new(id: u64, client: Client, limit: usize, now: Instant) -> Conn {
        Conn {
            id,
            client: Arc::new(client),
            created: now,
            idle_since: Some(now),
            leases: 0,
            pending: 0,
            limit,
            synced: 0,
        }
    }

    /// Takes a slot. Returns the release count a round trip must overtake
    /// before the channel is asked for, if the server may not have read
    /// enough of the closes before it to have a session free: sshd frees a
    /// session only in the loop turn after the one that read its close, so
    /// an open that arrives with the close is refused at `MaxSessions`.
    pub(super) fn lease(&mut self) -> Option<u64> {
        self.leases += 1;
        self.pending += 1;
        self.idle_since = None;
        let released = self.client.sessions_released();
        let unread = usize::try_from(released.saturating_sub(self.synced)).unwrap_or(usize::MAX);
        (self.occupancy().saturating_add(unread) > self.limit).then_some(released)
    }

    /// Session slots taken: the channels the server counts (closes on
    /// their way included) and the leases whose channel is not open yet.
    pub(super) fn occupancy(&self) -> usize {
        self.client.sessions_in_use() + self.pending
    }

    fn expired(&self, config: &Config, now: Instant) -> bool {
        config
            .max_lifetime
            .is_some_and(|life| now.saturating_duration_since(self.created) >= life)
    }

    /// Fit to hand out: alive and young enough.
    pub(super) fn usable(&self, config: &Config, now: Instant) -> bool {
        !self.client.is_closed() && !self.expired(config, now)
    }

    /// Usable with a free session slot.
    fn has_slot(&self, config: &Config, now: Instant) -> bool {
        self.usable(config, now) && self.occupancy() < self.limit
    }

    /// No lease, no session channel, and nobody else holds it (a
    /// connection through it as its jump host, a caller's clone).
    pub(super) fn is_idle(&self) -> bool {
        self.leases == 0
            && self.client.sessions_in_use() == 0
            && Arc::strong_count(&self.client) == 1
    }
}

/// Why a connection left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removed {
    /// Its session ended (closed by the server, a keepalive gave up).
    Broken,
    Idle,
    Lifetime,
    /// More idle connections than `max_idle_per_host`.
    Excess,
    /// Closed to make room for another host's under `max_connections`.
    Evicted,
    /// The pool was closed.
    Closed,
}

impl Removed {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Removed::Broken => "broken",
            Removed::Idle => "idle",
            Removed::Lifetime => "lifetime",
            Removed::Excess => "excess",
            Removed::Evicted => "evicted",
            Removed::Closed => "closed",
        }
    }
}

/// A dial in flight for a host.
pub(super) struct Dialing {
    pub(super) generation: u64,
    pub(super) abort: AbortHandle,
    /// The circuit's probe.
    pub(super) probe: bool,
}

/// One destination.
pub(super) struct Host {
    pub(super) dest: Destination,
    pub(super) conns: Vec<Conn>,
    pub(super) dialing: Option<Dialing>,
    pub(super) waiters: usize,
    /// Notified when a lease ends, a dial ends, a connection goes.
    pub(super) changed: Arc<Notify>,
    pub(super) circuit: Circuit,
    /// How long the last successful dial took: a request waits that long
    /// for a slot before it asks for another connection.
    pub(super) dial_estimate: Duration,
    /// When a request last got a slot here.
    pub(super) last_grant: Instant,
    /// Counts the host's dials; a request remembers the one it waits on.
    pub(super) generation: u64,
    /// The last failed dial, for the requests that waited on it.
    pub(super) failed: Option<(u64, DialFailure)>,
    pub(super) failed_at: Option<Instant>,
}

impl Host {
    pub(super) fn new(dest: Destination, now: Instant) -> Host {
        Host {
            dest,
            conns: Vec::new(),
            dialing: None,
            waiters: 0,
            changed: Arc::new(Notify::new()),
            circuit: Circuit::default(),
            dial_estimate: Duration::ZERO,
            last_grant: now,
            generation: 0,
            failed: None,
            failed_at: None,
        }
    }

    /// The connection to lease: the fullest one with a free slot (oldest
    /// first among equals), so that the others idle out.
    pub(super) fn free_conn(&mut self, config: &Config, now: Instant) -> Option<&mut Conn> {
        let mut best: Option<(usize, usize)> = None;
        for (i, c) in self.conns.iter().enumerate() {
            if !c.has_slot(config, now) {
                continue;
            }
            let used = c.occupancy();
            if best.is_none_or(|(_, b)| used > b) {
                best = Some((i, used));
            }
        }
        best.map(|(i, _)| &mut self.conns[i])
    }

    /// Connections fit to hand out, full or not.
    pub(super) fn usable(&self, config: &Config, now: Instant) -> usize {
        self.conns.iter().filter(|c| c.usable(config, now)).count()
    }

    /// Takes out the connections that must go: broken ones, expired ones
    /// no lease holds, those idle past `idle_timeout`, and the oldest idle
    /// ones past `max_idle_per_host`.
    pub(super) fn tidy(&mut self, config: &Config, now: Instant) -> Vec<(Conn, Removed)> {
        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.conns.len() {
            let c = &self.conns[i];
            let why = if c.client.is_closed() && c.leases == 0 {
                Some(Removed::Broken)
            } else if c.leases > 0 {
                None
            } else if c.expired(config, now) {
                Some(Removed::Lifetime)
            } else if c.is_idle()
                && config.idle_timeout.is_some_and(|t| {
                    c.idle_since
                        .is_some_and(|since| now.saturating_duration_since(since) >= t)
                })
            {
                Some(Removed::Idle)
            } else {
                None
            };
            match why {
                Some(why) => gone.push((self.conns.remove(i), why)),
                None => i += 1,
            }
        }
        let idle = self.conns.iter().filter(|c| c.is_idle()).count();
        let mut excess = idle.saturating_sub(config.max_idle_per_host);
        while excess > 0 {
            // Conns are kept oldest first.
            let Some(i) = self.conns.iter().position(Conn::is_idle) else {
                break;
            };
            gone.push((self.conns.remove(i), Removed::Excess));
            excess -= 1;
        }
        gone
    }

    /// Nothing left to keep the entry for.
    pub(super) fn is_unused(&self, config: &Config, now: Instant) -> bool {
        let failure_forgotten = self.failed_at.is_none_or(|at| {
            now.saturating_duration_since(at) >= config.breaker.max_backoff.saturating_mul(2)
        });
        self.conns.is_empty()
            && self.dialing.is_none()
            && self.waiters == 0
            && !self.circuit.is_open()
            && failure_forgotten
    }
}
