//! Connections reused: a pool per destination that knows `MaxSessions`,
//! sick hosts and dead links.
//!
//! Why: a service that runs commands on the same hosts again and again
//! pays a full handshake for each dial (on loopback ~37 ms and ~20 ms of
//! sshd's CPU; on a bastion, a `MaxStartups` slot), and hand-rolled reuse
//! meets sshd's `MaxSessions` ("session open refused"), connections that
//! died half-open and hang the next caller, and sick hosts that every
//! caller waits on for a full deadline. This pool is hyper-util's legacy
//! client pool made for SSH: one connection serves many commands (like an
//! HTTP/2 connection many streams), and it keeps the dial's promises.
//!
//! - [`Pool`] (this file) takes requests: it finds a session slot on a
//!   connection fit to hand out, or starts the host's one dial and waits.
//! - `host.rs`: a destination's connections, its dial in flight, its
//!   waiters; which connection is fit to hand out, and which must go.
//! - `circuit.rs`: the circuit breaker of a host that keeps failing.
//! - `lease.rs`: a checkout (a slot held until dropped), and the
//!   [`PooledClient`] guard.
//! - `command.rs`: [`PoolCommand`], a command run on a checkout, once
//!   more on another slot or connection if it failed before it started.
//! - `destination.rs`, `builder.rs`, `error.rs`, `state.rs`: what to dial
//!   and the key, the settings, the error, the counters.
//!
//! Locking: one `std::sync::Mutex` over the pool's hosts, never held
//! across an await; waiting is on `Notify`s enabled before the state is
//! read, so that no release is missed between the two.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use ssh_dial::pool::{Destination, Pool};
//! use ssh_dial::{Auth, Dialer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder(Dialer::new(), Auth::agent())
//!     .max_sessions_per_connection(10)
//!     .idle_timeout(Duration::from_secs(60))
//!     .build();
//! let web = Destination::parse("deploy@web-1.example.net", "root")?;
//! for _ in 0..3 {
//!     // One handshake; the next two reuse the connection.
//!     let out = pool.exec(&web, "uptime").await?;
//!     print!("{}", String::from_utf8_lossy(&out.stdout));
//! }
//! # Ok(()) }
//! ```

mod builder;
mod circuit;
mod command;
mod destination;
mod error;
mod host;
mod lease;
mod state;

pub use builder::PoolBuilder;
pub use command::PoolCommand;
pub(crate) use destination::Credentials;
pub use destination::Destination;
pub use error::PoolError;
pub use lease::PooledClient;
pub use state::{PoolState, PoolStatistics};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::Auth;
use crate::deadline::deadline_after;
use crate::dialer::Dialer;
use crate::metrics::PoolGauge;
use crate::process::Output;
use crate::Client;
use builder::Config;
use circuit::Verdict;
use destination::Key;
use error::{DialFailure, Kind, Waited};
use host::{Conn, Dialing, Host, Removed};
use lease::Lease;
use state::{bump, Counters};

/// A pool of SSH connections, per destination, shared by many commands.
/// Cheap to clone: clones share the pool.
///
/// - **Sessions counted, never refused**: each connection carries at most
///   [`max_sessions_per_connection`](PoolBuilder::max_sessions_per_connection)
///   session channels, closes in flight included (what sshd's
///   `MaxSessions` counts); past it a request waits for a slot or gets
///   another connection, up to
///   [`max_connections_per_host`](PoolBuilder::max_connections_per_host).
///   A server that refuses a session anyway lowers that connection's limit,
///   and the command is tried once more on another slot.
/// - **One dial at a time per host**: requests for a host with no
///   connection wait on one dial, and all get its error if it fails.
/// - **Never a dead connection**: a connection whose session ended (closed,
///   keepalive failed), older than [`max_lifetime`](PoolBuilder::max_lifetime)
///   or idle past [`idle_timeout`](PoolBuilder::idle_timeout) is never
///   handed out. A command whose connection turns out dead before it
///   started runs once more on a fresh one, within its deadline.
/// - **Sick hosts fail fast**: after a run of failed dials the host's
///   circuit opens ([`PoolBuilder::circuit_breaker`]) and its requests fail
///   at once with [`PoolError::is_circuit_open`]; one probe closes it.
/// - **Bounded**: connections in all and per host, idle ones, waiters per
///   host. Dropping the last handle closes every connection no checkout
///   holds and cancels dials in progress; a [`PooledClient`] still held
///   keeps its connection until dropped. (One exception: a target's dial
///   waiting for the [jump host](PoolBuilder::jump_host)'s connection
///   holds the pool until that wait ends, at most the dialer's timeout.)
///
/// Connections come from the pool's [`Dialer`] (its deadline, host keys,
/// keepalive, ssh_config, jump hosts) with the pool's [`Auth`] or a
/// destination's own ([`Destination::with_auth`]).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    dialer: Dialer,
    auth: Auth,
    config: Config,
    shared: Mutex<Shared>,
    /// Notified when a connection leaves the pool (room under `max_connections`).
    room: Notify,
    counters: Counters,
}

struct Shared {
    hosts: HashMap<Key, Host>,
    /// Connections open and dials in flight, over all hosts.
    total: usize,
    next_conn: u64,
    closed: bool,
    reaper: Option<AbortHandle>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("dialer", &self.inner.dialer)
            .field("config", &self.inner.config)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// What one look at a host's state says to do.
enum Step {
    Got(Lease, bool),
    Fail(Kind),
    /// The connections changed since the waiter's snapshot: look again.
    Again,
    Wait {
        waited: Waited,
        /// When to ask for another connection, if slots stay taken.
        grow_at: Option<Instant>,
    },
}

/// A request's progress through its waits; takes it off its host's
/// waiters however the checkout ends.
struct Waiting<'a> {
    pool: &'a Inner,
    key: &'a Key,
    start: Instant,
    /// The dial it waits on, if any.
    generation: Option<u64>,
    /// Counted in the host's waiters.
    counted: bool,
    waited: bool,
}

impl Pool {
    /// Starts a [`PoolBuilder`]: connections dialed with `dialer`,
    /// authenticated with `auth` (unless a destination has its own).
    pub fn builder(dialer: Dialer, auth: Auth) -> PoolBuilder {
        PoolBuilder::new(dialer, auth)
    }

    /// A pool with every default (see [`PoolBuilder`]).
    pub fn new(dialer: Dialer, auth: Auth) -> Pool {
        Pool::builder(dialer, auth).build()
    }

    fn from_parts(dialer: Dialer, auth: Auth, config: Config) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                dialer,
                auth,
                config,
                shared: Mutex::new(Shared {
                    hosts: HashMap::new(),
                    total: 0,
                    next_conn: 0,
                    closed: false,
                    reaper: None,
                }),
                room: Notify::new(),
                counters: Counters::default(),
            }),
        }
    }

    /// The dialer the pool's connections come from.
    pub fn dialer(&self) -> &Dialer {
        &self.inner.dialer
    }

    /// A command line to run on `dest` through the pool: add quoted
    /// [`arg`](PoolCommand::arg)s, then collect its
    /// [`output`](PoolCommand::output) or [`status`](PoolCommand::status).
    pub fn command(&self, dest: &Destination, command: impl Into<String>) -> PoolCommand {
        PoolCommand::new(self.clone(), dest.clone(), command.into())
    }

    /// Runs the command line `command` on `dest` and collects its output:
    /// `pool.command(dest, command).output()`. A checkout (a dial if need
    /// be) under [`checkout_timeout`](PoolBuilder::checkout_timeout), then
    /// the command under the dialer's
    /// [`exec_timeout`](crate::DialerBuilder::exec_timeout); a non-zero
    /// exit is not an error.
    ///
    /// # Errors
    ///
    /// As [`PoolCommand::output`].
    ///
    /// # Cancellation
    ///
    /// As [`PoolCommand::output`]: dropping the future leaves nothing
    /// behind, and the connection stays in the pool.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(pool: &ssh_dial::pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// use ssh_dial::pool::Destination;
    /// let db = Destination::parse("db-1:22", "postgres")?;
    /// let out = pool.exec(&db, "pg_isready").await?;
    /// println!("{}", out.status);
    /// # Ok(()) }
    /// ```
    pub async fn exec(&self, dest: &Destination, command: &str) -> Result<Output, PoolError> {
        self.command(dest, command).output().await
    }

    /// Checks out a connection to `dest` with one session slot held for
    /// the caller: a free slot on an open connection, or a new one. Bounded
    /// by [`checkout_timeout`](PoolBuilder::checkout_timeout).
    ///
    /// # Errors
    ///
    /// [`PoolError::is_timeout`] if no slot came in time (or the dial
    /// timed out); [`PoolError::dial_error`] if the dial it waited on
    /// failed (every request waiting on that dial gets the same error);
    /// [`PoolError::is_circuit_open`] at once for a host whose last dials
    /// failed; [`PoolError::is_busy`] at once if too many wait for the
    /// host; [`PoolError::is_pool_closed`].
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with its time driver enabled.
    ///
    /// # Cancellation
    ///
    /// Cancel safe: dropping the future gives back anything it held. A
    /// dial it started goes on (bounded by the dialer's deadline) and its
    /// connection joins the pool for the next request.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(pool: &ssh_dial::pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// use ssh_dial::pool::Destination;
    /// let web = Destination::parse("web-1", "deploy")?;
    /// let client = pool.get(&web).await?;
    /// let mut tail = client.command("tail -n 100 /var/log/app.log").spawn().await?;
    /// // ...
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, dest: &Destination) -> Result<PooledClient, PoolError> {
        let deadline = deadline_after(Instant::now(), self.inner.config.checkout_timeout);
        self.get_by(dest, deadline).await
    }

    /// [`get`](Pool::get) by `deadline` or the checkout timeout, whichever
    /// comes first.
    pub(crate) async fn get_by(
        &self,
        dest: &Destination,
        deadline: Instant,
    ) -> Result<PooledClient, PoolError> {
        let deadline = deadline.min(deadline_after(
            Instant::now(),
            self.inner.config.checkout_timeout,
        ));
        self.inner
            .checkout(dest, deadline)
            .await
            .map(PooledClient::new)
    }

    /// What the pool holds now, and its counts so far.
    pub fn state(&self) -> PoolState {
        let shared = self.inner.lock();
        let now = Instant::now();
        let mut state = PoolState {
            hosts: shared.hosts.len(),
            statistics: self.inner.counters.snapshot(),
            ..PoolState::default()
        };
        for host in shared.hosts.values() {
            state.connections += host.conns.len();
            state.idle_connections += host.conns.iter().filter(|c| c.leases == 0).count();
            state.sessions_in_use += host
                .conns
                .iter()
                .map(|c| c.client.sessions_in_use())
                .sum::<usize>();
            state.dials_in_progress += usize::from(host.dialing.is_some());
            state.waiters += host.waiters;
            state.open_circuits += usize::from(host.circuit.retry_after(now).is_some());
        }
        state
    }

    /// Closes the pool: requests fail with [`PoolError::is_pool_closed`],
    /// dials in progress are cancelled, idle connections say goodbye
    /// ([`Client::close`], each within the dialer's close timeout) and are
    /// gone when this returns; connections held by a checkout close when
    /// it is dropped.
    ///
    /// # Cancellation
    ///
    /// Dropping the future closes the connections still saying goodbye at
    /// once, without it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(pool: ssh_dial::pool::Pool) {
    /// // At shutdown: goodbyes, then nothing left.
    /// pool.close().await;
    /// # }
    /// ```
    pub async fn close(&self) {
        let mut idle = Vec::new();
        {
            let mut shared = self.inner.lock();
            shared.closed = true;
            if let Some(reaper) = shared.reaper.take() {
                reaper.abort();
            }
            let mut gone = 0;
            for host in shared.hosts.values_mut() {
                if let Some(dialing) = host.dialing.take() {
                    dialing.abort.abort();
                    gone += 1;
                }
                let mut i = 0;
                while i < host.conns.len() {
                    if host.conns[i].leases == 0 {
                        let conn = host.conns.remove(i);
                        self.inner.removed(&conn, Removed::Closed);
                        idle.push(conn.client);
                        gone += 1;
                    } else {
                        i += 1;
                    }
                }
                host.changed.notify_waiters();
            }
            shared.total -= gone;
        }
        self.inner.room.notify_waiters();
        let mut closing = tokio::task::JoinSet::new();
        for client in idle {
            if let Ok(client) = Arc::try_unwrap(client) {
                closing.spawn(client.close());
            }
        }
        while closing.join_next().await.is_some() {}
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the connection `id` of `key`'s host, if still there.
    fn with_conn(&self, key: &Key, id: u64, f: impl FnOnce(&mut Host, &mut Conn)) {
        let mut shared = self.lock();
        let Some(host) = shared.hosts.get_mut(key) else {
            return;
        };
        let Some(i) = host.conns.iter().position(|c| c.id == id) else {
            return;
        };
        let mut conn = host.conns.remove(i);
        f(host, &mut conn);
        host.conns.insert(i, conn);
    }

    /// Counts a connection gone (it held no lease).
    fn removed(&self, conn: &Conn, why: Removed) {
        crate::metrics::pool_gauge(PoolGauge::Connections, -1.0);
        crate::metrics::pool_gauge(PoolGauge::Idle, -1.0);
        crate::metrics::pool_closed(why.as_str());
        let c = &self.counters;
        match why {
            Removed::Broken => bump(&c.closed_broken),
            Removed::Idle | Removed::Excess | Removed::Evicted => bump(&c.closed_idle),
            Removed::Lifetime => bump(&c.closed_lifetime),
            Removed::Closed => {}
        }
        tracing::debug!(
            connection = conn.id,
            target = %conn.client.target(),
            reason = why.as_str(),
            "pooled connection closed"
        );
    }

    /// Takes out what must go from one host (after a lease ended).
    fn tidy_host(&self, key: &Key) {
        let gone = {
            let mut shared = self.lock();
            let closed = shared.closed;
            let Some(host) = shared.hosts.get_mut(key) else {
                return;
            };
            let mut gone = host.tidy(&self.config, Instant::now());
            if closed {
                let mut i = 0;
                while i < host.conns.len() {
                    if host.conns[i].leases == 0 {
                        gone.push((host.conns.remove(i), Removed::Closed));
                    } else {
                        i += 1;
                    }
                }
            }
            for (conn, why) in &gone {
                self.removed(conn, *why);
            }
            shared.total -= gone.len();
            gone
        };
        if !gone.is_empty() {
            self.room.notify_waiters();
        }
        // Dropped here, out of the lock: each ends its session at once.
        drop(gone);
    }

    /// A checkout: a slot on a connection to `dest`, waiting at most
    /// until `deadline`.
    async fn checkout(
        self: &Arc<Self>,
        dest: &Destination,
        deadline: Instant,
    ) -> Result<Lease, PoolError> {
        let span = tracing::debug_span!("ssh_dial::pool::checkout", dest = %dest);
        self.checkout_in(dest, deadline).instrument(span).await
    }

    async fn checkout_in(
        self: &Arc<Self>,
        dest: &Destination,
        deadline: Instant,
    ) -> Result<Lease, PoolError> {
        let key = dest.key();
        let mut waiting = Waiting {
            pool: self,
            key: &key,
            start: Instant::now(),
            generation: None,
            counted: false,
            waited: false,
        };
        let fail = |kind: Kind, start: Instant| {
            let outcome = match &kind {
                Kind::Timeout(_) => "timeout",
                Kind::CircuitOpen { .. } => "circuit_open",
                Kind::Busy(_) => "busy",
                Kind::Closed => "closed",
                _ => "error",
            };
            crate::metrics::pool_checkout(outcome);
            let c = &self.counters;
            match &kind {
                Kind::Timeout(_) => bump(&c.timed_out),
                Kind::CircuitOpen { .. } => bump(&c.circuit),
                _ => bump(&c.failed),
            }
            let e = PoolError::new(dest.to_string(), kind, start.elapsed());
            tracing::debug!(error = %e, "checkout failed");
            e
        };
        loop {
            // What to wait on, enabled before the state is read.
            let (changed, clients) = self.watch(&key, dest);
            let changed_now = changed.notified();
            let room_now = self.room.notified();
            tokio::pin!(changed_now, room_now);
            changed_now.as_mut().enable();
            room_now.as_mut().enable();
            let mut freed: Vec<_> = clients
                .iter()
                .map(|(_, c)| Box::pin(c.session_freed()))
                .collect();
            for f in &mut freed {
                f.as_mut().enable();
            }
            let ids: Vec<u64> = clients.iter().map(|(id, _)| *id).collect();
            let step = self.step(&key, dest, &ids, &mut waiting);
            let (waited, grow_at) = match step {
                Step::Got(mut lease, waited) => {
                    if let Some(released) = lease.take_sync() {
                        // Closes just queued: let the server read them first.
                        let client = lease.client().clone();
                        match tokio::time::timeout_at(deadline, client.round_trip()).await {
                            Ok(true) => self.with_conn(&key, lease.conn_id(), |_, conn| {
                                conn.synced = conn.synced.max(released);
                            }),
                            // The session is gone: the caller's use of it
                            // fails as closed, as it would had the session
                            // ended a moment after the checkout (a frozen
                            // host is not dialed again by every waiter).
                            Ok(false) => {}
                            Err(_) => return Err(fail(Kind::Timeout(Waited::Slot), waiting.start)),
                        }
                    }
                    let outcome = if waited { "waited" } else { "hit" };
                    crate::metrics::pool_checkout(outcome);
                    bump(if waited {
                        &self.counters.waited
                    } else {
                        &self.counters.hits
                    });
                    tracing::debug!(
                        outcome,
                        connection = lease.conn_id(),
                        waited_ms = waiting.start.elapsed().as_millis() as u64,
                        "checked out"
                    );
                    return Ok(lease);
                }
                Step::Fail(kind) => return Err(fail(kind, waiting.start)),
                Step::Again => continue,
                Step::Wait { waited, grow_at } => (waited, grow_at),
            };
            waiting.waited = true;
            let far = deadline.max(Instant::now()) + Duration::from_secs(365 * 24 * 3600);
            tokio::select! {
                () = &mut changed_now => {}
                () = &mut room_now => {}
                () = any(&mut freed) => {}
                () = tokio::time::sleep_until(grow_at.unwrap_or(far)) => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(fail(Kind::Timeout(waited), waiting.start));
                }
            }
        }
    }

    /// A connection to `dest` to go through (as a jump host): checked out
    /// and given back at once; the caller's clone keeps it from idling out.
    async fn connection(
        self: &Arc<Self>,
        dest: &Destination,
        deadline: Instant,
    ) -> Result<Arc<Client>, PoolError> {
        let lease = Box::pin(self.checkout(dest, deadline)).await?;
        Ok(lease.client().clone())
    }

    /// The host's wake-up and its connections, for a waiter (the host
    /// entry is made here if new).
    fn watch(&self, key: &Key, dest: &Destination) -> (Arc<Notify>, Vec<(u64, Arc<Client>)>) {
        let mut shared = self.lock();
        let host = shared
            .hosts
            .entry(key.clone())
            .or_insert_with(|| Host::new(dest.clone(), Instant::now()));
        let clients = host
            .conns
            .iter()
            .map(|c| (c.id, c.client.clone()))
            .collect();
        (host.changed.clone(), clients)
    }

    /// One look at the host under the lock: a slot, a failure, or a wait
    /// (starting a dial first if one is called for).
    fn step(
        self: &Arc<Self>,
        key: &Key,
        dest: &Destination,
        seen: &[u64],
        waiting: &mut Waiting<'_>,
    ) -> Step {
        let now = Instant::now();
        let config = &self.config;
        let mut guard = self.lock();
        let shared = &mut *guard;
        if shared.closed {
            return Step::Fail(Kind::Closed);
        }
        let host = shared
            .hosts
            .entry(key.clone())
            .or_insert_with(|| Host::new(dest.clone(), now));
        let gone = host.tidy(config, now);
        for (conn, why) in &gone {
            self.removed(conn, *why);
        }
        shared.total -= gone.len();
        if !gone.is_empty() {
            self.room.notify_waiters();
        }
        let host = shared.hosts.get_mut(key).expect("made above");
        if let Some(conn) = host.free_conn(config, now) {
            if conn.leases == 0 {
                crate::metrics::pool_gauge(PoolGauge::Idle, -1.0);
            }
            let sync = conn.lease();
            let lease = Lease::new(self, key.clone(), conn.id, conn.client.clone(), sync);
            host.last_grant = now;
            return Step::Got(lease, waiting.waited);
        }
        if host.conns.iter().map(|c| c.id).ne(seen.iter().copied()) {
            return Step::Again;
        }
        let usable = host.usable(config, now);
        if usable == 0 {
            if let (Some(mine), Some((failed, e))) = (waiting.generation, &host.failed) {
                if mine == *failed {
                    return Step::Fail(e.kind());
                }
            }
        }
        let mut waited = if usable == 0 {
            Waited::Dial
        } else {
            Waited::Slot
        };
        let mut grow_at = None;
        match &host.dialing {
            Some(d) if d.probe && usable == 0 && waiting.generation != Some(d.generation) => {
                // Someone else's probe decides; fail fast meanwhile.
                return Step::Fail(Kind::CircuitOpen {
                    failures: host.circuit.failures(),
                    retry_after: Duration::ZERO,
                    last: host.failed.as_ref().and_then(|(_, e)| e.dial_error()),
                });
            }
            Some(d) => waiting.generation = Some(d.generation),
            None if host.conns.len() < config.max_connections_per_host => {
                // A slot freeing sooner than a handshake is cheaper.
                let grow = waiting.start.max(host.last_grant) + host.dial_estimate;
                if usable > 0 && now < grow {
                    grow_at = Some(grow);
                } else {
                    match host.circuit.verdict(now) {
                        Verdict::Open(retry_after) if usable == 0 => {
                            return Step::Fail(Kind::CircuitOpen {
                                failures: host.circuit.failures(),
                                retry_after,
                                last: host.failed.as_ref().and_then(|(_, e)| e.dial_error()),
                            });
                        }
                        Verdict::Open(_) => {}
                        verdict => {
                            let probe = verdict == Verdict::Probe;
                            // The jump host never waits for room: the
                            // targets that took it wait on it.
                            let jump = config.jump_host.as_ref().is_some_and(|j| j.key() == *key);
                            if !jump
                                && shared.total >= config.max_connections
                                && !self.evict(shared, key)
                            {
                                let host = shared.hosts.get_mut(key).expect("made above");
                                if probe {
                                    host.circuit.probe_abandoned();
                                }
                                waited = Waited::Room;
                            } else {
                                waiting.generation = Some(self.start_dial(shared, key, probe));
                            }
                        }
                    }
                }
            }
            None => {}
        }
        let host = shared.hosts.get_mut(key).expect("made above");
        if !waiting.counted {
            if host.waiters >= config.max_waiters_per_host {
                return Step::Fail(Kind::Busy(host.waiters));
            }
            host.waiters += 1;
            waiting.counted = true;
            crate::metrics::pool_gauge(PoolGauge::Waiters, 1.0);
        }
        Step::Wait { waited, grow_at }
    }

    /// Closes the longest-idle connection of another host to make room;
    /// false if none is idle.
    fn evict(&self, shared: &mut Shared, except: &Key) -> bool {
        let mut oldest: Option<(Key, u64, Instant)> = None;
        for (key, host) in &shared.hosts {
            if key == except {
                continue;
            }
            for c in host.conns.iter().filter(|c| c.is_idle()) {
                let since = c.idle_since.unwrap_or(c.created);
                if oldest.as_ref().is_none_or(|(_, _, o)| since < *o) {
                    oldest = Some((key.clone(), c.id, since));
                }
            }
        }
        let Some((key, id, _)) = oldest else {
            return false;
        };
        let host = shared.hosts.get_mut(&key).expect("found above");
        let i = host
            .conns
            .iter()
            .position(|c| c.id == id)
            .expect("found above");
        let conn = host.conns.remove(i);
        self.removed(&conn, Removed::Evicted);
        shared.total -= 1;
        true
    }

    /// Starts the host's dial in a task of its own (requests come and go
    /// while it runs; the pool's drop cancels it). Returns its generation.
    fn start_dial(self: &Arc<Self>, shared: &mut Shared, key: &Key, probe: bool) -> u64 {
        shared.total += 1;
        let host = shared.hosts.get_mut(key).expect("made by the caller");
        host.generation += 1;
        let generation = host.generation;
        let pool = Arc::downgrade(self);
        let (dest, dialer, auth, key2) = (
            host.dest.clone(),
            self.dialer.clone(),
            self.auth.clone(),
            key.clone(),
        );
        let jump = self.config.jump_host.clone().filter(|j| j.key() != *key);
        tracing::debug!(generation, probe, "dialing");
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let result = match jump {
                None => dest
                    .dial(&dialer, &auth)
                    .await
                    .map_err(|e| DialFailure::Dial(Arc::new(e))),
                Some(jump) => {
                    // The jump host's connection, from the pool like any
                    // other: one for every target, however many dial at once.
                    let via = match pool.upgrade() {
                        Some(pool) => {
                            pool.connection(&jump, deadline_after(Instant::now(), dialer.timeout()))
                                .await
                        }
                        None => return,
                    };
                    match via {
                        Ok(via) => dest
                            .dial_via(&dialer, &via, &auth)
                            .await
                            .map_err(|e| DialFailure::Dial(Arc::new(e))),
                        Err(e) => Err(DialFailure::Jump(Arc::new(e))),
                    }
                }
            };
            if let Some(pool) = pool.upgrade() {
                pool.dialed(&key2, generation, result, start.elapsed());
            }
        });
        host.dialing = Some(Dialing {
            generation,
            abort: task.abort_handle(),
            probe,
        });
        generation
    }

    /// A dial ended: its connection joins the host, or its error goes to
    /// the requests that waited on it.
    fn dialed(
        self: &Arc<Self>,
        key: &Key,
        generation: u64,
        result: Result<Client, DialFailure>,
        took: Duration,
    ) {
        let now = Instant::now();
        let mut guard = self.lock();
        let shared = &mut *guard;
        let closed = shared.closed;
        let Some(host) = shared.hosts.get_mut(key) else {
            return;
        };
        if host
            .dialing
            .as_ref()
            .is_none_or(|d| d.generation != generation)
        {
            return;
        }
        host.dialing = None;
        crate::metrics::pool_dial(result.is_ok());
        let mut leftover = None;
        match result {
            Ok(client) if !closed => {
                if host.circuit.succeeded() {
                    crate::metrics::pool_gauge(PoolGauge::OpenCircuits, -1.0);
                    tracing::debug!("circuit closed");
                }
                host.dial_estimate = took.max(Duration::from_millis(1));
                host.failed = None;
                host.failed_at = None;
                shared.next_conn += 1;
                let id = shared.next_conn;
                host.conns.push(Conn::new(
                    id,
                    client,
                    self.config.max_sessions_per_connection,
                    now,
                ));
                crate::metrics::pool_gauge(PoolGauge::Connections, 1.0);
                crate::metrics::pool_gauge(PoolGauge::Idle, 1.0);
                bump(&self.counters.dials);
                tracing::debug!(connection = id, took_ms = took.as_millis() as u64, "dialed");
                host.changed.notify_waiters();
                if shared.reaper.is_none() {
                    shared.reaper = Some(self.start_reaper());
                }
                return;
            }
            Ok(client) => leftover = Some(client),
            // The jump host's failure, not this host's: its circuit is
            // the jump host's business.
            Err(e @ DialFailure::Jump(_)) => {
                tracing::debug!(error = %e, "no connection to the jump host");
                host.failed = Some((generation, e));
            }
            Err(e) => {
                bump(&self.counters.dials_failed);
                let was_open = host.circuit.is_open();
                if host.circuit.failed(&self.config.breaker, now) {
                    if !was_open {
                        crate::metrics::pool_gauge(PoolGauge::OpenCircuits, 1.0);
                    }
                    tracing::debug!(failures = host.circuit.failures(), error = %e, "circuit open");
                } else {
                    tracing::debug!(error = %e, "dial failed");
                }
                host.failed = Some((generation, e));
                host.failed_at = Some(now);
            }
        }
        host.changed.notify_waiters();
        shared.total -= 1;
        drop(guard);
        self.room.notify_waiters();
        drop(leftover);
    }

    /// A task that closes idle and expired connections as their time
    /// comes, while the pool has any; it holds the pool weakly.
    fn start_reaper(self: &Arc<Self>) -> AbortHandle {
        let pool = Arc::downgrade(self);
        let shortest = [self.config.idle_timeout, self.config.max_lifetime]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(1));
        let tick = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(pool) = pool.upgrade() else { return };
                if !pool.reap() {
                    return;
                }
            }
        })
        .abort_handle()
    }

    /// One round of the reaper; false once the pool has no host left (the
    /// reaper then ends, and the next connection starts another).
    fn reap(&self) -> bool {
        let now = Instant::now();
        let mut gone = Vec::new();
        let keep = {
            let mut shared = self.lock();
            for host in shared.hosts.values_mut() {
                gone.extend(host.tidy(&self.config, now));
            }
            for (conn, why) in &gone {
                self.removed(conn, *why);
            }
            shared.total -= gone.len();
            shared
                .hosts
                .retain(|_, host| !host.is_unused(&self.config, now));
            if shared.hosts.is_empty() {
                shared.reaper = None;
            }
            shared.reaper.is_some()
        };
        if !gone.is_empty() {
            self.room.notify_waiters();
        }
        keep
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let shared = self.shared.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(reaper) = shared.reaper.take() {
            reaper.abort();
        }
        for host in shared.hosts.values_mut() {
            if let Some(dialing) = host.dialing.take() {
                dialing.abort.abort();
            }
            if host.circuit.is_open() {
                crate::metrics::pool_gauge(PoolGauge::OpenCircuits, -1.0);
            }
            for conn in &host.conns {
                crate::metrics::pool_gauge(PoolGauge::Connections, -1.0);
                if conn.leases == 0 {
                    crate::metrics::pool_gauge(PoolGauge::Idle, -1.0);
                }
            }
        }
        // The connections go with the map: each ends its session at once.
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        crate::metrics::pool_gauge(PoolGauge::Waiters, -1.0);
        let mut shared = self.pool.lock();
        if let Some(host) = shared.hosts.get_mut(self.key) {
            host.waiters = host.waiters.saturating_sub(1);
        }
    }
}

/// Resolves when any of `futures` does.
async fn any<F: Future<Output = ()>>(futures: &mut [Pin<Box<F>>]) {
    std::future::poll_fn(|cx| {
        for f in futures.iter_mut() {
            if f.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}
