//! The TCP half of a dial: parsing the target, resolving it, and connecting
//! with keepalive, `TCP_USER_TIMEOUT` and `TCP_NODELAY` set before connect.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::error::ConnectAttempt;

/// A `host` and `port` to dial, parsed from what the caller gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: u16,
}

/// An address that cannot be dialed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?}: {reason}")]
pub struct InvalidTarget {
    input: String,
    reason: String,
}

impl InvalidTarget {
    /// The address as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl Target {
    /// The host name or IP address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn new(input: &str, host: &str, port: u16) -> Result<Target, InvalidTarget> {
        let invalid = |reason: String| InvalidTarget {
            input: input.to_owned(),
            reason,
        };
        if port == 0 {
            return Err(invalid("port 0 cannot be dialed".into()));
        }
        let host = host.trim();
        if host.is_empty() {
            return Err(invalid("empty host".into()));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '@')
        {
            return Err(invalid(format!("{host:?} is not a host name")));
        }
        Ok(Target {
            host: host.to_owned(),
            port,
        })
    }

    /// Parses `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
    /// The port defaults to 22.
    pub(crate) fn parse(s: &str) -> Result<Target, InvalidTarget> {
        let input = s;
        let invalid = |reason: String| InvalidTarget {
            input: input.to_owned(),
            reason,
        };
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Target::new(input, &ip.to_string(), 22);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("missing ']'".into()))?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid(format!("{host:?} is not an IPv6 address")))?;
            let port = match after {
                "" => 22,
                p => parse_port(
                    p.strip_prefix(':')
                        .ok_or_else(|| invalid("expected ':' after ']'".into()))?,
                )
                .map_err(invalid)?,
            };
            return Target::new(input, host, port);
        }
        match s.rsplit_once(':') {
            Some((host, port)) => Target::new(input, host, parse_port(port).map_err(invalid)?),
            None => Target::new(input, s, 22),
        }
    }

    /// `host:port`, with IPv6 addresses in brackets.
    pub(crate) fn display(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number"))
}

/// Things [`Dialer::dial`](crate::Dialer::dial) accepts as an address.
///
/// Implemented for `"host:port"` strings (`"host"` alone means port 22,
/// IPv6 literals go in brackets: `"[::1]:2222"`), [`SocketAddr`], and
/// `(host, port)` tuples.
pub trait ToTarget {
    /// Parses `self` into a [`Target`].
    ///
    /// # Errors
    ///
    /// [`InvalidTarget`], saying what is wrong with the address.
    fn to_target(&self) -> Result<Target, InvalidTarget>;
}

impl ToTarget for str {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        Target::parse(self)
    }
}

impl ToTarget for String {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        Target::parse(self)
    }
}

impl<T: ToTarget + ?Sized> ToTarget for &T {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        (**self).to_target()
    }
}

impl ToTarget for SocketAddr {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        Target::new(&self.to_string(), &self.ip().to_string(), self.port())
    }
}

impl ToTarget for (&str, u16) {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        let host = self.0.trim_start_matches('[').trim_end_matches(']');
        Target::new(&format!("{}:{}", self.0, self.1), host, self.1)
    }
}

impl ToTarget for (String, u16) {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        (self.0.as_str(), self.1).to_target()
    }
}

impl ToTarget for (IpAddr, u16) {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        SocketAddr::from(*self).to_target()
    }
}

impl ToTarget for Target {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        Ok(self.clone())
    }
}

/// Resolves the target; IP literals skip the resolver.
pub(crate) async fn resolve(target: &Target) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    Ok(tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .collect())
}

/// Socket options applied before each connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcpConfig {
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) keepalive_time: Option<Duration>,
    pub(crate) keepalive_interval: Option<Duration>,
    pub(crate) keepalive_retries: Option<u32>,
    /// `None`: derive from the keepalive settings.
    pub(crate) user_timeout: Option<Option<Duration>>,
    pub(crate) nodelay: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            connect_timeout: None,
            keepalive_time: Some(Duration::from_secs(15)),
            keepalive_interval: Some(Duration::from_secs(5)),
            keepalive_retries: Some(3),
            user_timeout: None,
            nodelay: true,
        }
    }
}

impl TcpConfig {
    /// The `TCP_USER_TIMEOUT` to set: the explicit one, or else as long as
    /// keepalive takes to give up (idle + interval × retries), so that data
    /// left unacknowledged by a vanished peer fails the connection no later
    /// than an idle one would.
    pub(crate) fn effective_user_timeout(&self) -> Option<Duration> {
        match self.user_timeout {
            Some(explicit) => explicit,
            None => {
                let idle = self.keepalive_time?;
                let interval = self.keepalive_interval.unwrap_or(idle);
                let retries = self.keepalive_retries.unwrap_or(9);
                Some(idle + interval * retries)
            }
        }
    }

    fn keepalive(&self) -> Option<TcpKeepalive> {
        let time = self.keepalive_time?;
        let ka = TcpKeepalive::new().with_time(time);
        #[cfg(not(any(target_os = "openbsd", target_os = "redox", target_os = "solaris")))]
        let ka = match self.keepalive_interval {
            Some(i) => ka.with_interval(i),
            None => ka,
        };
        #[cfg(not(any(
            target_os = "openbsd",
            target_os = "redox",
            target_os = "solaris",
            target_os = "windows"
        )))]
        let ka = match self.keepalive_retries {
            Some(r) => ka.with_retries(r),
            None => ka,
        };
        Some(ka)
    }

    /// Opens a socket for `addr` with every option set. Failing to open the
    /// socket is an error; failing to set a tuning option is a warning.
    fn socket(&self, addr: SocketAddr) -> io::Result<TcpSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        if let Some(ka) = self.keepalive() {
            if let Err(e) = socket.set_tcp_keepalive(&ka) {
                tracing::warn!(error = %e, "tcp keepalive could not be set");
            }
        }
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        if let Some(t) = self.effective_user_timeout() {
            if let Err(e) = socket.set_tcp_user_timeout(Some(t)) {
                tracing::warn!(error = %e, "TCP_USER_TIMEOUT could not be set");
            }
        }
        if let Err(e) = socket.set_tcp_nodelay(self.nodelay) {
            tracing::warn!(error = %e, "TCP_NODELAY could not be set");
        }
        Ok(TcpSocket::from_std_stream(socket.into()))
    }
}

/// Connects to each address in turn, each attempt bounded by
/// `min(connect_timeout, deadline)`. Returns every failed attempt when none
/// succeeds; an empty list means the deadline had passed before the first.
pub(crate) async fn connect(
    addrs: &[SocketAddr],
    config: &TcpConfig,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), Vec<ConnectAttempt>> {
    let mut failed = Vec::new();
    for &addr in addrs {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let attempt_deadline = match config.connect_timeout {
            Some(t) => deadline.min(crate::deadline::deadline_after(now, t)),
            None => deadline,
        };
        tracing::debug!(%addr, "connecting");
        let result = match config.socket(addr) {
            Ok(socket) => {
                match tokio::time::timeout_at(attempt_deadline, socket.connect(addr)).await {
                    Ok(r) => r,
                    Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(stream) => return Ok((stream, addr)),
            Err(error) => {
                tracing::trace!(%addr, %error, "connect attempt failed");
                failed.push(ConnectAttempt { addr, error });
            }
        }
    }
    Err(failed)
}

/// Reads back the options this module sets, from a live socket. For tests
/// and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_KEEPALIVE`.
    pub keepalive: bool,
    /// `TCP_KEEPIDLE` (`TCP_KEEPALIVE` on macOS).
    pub keepalive_time: Option<Duration>,
    /// `TCP_KEEPINTVL`.
    pub keepalive_interval: Option<Duration>,
    /// `TCP_KEEPCNT`.
    pub keepalive_retries: Option<u32>,
    /// `TCP_USER_TIMEOUT`; `None` where the platform has no such option or it is off.
    pub user_timeout: Option<Duration>,
    /// `TCP_NODELAY`.
    pub nodelay: bool,
}

impl SocketOptions {
    /// Reads the options from any socket.
    ///
    /// # Errors
    ///
    /// The `getsockopt` error, if the socket is not a TCP socket or is closed.
    #[cfg(unix)]
    pub fn read<S: std::os::fd::AsFd>(socket: &S) -> io::Result<SocketOptions> {
        let s = SockRef::from(socket);
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        let user_timeout = s.tcp_user_timeout()?;
        #[cfg(not(any(target_os = "android", target_os = "fuchsia", target_os = "linux")))]
        let user_timeout = None;
        Ok(SocketOptions {
            keepalive: s.keepalive()?,
            keepalive_time: s.tcp_keepalive_time().ok(),
            keepalive_interval: s.tcp_keepalive_interval().ok(),
            keepalive_retries: s.tcp_keepalive_retries().ok(),
            user_timeout,
            nodelay: s.tcp_nodelay()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let t = |s: &str| Target::parse(s).map(|t| (t.host, t.port)).ok();
        assert_eq!(t("host:2222"), Some(("host".into(), 2222)));
        assert_eq!(t("host"), Some(("host".into(), 22)));
        assert_eq!(t("10.0.0.7:22"), Some(("10.0.0.7".into(), 22)));
        assert_eq!(t("[::1]:2222"), Some(("::1".into(), 2222)));
        assert_eq!(t("::1"), Some(("::1".into(), 22)));
        assert_eq!(t("[::1]"), Some(("::1".into(), 22)));
    }

    #[test]
    fn rejects_bad_addresses_with_a_reason() {
        for bad in [
            "",
            ":22",
            "host:0",
            "host:",
            "host:99999",
            "host:x",
            "[::1",
            "[nothost]:22",
            "a b:22",
            "user@host:22",
        ] {
            let err = Target::parse(bad).expect_err(bad);
            assert_eq!(err.input(), bad);
            assert!(!err.reason().is_empty(), "{bad}");
        }
        assert!(("h", 0).to_target().is_err());
    }

    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn each_address_gets_its_own_budget_and_keeps_its_error() {
        use crate::testing::{MisbehavingServer, Mode};
        let hole = MisbehavingServer::start(Mode::BlackHole).unwrap();
        let refusing = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = TcpConfig {
            connect_timeout: Some(Duration::from_millis(200)),
            ..TcpConfig::default()
        };
        let start = Instant::now();
        let deadline = start + Duration::from_secs(5);
        let attempts = connect(&[hole.addr(), refusing], &config, deadline)
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].addr, hole.addr());
        assert_eq!(attempts[0].error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(attempts[1].addr, refusing);
        assert_eq!(attempts[1].error.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn user_timeout_follows_keepalive_unless_set() {
        let mut c = TcpConfig::default();
        assert_eq!(c.effective_user_timeout(), Some(Duration::from_secs(30)));
        c.keepalive_time = None;
        assert_eq!(c.effective_user_timeout(), None);
        c.user_timeout = Some(Some(Duration::from_secs(7)));
        assert_eq!(c.effective_user_timeout(), Some(Duration::from_secs(7)));
    }
}
