//! A checkout: one session slot on one pooled connection, given back when
//! dropped, and the [`PooledClient`] guard a caller holds.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Weak};

use tokio::time::Instant;

use super::destination::Key;
use super::Inner;
use crate::metrics::PoolGauge;
use crate::Client;

/// One session slot on a pooled connection, until dropped. Holds the pool
/// weakly: a pool dropped meanwhile is not kept alive by it, and the
/// connection then closes when the lease goes.
pub(super) struct Lease {
    pool: Weak<Inner>,
    key: Key,
    conn: u64,
    client: Arc<Client>,
    /// Counted by the pool until the channel is (`sessions_in_use`).
    pending: bool,
    /// A round trip is owed before the channel is asked for (see
    /// `Conn::lease`).
    sync: Option<u64>,
    granted: Instant,
}

impl Lease {
    pub(super) fn new(
        pool: &Arc<Inner>,
        key: Key,
        conn: u64,
        client: Arc<Client>,
        sync: Option<u64>,
    ) -> Self {
        Lease {
            pool: Arc::downgrade(pool),
            key,
            conn,
            client,
            pending: true,
            sync,
            granted: Instant::now(),
        }
    }

    /// When the slot was given.
    pub(super) fn granted(&self) -> Instant {
        self.granted
    }

    /// The round trip owed, if any.
    pub(super) fn take_sync(&mut self) -> Option<u64> {
        self.sync.take()
    }

    pub(super) fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// The pool's number for the connection.
    pub(super) fn conn_id(&self) -> u64 {
        self.conn
    }

    /// The lease's channel is open, and counted by the connection's
    /// `sessions_in_use` from now on (until its close is on its way).
    pub(super) fn counted(&mut self) {
        if !std::mem::take(&mut self.pending) {
            return;
        }
        if let Some(pool) = self.pool.upgrade() {
            pool.with_conn(&self.key, self.conn, |_, conn| {
                conn.pending = conn.pending.saturating_sub(1);
            });
        }
    }

    /// The server refused a session channel on this connection: it allows
    /// no more than the other sessions it has open.
    pub(super) fn refused(&self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        pool.with_conn(&self.key, self.conn, |_, conn| {
            // The server was full: it had at least the sessions it had
            // confirmed (maybe more, with closes on their way).
            let lowered = conn.client.sessions_confirmed().clamp(1, conn.limit);
            if lowered < conn.limit {
                tracing::debug!(
                    from = conn.limit,
                    to = lowered,
                    "server refused a session: lowering the connection's limit"
                );
                conn.limit = lowered;
            }
        });
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let pending = self.pending;
        let mut idle = false;
        pool.with_conn(&self.key, self.conn, |host, conn| {
            conn.leases = conn.leases.saturating_sub(1);
            if pending {
                conn.pending = conn.pending.saturating_sub(1);
            }
            if conn.leases == 0 {
                conn.idle_since = Some(Instant::now());
                crate::metrics::pool_gauge(PoolGauge::Idle, 1.0);
                idle = true;
            }
            host.changed.notify_waiters();
        });
        pool.tidy_host(&self.key);
        if idle {
            // Another host's request waiting for room under
            // `max_connections` may close this one now.
            pool.room.notify_waiters();
        }
    }
}

/// A connection checked out of a [`Pool`](super::Pool) with one session
/// slot held for the caller, from [`Pool::get`](super::Pool::get): use it
/// as a [`Client`] (it derefs to one). Dropping it gives the slot back; the
/// connection stays in the pool.
///
/// The slot counts against the connection's
/// [`max_sessions_per_connection`](super::PoolBuilder::max_sessions_per_connection)
/// until the guard is dropped, and so does every session channel opened
/// through it while open: run one command at a time on it, or check out
/// one guard per command. Do not [`close`](Client::close) it (it is
/// shared); a connection that fails is replaced by the pool.
pub struct PooledClient {
    lease: Lease,
}

impl PooledClient {
    pub(super) fn new(lease: Lease) -> Self {
        PooledClient { lease }
    }

    /// The session channel opened through it is counted by the connection
    /// from now on: the checkout's own slot is given back.
    pub(crate) fn counted(&mut self) {
        self.lease.counted();
    }

    /// The connection, shared: a clone outlives the guard but not the
    /// connection's place in the pool's count.
    pub fn client(&self) -> &Arc<Client> {
        self.lease.client()
    }
}

impl Deref for PooledClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.lease.client()
    }
}

impl fmt::Debug for PooledClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledClient")
            .field("client", self.lease.client())
            .field("connection", &self.lease.conn)
            .finish()
    }
}
