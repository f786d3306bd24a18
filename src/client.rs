//! An authenticated SSH connection: run commands under deadlines, close it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use russh::client::Handle;
use russh::{ChannelMsg, Disconnect, Sig};
use tokio::time::Instant;

use crate::deadline::{Switch, GRACE};
use crate::error::{ExecError, ExecKind, Phase};
use crate::handshake::ClientHandler;

/// An authenticated SSH connection, returned by [`Dialer::dial`](crate::Dialer::dial).
///
/// Dead peers are noticed by TCP keepalive and `TCP_USER_TIMEOUT` on the
/// socket and SSH keepalive in the session, as the dialer configured them.
///
/// Dropping a `Client` ends its session task and closes its socket at once,
/// whatever channels are open; [`close`](Client::close) says goodbye first.
pub struct Client {
    handle: Handle<ClientHandler>,
    switch: Switch,
    target: String,
    remote_addr: SocketAddr,
    exec_timeout: Option<Duration>,
    close_timeout: Duration,
    timings: DialTimings,
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

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Everything the command wrote to standard output.
    pub stdout: Vec<u8>,
    /// Everything the command wrote to standard error.
    pub stderr: Vec<u8>,
    /// The exit status or the signal that ended it.
    pub status: ExitStatus,
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It exited with this status.
    Code(u32),
    /// A signal ended it; the name is as the server sent it, e.g. `"KILL"`.
    Signal(String),
}

impl ExitStatus {
    /// True for exit status 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit status, if the command exited rather than being killed.
    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            ExitStatus::Signal(_) => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal(s) => {
                write!(f, "killed by signal {}", crate::text::PeerText::new(s))
            }
        }
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

impl Client {
    pub(crate) fn new(
        handle: Handle<ClientHandler>,
        switch: Switch,
        target: String,
        remote_addr: SocketAddr,
        exec_timeout: Option<Duration>,
        close_timeout: Duration,
        timings: DialTimings,
    ) -> Self {
        crate::metrics::session_opened();
        Client {
            handle,
            switch,
            target,
            remote_addr,
            exec_timeout,
            close_timeout,
            timings,
        }
    }

    /// How long each phase of the dial that made this client took.
    pub fn timings(&self) -> DialTimings {
        self.timings
    }

    /// Runs `command` under the dialer's exec timeout and collects its output.
    ///
    /// See [`exec_with_timeout`](Client::exec_with_timeout).
    ///
    /// # Errors
    ///
    /// As for [`exec_with_timeout`](Client::exec_with_timeout).
    pub async fn exec(&self, command: &str) -> Result<Output, ExecError> {
        self.exec_with_timeout(command, self.exec_timeout).await
    }

    /// Runs `command` on a new session channel and collects its output.
    /// `timeout` bounds everything from opening the channel to the exit
    /// status; `None` waits as long as the command runs.
    ///
    /// A non-zero exit is not an error: look at [`Output::status`]. Output is
    /// held in memory in full. The command is over once the server has sent
    /// its exit status and EOF, whether or not it then closes the channel.
    ///
    /// # Errors
    ///
    /// [`ExecError::is_timeout`] if the deadline passed: a `signal` request
    /// (KILL) is sent and the channel closed, and the client stays usable
    /// for other commands. OpenSSH's sshd (7.9 and later) then kills the
    /// command's process group, except for root logins, where it refuses
    /// signals; there, and on servers without signal support, the command
    /// runs on until it ends or notices its closed pipes.
    /// [`ExecError::is_closed`] if the session is gone. Otherwise the server
    /// refused the channel or the command, or ended the channel without an
    /// exit status.
    ///
    /// # Panics
    ///
    /// If polled outside a Tokio runtime with its time driver enabled
    /// (`enable_time` or `enable_all`, as `#[tokio::main]` does).
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the channel open on the server until the
    /// command ends or the client is dropped; the client stays usable.
    pub async fn exec_with_timeout(
        &self,
        command: &str,
        timeout: Option<Duration>,
    ) -> Result<Output, ExecError> {
        let start = Instant::now();
        let deadline = timeout.map(|t| crate::deadline::deadline_after(start, t));
        let fail = |kind| ExecError::new(kind, start.elapsed());
        let closed_or = |kind| {
            if self.handle.is_closed() {
                fail(ExecKind::SessionClosed)
            } else {
                fail(kind)
            }
        };

        let mut channel = match within(deadline, self.handle.channel_open_session()).await {
            None => return Err(fail(ExecKind::TimedOut)),
            Some(Err(russh::Error::ChannelOpenFailure(_))) => {
                return Err(closed_or(ExecKind::Refused))
            }
            Some(Err(e)) => return Err(closed_or(ExecKind::Ssh(e))),
            Some(Ok(c)) => c,
        };
        tracing::debug!(channel = %channel.id(), "exec");

        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut status = None;
        let mut eof = false;
        let ran = within(deadline, async {
            channel.exec(true, command).await?;
            // Data ends at EOF and the status may come on either side of
            // it; with both in hand the command is over, whether or not the
            // server ever closes the channel.
            while !(eof && status.is_some()) {
                let Some(msg) = channel.wait().await else {
                    break;
                };
                match msg {
                    ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = Some(ExitStatus::Code(exit_status))
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = Some(ExitStatus::Signal(signal_text(signal_name)))
                    }
                    ChannelMsg::Failure if status.is_none() => {
                        return Err(russh::Error::RequestDenied)
                    }
                    ChannelMsg::Eof => eof = true,
                    _ => {}
                }
            }
            Ok(())
        })
        .await;
        match ran {
            None => {
                // The command would run on after its channel closes (sshd
                // closes its pipes, which a command that does not use them
                // never notices); a `signal` request kills its process group
                // on servers that honour it (OpenSSH's sshd since 7.9). Both
                // are bounded: a healthy session takes them at once.
                let _ = tokio::time::timeout(GRACE, async {
                    let _ = channel.signal(Sig::KILL).await;
                    let _ = channel.close().await;
                })
                .await;
                Err(fail(ExecKind::TimedOut))
            }
            Some(Err(russh::Error::RequestDenied)) => Err(closed_or(ExecKind::Refused)),
            Some(Err(e)) => Err(closed_or(ExecKind::Ssh(e))),
            Some(Ok(())) => match status {
                Some(status) => {
                    if !self.handle.is_closed() {
                        // Ours to close if the server did not.
                        let _ = tokio::time::timeout(GRACE, channel.close()).await;
                    }
                    Ok(Output {
                        stdout,
                        stderr,
                        status,
                    })
                }
                None => Err(closed_or(ExecKind::NoExitStatus)),
            },
        }
    }

    /// Says goodbye to the server and waits, at most the dialer's
    /// `close_timeout`, for the session to end; then closes the socket
    /// whether or not the server answered. The session task and socket are
    /// gone when this returns.
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
            let _ = (&mut self.handle).await;
        };
        let joined = tokio::time::timeout(self.close_timeout, goodbye)
            .await
            .is_ok();
        if !joined {
            tracing::debug!(target = %self.target, "server did not end the session in time; closing the socket");
        }
        self.switch.shut(GRACE).await;
        if !joined {
            // The socket is closed; wait for the task itself to finish.
            // (A finished handle must not be polled again.)
            let _ = tokio::time::timeout(GRACE, &mut self.handle).await;
        }
    }

    /// True once the session has ended: closed by either side, or a
    /// keepalive gave up on the peer.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// The address this client is connected to.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The russh session handle, for port forwarding, interactive shells,
    /// subsystems and anything else beyond [`exec`](Client::exec).
    pub fn handle(&self) -> &Handle<ClientHandler> {
        &self.handle
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.switch.trip();
        crate::metrics::session_closed();
    }
}

/// `fut`, bounded by `deadline` if there is one; `None` if it passed.
async fn within<F: std::future::Future>(deadline: Option<Instant>, fut: F) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, fut).await.ok(),
        None => Some(fut.await),
    }
}

fn signal_text(sig: Sig) -> String {
    match sig {
        Sig::Custom(name) => name,
        other => format!("{other:?}"),
    }
}
