//! The errors a dial or an exec can end with.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::host_keys::HostKeyFailure;
use crate::text::{fmt_io, Escaping, PeerText};

/// The step of a dial that was under way when it failed.
///
/// Shown in messages as `resolve`, `connect`, `version-exchange`,
/// `key-exchange` and `auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Parsing the address and resolving the host name.
    Resolve,
    /// The TCP connect, to each resolved address in turn.
    Connect,
    /// Sending our SSH version line and reading the server's.
    VersionExchange,
    /// Key exchange, including the host key check.
    KeyExchange,
    /// User authentication, including loading the private key.
    Auth,
}

impl Phase {
    /// The phase's name as used in messages, e.g. `"key-exchange"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::VersionExchange => "version-exchange",
            Phase::KeyExchange => "key-exchange",
            Phase::Auth => "auth",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed TCP connect attempt.
#[derive(Debug)]
pub(crate) struct ConnectAttempt {
    pub(crate) addr: SocketAddr,
    pub(crate) error: io::Error,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Kind {
    /// The dial's total deadline passed; in the connect phase, with the
    /// attempts that failed before it did.
    #[error("timed out")]
    TimedOut(Vec<ConnectAttempt>),
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// A user name `ssh` would refuse on its command line.
    #[error("{0}")]
    InvalidUser(String),
    #[error("cannot resolve host: {}", PeerText::new(&fmt_io(.0)))]
    Resolve(io::Error),
    #[error("host resolved to no addresses (of the address family asked for)")]
    NoAddresses,
    #[error(
        "resolver busy: {max} lookups already in flight (DialerBuilder::max_concurrent_lookups)"
    )]
    ResolverBusy { max: usize },
    #[error("{}", fmt_attempts(.0))]
    Connect(Vec<ConnectAttempt>),
    #[error("{0}")]
    HostKey(HostKeyFailure),
    #[error("authentication rejected for user {user:?} (tried {tried}; server allows {allowed})")]
    AuthRejected {
        user: String,
        tried: String,
        allowed: String,
    },
    #[error("no credentials to offer: {0}")]
    NoCredentials(String),
    #[error("cannot load private key {path}: {}", PeerText::new(&.cause.to_string()))]
    Key {
        path: String,
        cause: russh::keys::Error,
    },
    #[error("cannot use certificate {path}: {why}")]
    Certificate { path: String, why: String },
    #[error("connection closed by peer")]
    Closed,
    #[error("ssh_config: {0}")]
    Config(String),
    #[error("{0}")]
    Unsupported(String),
    /// A `ProxyCommand` that may not run (a bad token, a name a shell
    /// would read as more than a name), with why.
    #[error("{0}")]
    ProxyCommandRefused(String),
    #[error("cannot run ProxyCommand: {}", fmt_io(.0))]
    ProxyCommandSpawn(io::Error),
    #[error("the jump host did not open a channel to the target: {}", PeerText::new(&.0.to_string()))]
    ChannelOpen(russh::Error),
    #[error("{}", PeerText::new(&fmt_io(.0)))]
    Io(io::Error),
    #[error("ssh protocol error: {}", PeerText::new(&.0.to_string()))]
    Protocol(russh::Error),
}

impl Kind {
    /// A russh error from the handshake or auth, as one of our kinds.
    pub(crate) fn from_russh(e: russh::Error) -> Kind {
        match e {
            russh::Error::Disconnect | russh::Error::HUP => Kind::Closed,
            russh::Error::IO(io) if io.kind() == io::ErrorKind::UnexpectedEof => Kind::Closed,
            russh::Error::IO(io) => Kind::Io(io),
            other => Kind::Protocol(other),
        }
    }
}

fn fmt_attempts(attempts: &[ConnectAttempt]) -> String {
    let all: Vec<String> = attempts
        .iter()
        .map(|a| format!("{}: {}", a.addr, fmt_io(&a.error)))
        .collect();
    all.join("; ")
}

/// Why a dial failed: the phase, the address, the time it took, and the cause.
///
/// The `Display` form is one lowercase line, for example
/// `dial 10.0.0.7:22: key-exchange timed out after 2.00s` or
/// `dial 127.0.0.1:2222: connect: 127.0.0.1:2222: connection refused`.
/// Passwords and passphrases never appear in it.
///
/// Use the predicates to tell causes apart. The message shows its cause
/// (escaped), so [`source`](std::error::Error::source) returns `None`:
/// an error reporter that walks the chain (anyhow, eyre) never prints text
/// from the peer unescaped, nor the cause twice.
pub struct DialError {
    inner: Box<Inner>,
}

struct Inner {
    target: String,
    /// The jump hosts the dial went through, as `a:22,b:22`.
    via: Option<String>,
    /// The jump host that failed, if the target was not reached.
    jump_host: Option<String>,
    phase: Phase,
    kind: Kind,
    remote_addr: Option<SocketAddr>,
    elapsed: Duration,
    /// The last of a `ProxyCommand`'s stderr, if the connection that
    /// failed was carried by one.
    proxy_stderr: Option<String>,
}

impl DialError {
    pub(crate) fn new(
        target: &str,
        phase: Phase,
        kind: Kind,
        remote_addr: Option<SocketAddr>,
        elapsed: Duration,
    ) -> Self {
        DialError {
            inner: Box::new(Inner {
                target: target.to_owned(),
                via: None,
                jump_host: None,
                phase,
                kind,
                remote_addr,
                elapsed,
                proxy_stderr: None,
            }),
        }
    }

    /// The dial went through jump hosts (`via`); `failed` is the one
    /// that failed, if the failure was not at the target.
    pub(crate) fn through(mut self, via: Option<&str>, failed: Option<&str>) -> Self {
        self.inner.via = via.map(str::to_owned);
        self.inner.jump_host = failed.map(str::to_owned);
        self
    }

    /// With the last of the `ProxyCommand`'s stderr that carried the
    /// connection that failed (nothing if it wrote none).
    pub(crate) fn with_proxy_stderr(mut self, text: String) -> Self {
        if !text.is_empty() {
            self.inner.proxy_stderr = Some(text);
        }
        self
    }

    /// What the `ProxyCommand` that carried the failed connection last
    /// wrote to its stderr (at most its last 2 KiB, as UTF-8 with
    /// U+FFFD for what is not), if it wrote anything: an `ssh -W` or
    /// `aws ssm` saying why it could not connect. The
    /// [`Display`](std::fmt::Display) form shows it escaped, on the same
    /// line.
    pub fn proxy_command_stderr(&self) -> Option<&str> {
        self.inner.proxy_stderr.as_deref()
    }

    /// The jump host (`host:port`) the dial failed at, if it failed before
    /// reaching the target through its jump hosts. The
    /// [`phase`](Self::phase) is then that jump host's.
    pub fn jump_host(&self) -> Option<&str> {
        self.inner.jump_host.as_deref()
    }

    /// The phase the dial was in when it failed.
    pub fn phase(&self) -> Phase {
        self.inner.phase
    }

    /// True if the dial ran out of time: the total deadline passed, or every
    /// TCP connect attempt hit its `connect_timeout`.
    pub fn is_timeout(&self) -> bool {
        match &self.inner.kind {
            Kind::TimedOut(_) => true,
            Kind::Connect(attempts) => {
                !attempts.is_empty()
                    && attempts
                        .iter()
                        .all(|a| a.error.kind() == io::ErrorKind::TimedOut)
            }
            _ => false,
        }
    }

    /// True if the failure happened while connecting over TCP (including timeouts).
    pub fn is_connect(&self) -> bool {
        self.inner.phase == Phase::Connect
    }

    /// True if every TCP connect attempt was refused by the peer.
    pub fn is_refused(&self) -> bool {
        matches!(&self.inner.kind, Kind::Connect(a)
            if !a.is_empty() && a.iter().all(|a| a.error.kind() == io::ErrorKind::ConnectionRefused))
    }

    /// True if every lookup slot of the dialer was taken by lookups in
    /// flight (names whose DNS is slow or down), so this one was not
    /// started: another try may well succeed.
    pub fn is_resolver_busy(&self) -> bool {
        matches!(self.inner.kind, Kind::ResolverBusy { .. })
    }

    /// True if another attempt may cure this failure: a failed TCP connect
    /// (refused, timed out, reset, unreachable), a busy resolver, a version
    /// exchange that timed out, a connection closed or reset during the
    /// handshake. Rejected credentials, host key failures and bad input are
    /// not. What the [fleet](crate::fleet)'s retries go by. (A
    /// [pool](crate::pool)'s circuit breaker counts every failed dial, a
    /// rejected login too: a host that keeps refusing is not dialed again
    /// for every request.)
    pub fn is_retriable(&self) -> bool {
        if self.is_resolver_busy() {
            return true;
        }
        match self.phase() {
            Phase::Connect => true,
            Phase::VersionExchange => self.is_timeout() || self.is_closed(),
            Phase::KeyExchange => self.is_closed(),
            _ => false,
        }
    }

    /// True if the address could not be parsed or the host not resolved.
    pub fn is_resolve(&self) -> bool {
        self.inner.phase == Phase::Resolve && !self.is_timeout()
    }

    /// True if the server's host key was not trusted: unknown, changed,
    /// revoked or not pinned. No credential was sent.
    pub fn is_host_key(&self) -> bool {
        matches!(self.inner.kind, Kind::HostKey(_))
    }

    /// True if the server offered a key other than the one on record for
    /// this host: the warning OpenSSH prints as "REMOTE HOST IDENTIFICATION
    /// HAS CHANGED".
    pub fn is_host_key_mismatch(&self) -> bool {
        matches!(&self.inner.kind, Kind::HostKey(f) if f.is_mismatch())
    }

    /// True if the server's key is marked `@revoked` in a known_hosts file.
    pub fn is_host_key_revoked(&self) -> bool {
        matches!(&self.inner.kind, Kind::HostKey(f) if f.is_revoked())
    }

    /// True if the server rejected the credentials.
    pub fn is_auth_rejected(&self) -> bool {
        matches!(self.inner.kind, Kind::AuthRejected { .. })
    }

    /// True if the peer spoke something other than SSH, or broke the protocol.
    pub fn is_protocol(&self) -> bool {
        matches!(self.inner.kind, Kind::Protocol(_))
    }

    /// True if the peer closed or reset the connection during the handshake.
    pub fn is_closed(&self) -> bool {
        match &self.inner.kind {
            Kind::Closed => true,
            Kind::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }

    /// True if the input was unusable: an address that does not parse, a
    /// user name or jump host `ssh` would refuse on its command line (a
    /// shell metacharacter, a control character, a leading `-`: such names
    /// could reach a shell through `Match exec`'s `%r` and `%h`), a private
    /// key that cannot be read or decrypted, a certificate that cannot be
    /// read or is not for its key, no credential at all to offer (say, an
    /// agent that is not running), or an ssh_config that cannot be resolved
    /// for the host.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::InvalidAddress(_)
                | Kind::InvalidUser(_)
                | Kind::Key { .. }
                | Kind::Certificate { .. }
                | Kind::NoCredentials(_)
                | Kind::Config(_)
                | Kind::Unsupported(_)
                | Kind::ProxyCommandRefused(_)
        )
    }

    /// The address as given to [`Dialer::dial`](crate::Dialer::dial), as `host:port`.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The socket address the dial was talking to, once there was one.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr
    }

    /// Time from the start of the dial to the failure.
    pub fn elapsed(&self) -> Duration {
        self.inner.elapsed
    }
}

impl fmt::Debug for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        write!(Escaping(f), "{:?}", Raw(self))
    }
}

/// `DialError`'s fields, before escaping.
struct Raw<'a>(&'a DialError);

impl fmt::Debug for Raw<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = self.0;
        f.debug_struct("DialError")
            .field("target", &error.inner.target)
            .field("via", &error.inner.via)
            .field("jump_host", &error.inner.jump_host)
            .field("phase", &error.inner.phase)
            .field("kind", &error.inner.kind)
            .field("remote_addr", &error.inner.remote_addr)
            .field("elapsed", &error.inner.elapsed)
            .field("proxy_stderr", &error.inner.proxy_stderr)
            .finish()
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        write!(Escaping(f), "{}", Line(self))
    }
}

/// `DialError`'s one line, before escaping.
struct Line<'a>(&'a DialError);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = self.0;
        let i = &error.inner;
        write!(f, "dial {}", i.target)?;
        if let Some(via) = &i.via {
            write!(f, " via {via}")?;
        }
        let shown = i.jump_host.as_deref().unwrap_or(&i.target);
        if let Some(hop) = &i.jump_host {
            write!(f, ": jump host {hop}")?;
        }
        match i.remote_addr {
            Some(addr) if !shown.contains(&addr.ip().to_string()) => write!(f, " ({addr})")?,
            _ => {}
        }
        if error.is_timeout() {
            write!(
                f,
                ": {} timed out after {:.2}s",
                i.phase,
                i.elapsed.as_secs_f64()
            )?;
            match &i.kind {
                Kind::TimedOut(attempts) | Kind::Connect(attempts) if attempts.len() > 1 => {
                    write!(f, " ({})", fmt_attempts(attempts))?
                }
                _ => {}
            }
        } else {
            write!(f, ": {}: {}", i.phase, i.kind)?;
        }
        if let Some(stderr) = &i.proxy_stderr {
            write!(f, " (ProxyCommand stderr: {stderr})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DialError {}

impl From<DialError> for io::Error {
    fn from(e: DialError) -> io::Error {
        let kind = if e.is_timeout() {
            io::ErrorKind::TimedOut
        } else if e.is_refused() {
            io::ErrorKind::ConnectionRefused
        } else if e.is_invalid_input() {
            io::ErrorKind::InvalidInput
        } else if e.is_auth_rejected() || e.is_host_key() {
            io::ErrorKind::PermissionDenied
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
    fn errors_are_send_sync_and_small() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<DialError>();
        assert_eq!(
            std::mem::size_of::<DialError>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn timeout_display_names_address_phase_and_elapsed() {
        let e = DialError::new(
            "10.0.0.7:22",
            Phase::KeyExchange,
            Kind::TimedOut(Vec::new()),
            Some("10.0.0.7:22".parse().unwrap()),
            Duration::from_millis(2003),
        );
        assert_eq!(
            e.to_string(),
            "dial 10.0.0.7:22: key-exchange timed out after 2.00s"
        );
        assert!(e.is_timeout());
        assert!(!e.is_connect());
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn connect_display_keeps_every_address() {
        let e = DialError::new(
            "db:22",
            Phase::Connect,
            Kind::Connect(vec![
                ConnectAttempt {
                    addr: "[::1]:22".parse().unwrap(),
                    error: io::ErrorKind::ConnectionRefused.into(),
                },
                ConnectAttempt {
                    addr: "127.0.0.1:22".parse().unwrap(),
                    error: io::ErrorKind::ConnectionRefused.into(),
                },
            ]),
            None,
            Duration::from_millis(3),
        );
        let s = e.to_string();
        assert!(s.starts_with("dial db:22: connect: [::1]:22: "), "{s}");
        assert!(s.contains("127.0.0.1:22"), "{s}");
        assert!(e.is_refused() && e.is_connect() && !e.is_timeout());
    }
}
