//! Reading back the socket options a dial sets.

use std::io;
use std::time::Duration;

use socket2::SockRef;

/// The TCP options a dial sets, read back from a live socket: to check in
/// a test what a [`Dialer`](crate::Dialer) configured.
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
