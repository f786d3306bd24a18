//! An authenticated SSH connection: run commands under deadlines, close it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::client::Handle;
use russh::Disconnect;

use crate::channel::Closing;
use crate::deadline::{Switch, GRACE};
use crate::error::Phase;
use crate::handshake::{ClientHandler, Inbound};
use crate::process::{Command, ExecError, Output};

/// An authenticated SSH connection, returned by [`Dialer::dial`](crate::Dialer::dial).
///
/// Dead peers are noticed by TCP keepalive and `TCP_USER_TIMEOUT` on the
/// socket and SSH keepalive in the session, as the dialer configured them.
///
/// Dropping a `Client` ends its session task and closes its socket at once,
/// whatever channels are open; [`close`](Client::close) says goodbye first.
pub struct Client {
    /// Shared with the tasks that own the client's command channels; the
    /// session ends when the switch trips, whoever holds a handle.
    handle: Arc<Handle<ClientHandler>>,
    switch: Switch,
    target: String,
    remote_addr: Option<SocketAddr>,
    exec_timeout: Option<Duration>,
    open_timeout: Option<Duration>,
    tunnel_stall: Duration,
    max_output: Option<usize>,
    close_timeout: Duration,
    timings: DialTimings,
    closing: Arc<Closing>,
    /// The jump host this client's connection goes through, kept alive
    /// as long as this client.
    via: Option<Arc<Client>>,
    /// The remote forwards' queues, shared with the session's handler.
    inbound: Inbound,
}

/// How long each phase of a successful dial took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DialTimings {
    /// Resolving the host name (zero for an address literal).
    pub resolve: Duration,
    /// The TCP connect, over every address tried.
    pub connect: Duration,
    /// Sending our version line and reading the server's.
    pub version_exchange: Duration,
    /// Key exchange, with the host key check.
    pub key_exchange: Duration,
    /// Loading the key (if from a file) and authentication.
    pub auth: Duration,
}

impl DialTimings {
    /// The whole dial.
    pub fn total(&self) -> Duration {
        self.resolve + self.connect + self.version_exchange + self.key_exchange + self.auth
    }

    /// Each phase with its time, in order.
    pub(crate) fn phases(&self) -> [(Phase, Duration); 5] {
        [
            (Phase::Resolve, self.resolve),
            (Phase::Connect, self.connect),
            (Phase::VersionExchange, self.version_exchange),
            (Phase::KeyExchange, self.key_exchange),
            (Phase::Auth, self.auth),
        ]
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target)
            .field("remote_addr", &self.remote_addr)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// An authenticated session: russh's handle, the switch on its stream, and
/// the queues of its remote forwards.
pub(crate) struct Session {
    pub(crate) handle: Handle<ClientHandler>,
    pub(crate) switch: Switch,
    pub(crate) inbound: Inbound,
}

/// The dialer's settings for the client's commands and its close.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) exec_timeout: Option<Duration>,
    pub(crate) open_timeout: Option<Duration>,
    pub(crate) tunnel_stall: Duration,
    pub(crate) max_output: Option<usize>,
    pub(crate) close_timeout: Duration,
}

impl Client {
    pub(crate) fn new(
        session: Session,
        target: String,
        remote_addr: Option<SocketAddr>,
        settings: Settings,
        timings: DialTimings,
        via: Option<Arc<Client>>,
    ) -> Self {
        let Session {
            handle,
            switch,
            inbound,
        } = session;
        crate::metrics::session_opened();
        Client {
            handle: Arc::new(handle),
            switch,
            target,
            remote_addr,
            exec_timeout: settings.exec_timeout,
            open_timeout: settings.open_timeout,
            tunnel_stall: settings.tunnel_stall,
            max_output: settings.max_output,
            close_timeout: settings.close_timeout,
            timings,
            closing: Arc::default(),
            via,
            inbound,
        }
    }

    /// Ends the session at once, without a goodbye, and waits (within
    /// the grace period) until its socket is closed and its task has ended;
    /// then does the same for the jump hosts this client alone kept alive.
    pub(crate) async fn abort(mut self) {
        self.switch.shut(GRACE).await;
        if let Some(via) = self.via.take() {
            abort_unshared(via).await;
        }
    }

    /// Marks this client's connection as carrying tunnels (it is a jump
    /// host): its reads are acknowledged at once.
    pub(crate) fn carry_tunnels(&self) {
        self.switch.carry_tunnels();
    }

    /// The jump host this client's connection goes through, if any.
    pub fn jump_host(&self) -> Option<&Arc<Client>> {
        self.via.as_ref()
    }

    /// The session handle and the closes owed on it, for a channel task.
    pub(crate) fn channel_parts(&self) -> (Arc<Handle<ClientHandler>>, Arc<Closing>) {
        (self.handle.clone(), self.closing.clone())
    }

    /// Session channels open on this connection: commands running,
    /// subsystems, and channels whose close is still on its way. What the
    /// server's `MaxSessions` (10 for OpenSSH's sshd) counts.
    pub fn sessions_in_use(&self) -> usize {
        self.closing.sessions_in_use()
    }

    /// Session channels the server has confirmed and that are still
    /// open: at most what it counts against `MaxSessions`.
    pub(crate) fn sessions_confirmed(&self) -> usize {
        self.closing.sessions_confirmed()
    }

    /// Session channels released on this connection so far.
    pub(crate) fn sessions_released(&self) -> u64 {
        self.closing.sessions_released()
    }

    /// A round trip to the server (`keepalive@openssh.com`, answered
    /// either way): once it returns, the server has read every message
    /// queued before it, closes included. False if the session is gone.
    pub(crate) async fn round_trip(&self) -> bool {
        self.handle.send_ping().await.is_ok() && !self.handle.is_closed()
    }

    /// Resolves at the next release of a session channel on this
    /// connection (enable it, then check [`sessions_in_use`](Self::sessions_in_use)).
    pub(crate) fn session_freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.closing.session_freed()
    }

    /// The remote forwards' queues.
    pub(crate) fn inbound(&self) -> &Inbound {
        &self.inbound
    }

    /// How long a tunnel's channel may take to open.
    pub(crate) fn open_timeout(&self) -> Option<Duration> {
        self.open_timeout
    }

    /// How long a paused tunnel waits for its reader.
    pub(crate) fn tunnel_stall(&self) -> Duration {
        self.tunnel_stall
    }

    /// The host and port this client was dialed as (`host:port`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// How long each phase of the dial that made this client took.
    pub fn timings(&self) -> DialTimings {
        self.timings
    }

    /// A command line to run, with the dialer's exec timeout and output cap:
    /// add quoted [`arg`](Command::arg)s, then collect its
    /// [`output`](Command::output), its [`status`](Command::status), or
    /// [`spawn`](Command::spawn) it for pipes.
    pub fn command(&self, command: impl Into<String>) -> Command {
        Command::new(
            self.handle.clone(),
            self.closing.clone(),
            command.into(),
            self.exec_timeout,
            self.max_output,
        )
    }

    /// Runs the command line `command` under the dialer's exec timeout and
    /// output cap, stdin closed, and collects its output:
    /// `client.command(command).output()`.
    ///
    /// A non-zero exit is not an error: look at [`Output::status`].
    ///
    /// # Errors
    ///
    /// As [`Command::output`]: [`ExecError::is_timeout`] if the deadline
    /// passed, with the output so far in [`ExecError::partial_output`]; the
    /// command is sent `KILL` and its channel closed, and the client stays
    /// usable. OpenSSH's sshd (7.9 and later) then kills the command's
    /// process group, except for root logins, where it refuses signals;
    /// there, and on servers without signal support, the command runs on
    /// until it notices its closed pipes. [`ExecError::is_closed`] if the
    /// session is gone.
    ///
    /// # Panics
    ///
    /// If polled outside a Tokio runtime with its time driver enabled
    /// (`enable_time` or `enable_all`, as `#[tokio::main]` does).
    ///
    /// # Cancellation
    ///
    /// Dropping the future sends the command `KILL` and closes its channel
    /// (an open the server has not answered yet is closed when it does);
    /// the client stays usable.
    pub async fn exec(&self, command: &str) -> Result<Output, ExecError> {
        self.command(command).output().await
    }

    /// Says goodbye to the server and waits, at most the dialer's
    /// `close_timeout`, for the session to end; then closes the socket
    /// whether or not the server answered. The session task and socket are
    /// gone when this returns. A jump host kept alive for this client alone
    /// is closed the same way after it; one shared with other clients stays
    /// open for them.
    ///
    /// # Panics
    ///
    /// If polled outside a Tokio runtime with its time driver enabled
    /// (`enable_time` or `enable_all`, as `#[tokio::main]` does).
    pub async fn close(mut self) {
        let goodbye = async {
            let _ = self
                .handle
                .disconnect(Disconnect::ByApplication, "", "en")
                .await;
            self.switch.ended().await;
        };
        let joined = tokio::time::timeout(self.close_timeout, goodbye)
            .await
            .is_ok();
        if !joined {
            tracing::debug!(target = %self.target, "server did not end the session in time; closing the socket");
        }
        // Waits for the socket and the session task to be gone.
        self.switch.shut(GRACE).await;
        if let Some(via) = self.via.take() {
            if let Ok(jump) = Arc::try_unwrap(via) {
                Box::pin(jump.close()).await;
            }
        }
    }

    /// True once the session has ended: closed by either side, or a
    /// keepalive gave up on the peer.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// The address this client is connected to: for a client reached
    /// through jump hosts, the first jump host's address; `None` for a
    /// connection carried by a `ProxyCommand`.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The russh session handle, for what ssh-dial does not cover yet.
    ///
    /// # Warning
    ///
    /// Nothing done through it is bounded by ssh-dial: a channel opened
    /// here waits as long as the server makes it, is not closed when its
    /// future or its halves are dropped (russh sends no `CHANNEL_CLOSE`
    /// then), and one whose messages nobody reads stalls the whole session,
    /// keepalives included. Its type follows russh: a russh release that
    /// changes it is a breaking ssh-dial release. Prefer [`command`](Client::command).
    pub fn handle(&self) -> &Handle<ClientHandler> {
        &self.handle
    }
}

/// Aborts a jump host unless other clients still go through it.
pub(crate) async fn abort_unshared(via: Arc<Client>) {
    if let Ok(jump) = Arc::try_unwrap(via) {
        Box::pin(jump.abort()).await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.switch.trip();
        crate::metrics::session_closed();
    }
}
