//! Why a command failed, and what became of its channel.

use std::fmt;
use std::io;
use std::time::Duration;

use super::status::Output;
use crate::channel::{ChannelAt, Failure};
use crate::text::{write_escaped, PeerText};

/// Why a command failed to start or to finish: from
/// [`Client::exec`](crate::Client::exec), [`Command`](crate::Command)'s
/// `output`, `status` and `spawn`, and [`RemoteProcess::wait`](crate::RemoteProcess::wait).
///
/// A command that ran and exited non-zero is not an error: see
/// [`Output::status`].
///
/// The message is one line of printable ASCII; text that came from the
/// server is escaped in it. It shows its cause, so
/// [`source`](std::error::Error::source) returns `None`.
pub struct ExecError {
    kind: Failure,
    elapsed: Duration,
    /// What the command printed before it failed.
    partial: Option<Box<Output>>,
    /// Whether the exec request may have reached the server (the command
    /// may have started); `true` unless known otherwise.
    exec_sent: bool,
}

impl ExecError {
    pub(crate) fn new(kind: Failure, elapsed: Duration) -> Self {
        ExecError {
            kind,
            elapsed,
            partial: None,
            exec_sent: true,
        }
    }

    /// Marks an error that came before the exec request was sent, when it
    /// did: nothing can have run.
    pub(crate) fn exec_sent(mut self, sent: bool) -> Self {
        self.exec_sent = sent;
        self
    }

    /// True if the exec request was never sent: the command cannot have
    /// started, so it may be run again elsewhere (a pool's retry).
    pub(crate) fn never_started(&self) -> bool {
        !self.exec_sent
    }

    /// True if the server refused the session channel itself (sshd at
    /// its `MaxSessions`).
    pub(crate) fn is_session_refused(&self) -> bool {
        matches!(self.kind, Failure::OpenRefused { .. })
    }

    pub(crate) fn with_partial(mut self, output: Output) -> Self {
        self.partial = Some(Box::new(output));
        self
    }

    /// What the command printed before it failed (up to the output cap),
    /// and its status if the server had sent one; for
    /// [`Command::output`](crate::Command::output) and
    /// [`Client::exec`](crate::Client::exec) after the command started.
    pub fn partial_output(&self) -> Option<&Output> {
        self.partial.as_deref()
    }

    /// True for input that could not be sent: a NUL byte in the command, an
    /// argument, a directory or an environment variable, an empty or
    /// malformed variable name, a zero-sized terminal. Nothing was sent.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self.kind, Failure::InvalidInput(_))
    }

    /// True if the server refused a request: the session channel (at its
    /// `MaxSessions`, say), the terminal or the command.
    pub fn is_refused(&self) -> bool {
        matches!(self.kind, Failure::Refused(_) | Failure::OpenRefused { .. })
    }

    /// True if the command's deadline passed. The message says what became
    /// of its channel.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Failure::TimedOut(_))
    }

    /// True if the SSH session is gone (peer closed, keepalive failed, or the
    /// client was closed); the client will not recover.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Failure::SessionClosed)
    }

    /// Time from the start of the command to the failure.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        match &self.kind {
            Failure::TimedOut(at) => {
                write!(f, "exec timed out after {secs:.2}s")?;
                match at {
                    ChannelAt::NeverOpened => f.write_str(
                        ": the server had not opened a channel (it is closed if it opens one later)",
                    ),
                    ChannelAt::SettingUp => f.write_str(
                        " before the server started the command; its channel's close was sent",
                    ),
                    ChannelAt::Running => f.write_str(
                        "; the command was sent KILL and its channel's close was sent",
                    ),
                }
            }
            Failure::SessionClosed => write!(f, "exec: ssh session closed after {secs:.2}s"),
            Failure::Refused(what) => write!(f, "exec: server refused {}", PeerText::new(what)),
            Failure::InvalidInput(why) => write!(f, "exec: invalid input: {why}"),
            Failure::Ssh(e) => write!(f, "exec: ssh error: {}", PeerText::new(e)),
            Failure::Stalled(behind, stall) => write!(
                f,
                "exec: nothing was read for {stall:?} with {behind} bytes waiting"
            ),
            Failure::OpenRefused { what, why } => {
                write!(f, "exec: server refused {what}: {why}")
            }
        }
    }
}

impl fmt::Debug for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecError")
            .field("message", &self.to_string())
            .field("elapsed", &self.elapsed)
            .field("partial", &self.partial.is_some())
            .finish()
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, |f| self.describe(f))
    }
}

impl std::error::Error for ExecError {}

impl From<ExecError> for io::Error {
    fn from(e: ExecError) -> io::Error {
        let kind = if e.is_timeout() {
            io::ErrorKind::TimedOut
        } else if e.is_closed() {
            io::ErrorKind::ConnectionAborted
        } else if e.is_invalid_input() {
            io::ErrorKind::InvalidInput
        } else {
            io::ErrorKind::Other
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_says_what_became_of_the_channel() {
        let at = |at| ExecError::new(Failure::TimedOut(at), Duration::from_millis(2003));
        assert_eq!(
            at(ChannelAt::NeverOpened).to_string(),
            "exec timed out after 2.00s: the server had not opened a channel (it is closed if it opens one later)"
        );
        assert!(at(ChannelAt::Running)
            .to_string()
            .ends_with("; the command was sent KILL and its channel's close was sent"));
        assert!(at(ChannelAt::SettingUp)
            .to_string()
            .contains("before the server started the command; its channel's close was sent"));
        assert_eq!(
            io::Error::from(at(ChannelAt::NeverOpened)).kind(),
            io::ErrorKind::TimedOut
        );
    }

    #[test]
    fn server_text_is_escaped_and_there_is_no_raw_source() {
        let e = ExecError::new(
            Failure::Ssh("bad\n\x1b[31mdial x: ok".into()),
            Duration::ZERO,
        );
        let shown = e.to_string();
        assert!(
            shown.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
            "{shown}"
        );
        assert!(std::error::Error::source(&e).is_none());
        let debug = format!("{e:?}");
        assert!(!debug.contains('\x1b'), "{debug}");
    }

    #[test]
    fn exec_errors_are_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<ExecError>();
    }
}
