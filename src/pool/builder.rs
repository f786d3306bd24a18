//! [`PoolBuilder`]: every setting of a [`Pool`], with its default.

use std::time::Duration;

use super::circuit::Breaker;
use super::{Destination, Pool};
use crate::auth::Auth;
use crate::dialer::Dialer;

/// The pool's settings.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) max_sessions_per_connection: usize,
    pub(super) max_connections_per_host: usize,
    pub(super) max_connections: usize,
    pub(super) max_idle_per_host: usize,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_lifetime: Option<Duration>,
    pub(super) checkout_timeout: Duration,
    pub(super) max_waiters_per_host: usize,
    pub(super) breaker: Breaker,
    pub(super) jump_host: Option<Destination>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_sessions_per_connection: 10,
            max_connections_per_host: 4,
            max_connections: 512,
            max_idle_per_host: usize::MAX,
            idle_timeout: Some(Duration::from_secs(90)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            checkout_timeout: Duration::from_secs(30),
            max_waiters_per_host: 256,
            breaker: Breaker::default(),
            jump_host: None,
        }
    }
}

/// Builds a [`Pool`]. Every setting has a default; see each method.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    dialer: Dialer,
    auth: Auth,
    config: Config,
}

impl PoolBuilder {
    pub(super) fn new(dialer: Dialer, auth: Auth) -> Self {
        PoolBuilder {
            dialer,
            auth,
            config: Config::default(),
        }
    }

    /// The most session channels (commands, subsystems) open at once on
    /// one connection, counting those whose close is still on its way:
    /// what sshd's `MaxSessions` counts. Past it a request waits for a
    /// slot or gets another connection. A server that refuses a session
    /// channel below this lowers the connection's own limit to what it
    /// allowed. At least 1.
    ///
    /// Default is 10, sshd's default `MaxSessions`.
    pub fn max_sessions_per_connection(mut self, max: usize) -> Self {
        self.config.max_sessions_per_connection = max.max(1);
        self
    }

    /// The most connections to one destination, dials in progress
    /// included. A host gets another connection when every one it has is
    /// at its session limit and a request has waited as long as the
    /// host's last dial took (a slot freeing sooner is cheaper than a
    /// handshake); dials to one host go one at a time. At least 1.
    ///
    /// Default is 4.
    pub fn max_connections_per_host(mut self, max: usize) -> Self {
        self.config.max_connections_per_host = max.max(1);
        self
    }

    /// The most connections in the pool, dials in progress included (bb8
    /// and deadpool call it `max_size`). A host that needs a connection
    /// when the pool is full closes the longest-idle connection of
    /// another host; if none is idle, it waits. At least 1. A
    /// [jump host](Self::jump_host)'s connection never waits for room
    /// (the targets waiting on it hold it): it may take the pool one past.
    ///
    /// Default is 512.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max.max(1);
        self
    }

    /// The most idle connections (no session open) kept per destination;
    /// past it the idle ones are closed, oldest first.
    ///
    /// Default is no bound beyond
    /// [`max_connections_per_host`](Self::max_connections_per_host).
    pub fn max_idle_per_host(mut self, max: usize) -> Self {
        self.config.max_idle_per_host = max;
        self
    }

    /// How long a connection may sit with no session open before it is
    /// closed.
    ///
    /// If `None`, idle connections are kept (up to their
    /// [`max_lifetime`](Self::max_lifetime)). Default is 90 seconds.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = timeout.into();
        self
    }

    /// How old a connection may get: past it, it is never handed out
    /// again, and is closed once its last session ends.
    ///
    /// If `None`, connections live until they fail or idle out. Default is
    /// 30 minutes.
    pub fn max_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.config.max_lifetime = lifetime.into();
        self
    }

    /// How long a request may wait for a connection and a session slot
    /// (a dial included) before it fails with
    /// [`PoolError::is_timeout`](super::PoolError::is_timeout). A
    /// [`PoolCommand::timeout`](super::PoolCommand::timeout) caps it
    /// further.
    ///
    /// Default is 30 seconds.
    pub fn checkout_timeout(mut self, timeout: Duration) -> Self {
        self.config.checkout_timeout = timeout;
        self
    }

    /// The most requests waiting for one destination; past it a request
    /// fails at once with [`PoolError::is_busy`](super::PoolError::is_busy).
    /// A sick host cannot gather more than this.
    ///
    /// Default is 256.
    pub fn max_waiters_per_host(mut self, max: usize) -> Self {
        self.config.max_waiters_per_host = max;
        self
    }

    /// The circuit breaker: after `failures` failed dials in a row to a
    /// destination, requests for it fail at once with
    /// [`PoolError::is_circuit_open`](super::PoolError::is_circuit_open)
    /// for `backoff` (jittered down by up to half), doubling at each
    /// failed probe up to `max_backoff`; then one request's dial probes
    /// the host, and closes the circuit if it connects. `failures` 0
    /// turns the breaker off.
    ///
    /// Default is 3 failures, 1 second, 30 seconds.
    pub fn circuit_breaker(
        mut self,
        failures: u32,
        backoff: Duration,
        max_backoff: Duration,
    ) -> Self {
        self.config.breaker = Breaker {
            failures,
            backoff,
            max_backoff: max_backoff.max(backoff),
        };
        self
    }

    /// A jump host every connection goes through (`ssh -J`), itself a
    /// pooled destination: one connection to it carries every target's,
    /// however many dial at once (the dialer's own
    /// [`share_jump_hosts`](crate::DialerBuilder::share_jump_hosts) shares
    /// one only once it is up, so a burst of first dials opens one each).
    /// Its circuit, bounds and lifetime are its own; a target whose jump
    /// host cannot be had fails with the jump host's error. Targets are
    /// dialed as addresses: ssh_config is not read for them, and the
    /// dialer's [`proxy_jump`](crate::DialerBuilder::proxy_jump) is not
    /// used.
    ///
    /// Default is none: the dialer reaches each host its own way.
    pub fn jump_host(mut self, jump: Destination) -> Self {
        self.config.jump_host = Some(jump);
        self
    }

    /// Builds the pool. It dials nothing until asked.
    pub fn build(self) -> Pool {
        Pool::from_parts(self.dialer, self.auth, self.config)
    }
}
