//! Why a pooled request failed.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::error::DialError;
use crate::process::ExecError;
use crate::text::write_escaped;

/// Why a [`Pool`](super::Pool) request failed: no connection could be had
/// (the dial failed, the host's circuit is open, the wait timed out, too
/// many were waiting, the pool is closed), or the command failed.
///
/// The message is one line of printable ASCII that names the destination
/// and shows the cause, so [`source`](std::error::Error::source) returns
/// `None`; [`dial_error`](Self::dial_error) and
/// [`exec_error`](Self::exec_error) give the underlying error. Every request
/// that waited on the same failed dial gets the same [`DialError`].
pub struct PoolError {
    dest: String,
    elapsed: Duration,
    kind: Box<Kind>,
}

pub(super) enum Kind {
    /// The dial this request waited on failed.
    Dial(Arc<DialError>),
    /// The host failed `failures` dials in a row.
    CircuitOpen {
        failures: u32,
        retry_after: Duration,
        last: Option<Arc<DialError>>,
    },
    /// The deadline passed while waiting.
    Timeout(Waited),
    /// As many requests were already waiting for the host.
    Busy(usize),
    /// The pool was closed.
    Closed,
    Exec(ExecError),
    /// No connection to the pool's jump host could be had.
    Jump(Arc<PoolError>),
}

/// Why a dial made no connection: shared by every request that waited on it.
#[derive(Clone)]
pub(super) enum DialFailure {
    Dial(Arc<DialError>),
    Jump(Arc<PoolError>),
}

impl DialFailure {
    pub(super) fn kind(&self) -> Kind {
        match self {
            DialFailure::Dial(e) => Kind::Dial(e.clone()),
            DialFailure::Jump(e) => Kind::Jump(e.clone()),
        }
    }

    pub(super) fn dial_error(&self) -> Option<Arc<DialError>> {
        match self {
            DialFailure::Dial(e) => Some(e.clone()),
            DialFailure::Jump(_) => None,
        }
    }
}

impl fmt::Display for DialFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialFailure::Dial(e) => e.fmt(f),
            DialFailure::Jump(e) => e.fmt(f),
        }
    }
}

/// What a request that timed out was waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waited {
    /// A session slot on the host's connections (all at their limit, and
    /// no more connections allowed).
    Slot,
    /// A dial in progress.
    Dial,
    /// Room under the pool's `max_connections`.
    Room,
}

impl PoolError {
    pub(super) fn new(dest: String, kind: Kind, elapsed: Duration) -> Self {
        PoolError {
            dest,
            elapsed,
            kind: Box::new(kind),
        }
    }

    /// True if a deadline passed: the request's while it waited for a
    /// connection or a session slot, the dial's, or the command's.
    pub fn is_timeout(&self) -> bool {
        match &*self.kind {
            Kind::Timeout(_) => true,
            Kind::Dial(e) => e.is_timeout(),
            Kind::Exec(e) => e.is_timeout(),
            Kind::Jump(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// True if the host's circuit is open (or, through the pool's
    /// [`jump_host`](super::PoolBuilder::jump_host), the jump host's): its
    /// last dials failed, and the request failed at once without a dial. See
    /// [`retry_after`](Self::retry_after).
    pub fn is_circuit_open(&self) -> bool {
        match &*self.kind {
            Kind::CircuitOpen { .. } => true,
            Kind::Jump(e) => e.is_circuit_open(),
            _ => false,
        }
    }

    /// For an open circuit, how long until the host is tried again (one
    /// request then probes it).
    pub fn retry_after(&self) -> Option<Duration> {
        match &*self.kind {
            Kind::CircuitOpen { retry_after, .. } => Some(*retry_after),
            Kind::Jump(e) => e.retry_after(),
            _ => None,
        }
    }

    /// True if the host already had
    /// [`max_waiters_per_host`](super::PoolBuilder::max_waiters_per_host)
    /// requests waiting: this one failed at once.
    pub fn is_busy(&self) -> bool {
        matches!(&*self.kind, Kind::Busy(_))
    }

    /// True if the pool was [closed](super::Pool::close).
    pub fn is_pool_closed(&self) -> bool {
        matches!(&*self.kind, Kind::Closed)
    }

    /// True if trying again later may succeed: an open circuit, a busy
    /// host, a wait that timed out, or a dial failure another try may cure
    /// ([`DialError::is_retriable`]). A command that
    /// failed once it may have started is not.
    pub fn is_retriable(&self) -> bool {
        match &*self.kind {
            Kind::CircuitOpen { .. } | Kind::Busy(_) | Kind::Timeout(_) => true,
            Kind::Dial(e) => e.is_retriable(),
            Kind::Jump(e) => e.is_retriable(),
            Kind::Closed | Kind::Exec(_) => false,
        }
    }

    /// The dial's error, if the request failed because a dial did (for an
    /// open circuit, the last dial's).
    pub fn dial_error(&self) -> Option<&DialError> {
        match &*self.kind {
            Kind::Dial(e) => Some(e),
            Kind::CircuitOpen { last, .. } => last.as_deref(),
            Kind::Jump(e) => e.dial_error(),
            _ => None,
        }
    }

    /// The command's error, if a connection was had and the command failed.
    pub fn exec_error(&self) -> Option<&ExecError> {
        match &*self.kind {
            Kind::Exec(e) => Some(e),
            _ => None,
        }
    }

    /// The destination, as `[user@]host:port`.
    pub fn destination(&self) -> &str {
        &self.dest
    }

    /// Time from the request to the failure.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool {}: ", self.dest)?;
        let secs = self.elapsed.as_secs_f64();
        match &*self.kind {
            Kind::Dial(e) => write!(f, "{e}"),
            Kind::CircuitOpen {
                failures,
                retry_after,
                last,
            } => {
                write!(
                    f,
                    "circuit open after {failures} failed dials in a row, next try in {:.2}s",
                    retry_after.as_secs_f64()
                )?;
                match last {
                    Some(e) => write!(f, " (last: {e})"),
                    None => Ok(()),
                }
            }
            Kind::Timeout(Waited::Slot) => write!(
                f,
                "timed out after {secs:.2}s waiting for a session slot (every connection at its limit)"
            ),
            Kind::Timeout(Waited::Dial) => {
                write!(f, "timed out after {secs:.2}s waiting for the dial in progress")
            }
            Kind::Timeout(Waited::Room) => write!(
                f,
                "timed out after {secs:.2}s waiting for room under the pool's max_connections"
            ),
            Kind::Busy(n) => write!(
                f,
                "{n} requests already waiting for this host (max_waiters_per_host)"
            ),
            Kind::Closed => f.write_str("the pool is closed"),
            Kind::Exec(e) => write!(f, "{e}"),
            Kind::Jump(e) => write!(f, "through the jump host: {e}"),
        }
    }
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, |f| self.describe(f))
    }
}

impl fmt::Debug for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolError")
            .field("message", &self.to_string())
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

impl std::error::Error for PoolError {}

impl From<PoolError> for io::Error {
    fn from(e: PoolError) -> io::Error {
        let kind = if e.is_timeout() {
            io::ErrorKind::TimedOut
        } else if e.is_circuit_open() || e.is_busy() {
            io::ErrorKind::WouldBlock
        } else if e.is_pool_closed() {
            io::ErrorKind::NotConnected
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
    fn pool_errors_are_send_sync_and_small() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<PoolError>();
        assert!(std::mem::size_of::<PoolError>() <= 48);
    }

    #[test]
    fn an_open_circuit_says_so_and_is_retriable() {
        let e = PoolError::new(
            "u@h:22".into(),
            Kind::CircuitOpen {
                failures: 3,
                retry_after: Duration::from_millis(2400),
                last: None,
            },
            Duration::ZERO,
        );
        assert_eq!(
            e.to_string(),
            "pool u@h:22: circuit open after 3 failed dials in a row, next try in 2.40s"
        );
        assert!(e.is_circuit_open() && e.is_retriable() && !e.is_timeout());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(2400)));
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_timeout_names_what_it_waited_for() {
        let e = PoolError::new(
            "h:22".into(),
            Kind::Timeout(Waited::Slot),
            Duration::from_secs(2),
        );
        assert!(e.is_timeout() && e.is_retriable());
        assert!(e.to_string().contains("waiting for a session slot"), "{e}");
        let shown = PoolError::new("a\x1bb".into(), Kind::Closed, Duration::ZERO).to_string();
        assert!(
            shown.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
            "{shown}"
        );
    }
}
