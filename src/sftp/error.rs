//! Why an SFTP operation failed.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::codec::{self, Malformed, Status};
use crate::forward::TunnelError;
use crate::text::{write_escaped, PeerText};

/// Why an SFTP operation failed: the operation (`put`, `stat`, ...), the
/// remote path, and the cause (the server's status, a deadline, a broken
/// session, a local file).
///
/// The message is one line of printable ASCII (the server's text and the
/// path escaped), so [`source`](std::error::Error::source) returns `None`.
#[derive(Clone)]
pub struct SftpError {
    op: &'static str,
    path: Option<String>,
    kind: Kind,
}

#[derive(Clone)]
pub(crate) enum Kind {
    /// The server answered with this status.
    Status(Status),
    /// The operation's deadline passed.
    Timeout(Duration),
    /// No progress for this long.
    Stalled(Duration),
    /// The session is over (why, as first seen).
    Broken(Broken),
    /// A local file or stream failed.
    Local(Arc<io::Error>),
    /// The subsystem could not be started.
    Open(Arc<TunnelError>),
    /// The request could not be made (nothing was sent).
    InvalidInput(&'static str),
    /// The server does not support the extension this needs.
    Unsupported(&'static str),
    /// A listing passed this many entries (a server that never ends one).
    TooLong(usize),
}

/// Why a session ended; kept, to say to every later operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Broken {
    /// The server broke the protocol (escaped when shown).
    Protocol(String),
    /// The channel ended: the server closed it, or the SSH session ended.
    ChannelEnded(String),
    /// The `Sftp` (every clone) was dropped.
    Dropped,
}

impl From<Malformed> for Broken {
    fn from(m: Malformed) -> Self {
        Broken::Protocol(m.0)
    }
}

impl SftpError {
    pub(crate) fn new(op: &'static str, path: Option<&str>, kind: Kind) -> Self {
        SftpError {
            op,
            path: path.map(str::to_owned),
            kind,
        }
    }

    /// A local file's failure in `op` on `path`.
    pub(crate) fn local(op: &'static str, path: &str, e: io::Error) -> Self {
        SftpError::new(op, Some(path), Kind::Local(Arc::new(e)))
    }

    pub(crate) fn with_path(mut self, path: &str) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_owned());
        }
        self
    }

    pub(crate) fn with_op(mut self, op: &'static str) -> Self {
        self.op = op;
        self
    }

    /// The operation that failed: `open`, `put`, `get`, `stat`, `read_dir`...
    pub fn operation(&self) -> &str {
        self.op
    }

    /// The remote path it was about, as given.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The SFTP status code the server answered with (`SSH_FX_*`: 2 for no
    /// such file, 3 for permission denied, 4 for failure), if it did.
    pub fn status(&self) -> Option<u32> {
        match &self.kind {
            Kind::Status(s) => Some(s.code),
            _ => None,
        }
    }

    /// The server's text for its status, if it sent one, as sent: escape
    /// it before showing it on a terminal (this error's `Display` does).
    pub fn status_message(&self) -> Option<&str> {
        match &self.kind {
            Kind::Status(s) if !s.message.is_empty() => Some(&s.message),
            _ => None,
        }
    }

    /// True if the file does not exist (`SSH_FX_NO_SUCH_FILE`).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(codec::FX_NO_SUCH_FILE)
    }

    /// True if the server refused for want of permission.
    pub fn is_permission_denied(&self) -> bool {
        self.status() == Some(codec::FX_PERMISSION_DENIED)
    }

    /// True if a deadline passed: the operation's, a transfer's, the
    /// stall timeout, or the channel's open.
    pub fn is_timeout(&self) -> bool {
        match &self.kind {
            Kind::Timeout(_) | Kind::Stalled(_) => true,
            Kind::Open(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// True if the session can no longer be used: the server broke the
    /// protocol, closed the channel, or the SSH session ended. Open a new
    /// one.
    pub fn is_closed(&self) -> bool {
        matches!(&self.kind, Kind::Broken(_))
            || matches!(&self.kind, Kind::Open(e) if e.is_closed())
    }

    /// True if the server broke the protocol (a malformed or oversized
    /// packet, a reply to nothing asked): the session is closed.
    pub fn is_protocol(&self) -> bool {
        matches!(&self.kind, Kind::Broken(Broken::Protocol(_)))
    }

    /// True if the local side failed: reading the source or writing the
    /// destination of a transfer.
    pub fn is_local(&self) -> bool {
        matches!(&self.kind, Kind::Local(_))
    }

    /// True if the server does not support what was asked (an OpenSSH
    /// extension, or `SSH_FX_OP_UNSUPPORTED`).
    pub fn is_unsupported(&self) -> bool {
        matches!(&self.kind, Kind::Unsupported(_))
            || self.status() == Some(codec::FX_OP_UNSUPPORTED)
    }

    /// True if the input was refused before anything was sent (a path
    /// with a NUL byte, or over 64 KiB).
    pub fn is_invalid_input(&self) -> bool {
        matches!(&self.kind, Kind::InvalidInput(_))
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sftp {}", self.op)?;
        if let Some(path) = &self.path {
            write!(f, " {}", PeerText::new(path))?;
        }
        f.write_str(": ")?;
        match &self.kind {
            Kind::Status(s) => {
                write!(f, "{} ({})", codec::status_name(s.code), s.code)?;
                if !s.message.is_empty() {
                    write!(f, ": {}", PeerText::new(&s.message))?;
                }
                Ok(())
            }
            Kind::Timeout(t) => write!(f, "timed out after {:.2}s", t.as_secs_f64()),
            Kind::Stalled(t) => {
                write!(f, "no progress for {:.2}s (stall timeout)", t.as_secs_f64())
            }
            Kind::Broken(Broken::Protocol(why)) => {
                write!(f, "the server broke the protocol: {}", PeerText::new(why))
            }
            Kind::Broken(Broken::ChannelEnded(why)) => {
                write!(f, "the sftp channel ended: {}", PeerText::new(why))
            }
            Kind::Broken(Broken::Dropped) => f.write_str("the sftp session was closed"),
            Kind::Local(e) => write!(f, "local: {}", crate::text::fmt_io(e)),
            Kind::Open(e) => write!(f, "{e}"),
            Kind::InvalidInput(why) => write!(f, "invalid input: {why}"),
            Kind::Unsupported(ext) => write!(f, "the server does not support {ext}"),
            Kind::TooLong(n) => write!(f, "the listing passed {n} entries"),
        }
    }
}

impl fmt::Display for SftpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, |f| self.describe(f))
    }
}

impl fmt::Debug for SftpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpError")
            .field("message", &self.to_string())
            .finish()
    }
}

impl std::error::Error for SftpError {}

impl From<SftpError> for io::Error {
    fn from(e: SftpError) -> io::Error {
        let kind = if e.is_timeout() {
            io::ErrorKind::TimedOut
        } else if e.is_not_found() {
            io::ErrorKind::NotFound
        } else if e.is_permission_denied() {
            io::ErrorKind::PermissionDenied
        } else if e.is_closed() {
            io::ErrorKind::ConnectionAborted
        } else if let Kind::Local(local) = &e.kind {
            local.kind()
        } else if e.is_invalid_input() {
            io::ErrorKind::InvalidInput
        } else if e.is_unsupported() {
            io::ErrorKind::Unsupported
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
    fn is_small_send_sync_and_one_escaped_line() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<SftpError>();
        assert!(std::mem::size_of::<SftpError>() <= 80);
        let e = SftpError::new(
            "get",
            Some("/tmp/a\nb"),
            Kind::Status(Status {
                code: 2,
                message: "No such file\x1b[31m".into(),
            }),
        );
        let text = e.to_string();
        assert_eq!(
            text,
            "sftp get /tmp/a\\nb: SSH_FX_NO_SUCH_FILE (2): No such file\\u{1b}[31m"
        );
        assert!(e.is_not_found() && !e.is_timeout());
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotFound);
    }
}
