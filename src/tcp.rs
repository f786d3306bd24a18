//! The TCP half of a dial: resolving the target and connecting
//! with keepalive, `TCP_USER_TIMEOUT` and `TCP_NODELAY` set before connect.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::error::ConnectAttempt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
