//! Why a tunnel or a forward failed.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::channel::{ChannelAt, Failure, OpenFailure};
use crate::text::{write_escaped, PeerText};

/// Why a tunnel could not be opened, or a forward set up.
///
/// The message is one line of printable ASCII that names the target and
/// shows the cause (server text escaped), so
/// [`source`](std::error::Error::source) returns `None`.
pub struct TunnelError {
    target: String,
    kind: Kind,
    elapsed: Duration,
}

enum Kind {
    Channel(Failure),
    /// The local listener could not be set up.
    Bind(io::Error),
    /// The server refused a `tcpip-forward` request.
    ForwardRefused,
}

impl TunnelError {
    pub(crate) fn channel(target: &str, failure: Failure, elapsed: Duration) -> Self {
        TunnelError {
            target: target.to_owned(),
            kind: Kind::Channel(failure),
            elapsed,
        }
    }

    pub(crate) fn bind(target: &str, error: io::Error) -> Self {
        TunnelError {
            target: target.to_owned(),
            kind: Kind::Bind(error),
            elapsed: Duration::ZERO,
        }
    }

    pub(crate) fn forward_refused(target: &str, elapsed: Duration) -> Self {
        TunnelError {
            target: target.to_owned(),
            kind: Kind::ForwardRefused,
            elapsed,
        }
    }

    fn open_failure(&self) -> Option<&OpenFailure> {
        match &self.kind {
            Kind::Channel(Failure::OpenRefused { why, .. }) => Some(why),
            _ => None,
        }
    }

    /// True if the open (or the forward request) was not answered in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Channel(Failure::TimedOut(_)))
    }

    /// True if the server refused: forwarding is off for us
    /// (`AllowTcpForwarding no`, "administratively prohibited"), or it
    /// refused to listen for a remote forward.
    pub fn is_refused(&self) -> bool {
        matches!(self.open_failure(), Some(OpenFailure::Prohibited))
            || matches!(self.kind, Kind::ForwardRefused)
    }

    /// True if the server tried and could not connect to the target
    /// ("connect failed": nothing listens there, or it is unreachable).
    pub fn is_connect_failed(&self) -> bool {
        matches!(self.open_failure(), Some(OpenFailure::ConnectFailed))
    }

    /// True if the SSH session is gone.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Channel(Failure::SessionClosed))
    }

    /// True for a local listener that could not be bound.
    pub fn is_bind(&self) -> bool {
        matches!(self.kind, Kind::Bind(_))
    }

    /// True for a target that could not be asked for (a NUL, a name too
    /// long); nothing was sent.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self.kind, Kind::Channel(Failure::InvalidInput(_)))
    }

    /// Where the tunnel or the forward was to go.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Time from the request to the failure.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tunnel to {}: ", PeerText::new(&self.target))?;
        let secs = self.elapsed.as_secs_f64();
        match &self.kind {
            Kind::Bind(e) => write!(f, "cannot listen: {}", crate::text::fmt_io(e)),
            Kind::ForwardRefused => f.write_str("the server refused to listen for it"),
            Kind::Channel(failure) => match failure {
                Failure::TimedOut(ChannelAt::NeverOpened) => write!(
                    f,
                    "the server had not opened the channel after {secs:.2}s (it is closed if it opens it later)"
                ),
                Failure::TimedOut(_) => write!(f, "timed out after {secs:.2}s"),
                Failure::OpenRefused { why, .. } => write!(f, "the server refused: {why}"),
                Failure::SessionClosed => write!(f, "ssh session closed after {secs:.2}s"),
                Failure::Refused(what) => write!(f, "server refused {}", PeerText::new(what)),
                Failure::InvalidInput(why) => write!(f, "invalid input: {why}"),
                Failure::Ssh(e) => write!(f, "ssh error: {}", PeerText::new(e)),
                Failure::Stalled(behind, stall) => write!(
                    f,
                    "nothing was read for {stall:?} with {behind} bytes waiting"
                ),
            },
        }
    }
}

impl fmt::Display for TunnelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, |f| self.describe(f))
    }
}

impl fmt::Debug for TunnelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelError")
            .field("message", &self.to_string())
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

impl std::error::Error for TunnelError {}

impl From<TunnelError> for io::Error {
    fn from(e: TunnelError) -> io::Error {
        let kind = if e.is_timeout() {
            io::ErrorKind::TimedOut
        } else if e.is_refused() {
            io::ErrorKind::PermissionDenied
        } else if e.is_connect_failed() {
            io::ErrorKind::ConnectionRefused
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

    /// What the server and the caller wrote (the open failure's text, a
    /// refusal, russh's text, the target) comes out as one printable line,
    /// in `Display` and `Debug`, and there is no raw source to print.
    #[test]
    fn peer_text_is_one_escaped_line() {
        let forged = "\u{1b}[2Jok\ndial db:22: ok\r\u{7}";
        let failures = [
            Failure::OpenRefused {
                what: "a channel".into(),
                why: OpenFailure::Other(9, forged.into()),
            },
            Failure::Refused(forged.into()),
            Failure::Ssh(forged.into()),
        ];
        for failure in failures {
            let e = TunnelError::channel(forged, failure, Duration::from_millis(5));
            for text in [e.to_string(), format!("{e:?}")] {
                assert!(
                    text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
                    "{text:?}"
                );
                assert!(!text.contains('\n'), "{text}");
            }
            assert!(std::error::Error::source(&e).is_none());
            let io: io::Error = e.into();
            assert!(!io.to_string().contains('\u{1b}'), "{io}");
        }
    }
}
