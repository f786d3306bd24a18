//! The TCP half of a dial: resolving the target and connecting
//! with keepalive, `TCP_USER_TIMEOUT` and `TCP_NODELAY` set before connect.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
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
    /// Happy Eyeballs' "Connection Attempt Delay".
    pub(crate) attempt_delay: Duration,
    pub(crate) family: AddressFamily,
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
            attempt_delay: Duration::from_millis(250),
            family: AddressFamily::Any,
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

/// Which address families a dial uses (OpenSSH's `AddressFamily`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AddressFamily {
    /// IPv4 and IPv6, interleaved.
    #[default]
    Any,
    /// IPv4 only.
    Inet,
    /// IPv6 only.
    Inet6,
}

/// The addresses to try, in Happy Eyeballs order (RFC 8305 §4): the
/// resolver's order within each family, the families alternating, starting
/// with the family of the first address.
pub(crate) fn attempt_order(addrs: &[SocketAddr], family: AddressFamily) -> Vec<SocketAddr> {
    let keep = |a: &&SocketAddr| match family {
        AddressFamily::Any => true,
        AddressFamily::Inet => a.is_ipv4(),
        AddressFamily::Inet6 => a.is_ipv6(),
    };
    let first_v6 = addrs.iter().find(keep).is_some_and(SocketAddr::is_ipv6);
    let (mut v6, mut v4): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().filter(keep).partition(|a| a.is_ipv6());
    let (mut first, mut second) = if first_v6 {
        (v6.drain(..), v4.drain(..))
    } else {
        (v4.drain(..), v6.drain(..))
    };
    let mut ordered = Vec::with_capacity(addrs.len());
    loop {
        match (first.next(), second.next()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

type Attempting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// Connects with Happy Eyeballs (RFC 8305): the next address is tried
/// `config.attempt_delay` after the previous attempt started, or as soon as
/// it fails; the first to connect wins and the others are closed at once.
/// Each attempt is bounded by `min(connect_timeout, deadline)`. Returns every
/// failed attempt, in the order they failed, when none succeeds (attempts
/// still under way at the deadline count as timed out); an empty list means
/// the deadline had passed before the first.
pub(crate) async fn connect(
    addrs: &[SocketAddr],
    config: &TcpConfig,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), Vec<ConnectAttempt>> {
    let mut failed = Vec::new();
    let mut queue = addrs.iter().copied();
    let mut pending: Vec<(SocketAddr, Attempting)> = Vec::new();
    // The next attempt starts when the stagger fires, or at once when `now`
    // is set: a timer set to now would still wait for the timer wheel's
    // next tick (a millisecond on every dial).
    let mut now = true;
    let stagger = tokio::time::sleep_until(deadline);
    tokio::pin!(stagger);
    let expiry = tokio::time::sleep_until(deadline);
    tokio::pin!(expiry);
    let mut more = addrs.len();
    enum Event {
        Done(usize, io::Result<TcpStream>),
        Next,
        Deadline,
    }
    loop {
        if more == 0 && pending.is_empty() {
            return Err(failed);
        }
        let event = std::future::poll_fn(|cx| {
            for (i, (_, attempt)) in pending.iter_mut().enumerate() {
                if let Poll::Ready(result) = attempt.as_mut().poll(cx) {
                    return Poll::Ready(Event::Done(i, result));
                }
            }
            if more > 0 && (now || stagger.as_mut().poll(cx).is_ready()) {
                return Poll::Ready(Event::Next);
            }
            if expiry.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Deadline);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Done(i, Ok(stream)) => {
                let (addr, _) = pending.swap_remove(i);
                // The losers' sockets close as they drop.
                return Ok((stream, addr));
            }
            Event::Done(i, Err(error)) => {
                let (addr, _) = pending.remove(i);
                tracing::trace!(%addr, %error, "connect attempt failed");
                failed.push(ConnectAttempt { addr, error });
                // The next address at once.
                now = true;
            }
            Event::Next => {
                let Some(addr) = queue.next() else {
                    more = 0;
                    continue;
                };
                more -= 1;
                now = false;
                tracing::debug!(%addr, "connecting");
                pending.push((addr, attempt(addr, config, deadline)));
                let next = crate::deadline::deadline_after(Instant::now(), config.attempt_delay);
                stagger.as_mut().reset(next);
            }
            Event::Deadline => {
                for (addr, _) in pending {
                    failed.push(ConnectAttempt {
                        addr,
                        error: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                    });
                }
                return Err(failed);
            }
        }
    }
}

/// One attempt: a socket with every option set, connected within
/// `min(connect_timeout, deadline)`.
fn attempt(addr: SocketAddr, config: &TcpConfig, deadline: Instant) -> Attempting {
    let until = match config.connect_timeout {
        Some(t) => deadline.min(crate::deadline::deadline_after(Instant::now(), t)),
        None => deadline,
    };
    let socket = config.socket(addr);
    Box::pin(async move {
        let socket = socket?;
        match tokio::time::timeout_at(until, socket.connect(addr)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    })
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
    fn families_interleave_starting_with_the_first() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let addrs = [
            a("[::1]:22"),
            a("[::2]:22"),
            a("[::3]:22"),
            a("10.0.0.1:22"),
            a("10.0.0.2:22"),
        ];
        assert_eq!(
            attempt_order(&addrs, AddressFamily::Any),
            [addrs[0], addrs[3], addrs[1], addrs[4], addrs[2]]
        );
        let v4_first = [addrs[3], addrs[0], addrs[4]];
        assert_eq!(
            attempt_order(&v4_first, AddressFamily::Any),
            [addrs[3], addrs[0], addrs[4]]
        );
        assert_eq!(
            attempt_order(&addrs, AddressFamily::Inet),
            [addrs[3], addrs[4]]
        );
        assert_eq!(attempt_order(&addrs, AddressFamily::Inet6), addrs[..3]);
        assert!(attempt_order(&addrs[..3], AddressFamily::Inet).is_empty());
    }

    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn a_black_holed_first_address_costs_the_attempt_delay_not_the_deadline() {
        use crate::testing::{MisbehavingServer, Mode};
        let hole = MisbehavingServer::start(Mode::BlackHole).unwrap();
        let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = TcpConfig::default();
        let start = Instant::now();
        let (_stream, addr) = connect(
            &[hole.addr(), good.local_addr().unwrap()],
            &config,
            start + Duration::from_secs(5),
        )
        .await
        .unwrap();
        let took = start.elapsed();
        assert_eq!(addr, good.local_addr().unwrap());
        assert!(
            took >= Duration::from_millis(240) && took < Duration::from_secs(1),
            "{took:?}"
        );
    }

    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn when_every_attempt_fails_each_keeps_its_error() {
        use crate::testing::{MisbehavingServer, Mode};
        let hole = MisbehavingServer::start(Mode::BlackHole).unwrap();
        let refusing = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let start = Instant::now();
        let attempts = connect(
            &[hole.addr(), refusing],
            &TcpConfig::default(),
            start + Duration::from_millis(800),
        )
        .await
        .unwrap_err();
        let took = start.elapsed();
        // The refusal comes at once after the delay; the hole at the deadline.
        assert!(
            took >= Duration::from_millis(790) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].addr, refusing);
        assert_eq!(attempts[0].error.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(attempts[1].addr, hole.addr());
        assert_eq!(attempts[1].error.kind(), io::ErrorKind::TimedOut);
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
