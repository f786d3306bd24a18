//! Tunnels through the server, bounded like everything else: one connection
//! as a stream (`ssh -W`), local forwarding (`ssh -L`), dynamic forwarding
//! (`ssh -D`, SOCKS 4, 4a and 5) and remote forwarding (`ssh -R`).
//!
//! Each tunnel is a channel owned by the channel task (`crate::channel`),
//! so what holds for commands holds here: the open is bounded by a deadline,
//! an open the server confirms after the caller gave up is closed then, a
//! dropped stream closes its channel, and what the far end sends waits in a
//! bounded buffer (see [`Tunnel`]).

mod error;
mod local;
mod remote;
mod socks;
mod tunnel;

use std::net::SocketAddr;
use std::time::Duration;

pub use error::TunnelError;
pub use local::LocalForward;
pub use remote::RemoteForward;
pub use tunnel::Tunnel;

use crate::channel::{Failure, Open};
use crate::Client;

/// How long a tunnel's channel may take to open when the dialer does not
/// say ([`DialerBuilder::open_timeout`](crate::DialerBuilder::open_timeout)).
pub(crate) const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a paused tunnel waits for its reader when the dialer does not
/// say ([`DialerBuilder::tunnel_stall_timeout`](crate::DialerBuilder::tunnel_stall_timeout)).
pub(crate) const DEFAULT_TUNNEL_STALL: Duration = Duration::from_secs(30);

/// Carries bytes both ways between a local connection and its tunnel,
/// until both have sent EOF (each EOF passed on as a half-close). In
/// pieces of 256 KiB: tokio's default of 8 KiB would make a bulk transfer
/// one write system call per 8 KiB.
async fn carry(
    tcp: &mut tokio::net::TcpStream,
    tunnel: &mut Tunnel,
) -> std::io::Result<(u64, u64)> {
    const PIECE: usize = 256 * 1024;
    tokio::io::copy_bidirectional_with_sizes(tcp, tunnel, PIECE, PIECE).await
}

/// Checks a name or path before it is sent: what an `ssh -W` target may be.
fn check_target(what: &str, target: &str) -> Result<(), TunnelError> {
    let why = if target.is_empty() {
        "it is empty"
    } else if target.len() > 255 {
        "it is longer than 255 bytes"
    } else if target.chars().any(char::is_control) {
        "it holds a control character"
    } else {
        return Ok(());
    };
    Err(TunnelError::channel(
        target,
        Failure::InvalidInput(format!("the {what} is not usable: {why}")),
        Duration::ZERO,
    ))
}

impl Client {
    /// Opens a connection from the server to `host:port`, as `ssh -W
    /// host:port` does: the server resolves the name and connects, and the
    /// connection is a [`Tunnel`] (a `direct-tcpip` channel).
    ///
    /// # Errors
    ///
    /// [`TunnelError::is_refused`] if the server does not forward for us
    /// (sshd's `AllowTcpForwarding no`: "administratively prohibited"),
    /// within one round trip; [`TunnelError::is_connect_failed`] if it could
    /// not connect to the target; [`TunnelError::is_timeout`] if the channel
    /// was not open within the dialer's
    /// [`open_timeout`](crate::DialerBuilder::open_timeout);
    /// [`TunnelError::is_invalid_input`] for an empty or too long host, or
    /// one with control characters; [`TunnelError::is_closed`] if the
    /// session is gone.
    ///
    /// # Cancellation
    ///
    /// Dropping the future closes the channel, or, if the server has not
    /// answered yet, closes it when the server does.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: &ssh_dial::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let mut redis = client.connect_tcp("127.0.0.1", 6379).await?;
    /// redis.write_all(b"PING\r\n").await?;
    /// let mut reply = [0u8; 7];
    /// redis.read_exact(&mut reply).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_tcp(&self, host: &str, port: u16) -> Result<Tunnel, TunnelError> {
        let target = format!("{host}:{port}");
        check_target("host", host)?;
        let open = Open::DirectTcpip {
            host: host.to_owned(),
            port: u32::from(port),
            originator: ("127.0.0.1".to_owned(), 0),
        };
        Tunnel::open(self, open, target).await
    }

    /// Opens a connection from the server to the Unix socket at `path` on
    /// the server (`direct-streamlocal@openssh.com`, as `ssh -W
    /// /path/to/socket` does with OpenSSH).
    ///
    /// # Errors
    ///
    /// As [`connect_tcp`](Self::connect_tcp).
    ///
    /// # Cancellation
    ///
    /// As [`connect_tcp`](Self::connect_tcp).
    pub async fn connect_unix(&self, path: &str) -> Result<Tunnel, TunnelError> {
        check_target("path", path)?;
        let open = Open::StreamLocal {
            path: path.to_owned(),
        };
        Tunnel::open(self, open, path.to_owned()).await
    }

    /// Starts the subsystem `name` (`sftp`, `netconf`) on a session channel
    /// and gives its input and output as a stream, within the dialer's
    /// [`open_timeout`](crate::DialerBuilder::open_timeout). The channel
    /// counts as a session ([`Client::sessions_in_use`]) until it closes.
    ///
    /// # Errors
    ///
    /// As [`connect_tcp`](Self::connect_tcp); a server without the
    /// subsystem refuses the request (the message says so).
    ///
    /// # Cancellation
    ///
    /// As [`connect_tcp`](Self::connect_tcp).
    pub async fn subsystem(&self, name: &str) -> Result<Tunnel, TunnelError> {
        check_target("subsystem", name)?;
        Tunnel::subsystem(self, name).await
    }

    /// Listens on `bind` (as `ssh -L bind:host:port` does) and forwards each
    /// connection to `host:port` from the server, in a tunnel of its own;
    /// at most 256 at once (more wait to be accepted). Dropping or
    /// [closing](LocalForward::close) the [`LocalForward`] stops it and
    /// closes every tunnel it opened.
    ///
    /// A connection whose tunnel fails to open is closed, and the failure
    /// counted and kept ([`LocalForward::last_failure`]), as `ssh` prints
    /// `open failed` and goes on.
    ///
    /// # Errors
    ///
    /// [`TunnelError::is_bind`] if `bind` cannot be listened on (OpenSSH's
    /// `ExitOnForwardFailure`); [`TunnelError::is_invalid_input`] for an
    /// unusable host.
    pub async fn forward_local(
        &self,
        bind: SocketAddr,
        host: &str,
        port: u16,
    ) -> Result<LocalForward, TunnelError> {
        check_target("host", host)?;
        LocalForward::start(
            self,
            bind,
            local::To::Fixed(host.to_owned(), u32::from(port)),
        )
        .await
    }

    /// Listens on `bind` as a SOCKS proxy (versions 4, 4a and 5, no
    /// authentication, CONNECT only), as `ssh -D bind` does: each
    /// connection asks for its target, reached from the server.
    ///
    /// # Errors
    ///
    /// [`TunnelError::is_bind`] if `bind` cannot be listened on.
    pub async fn forward_dynamic(&self, bind: SocketAddr) -> Result<LocalForward, TunnelError> {
        LocalForward::start(self, bind, local::To::Socks).await
    }

    /// Asks the server to listen on `address:port` (as `ssh -R` does;
    /// port 0: the server chooses, see [`RemoteForward::port`]); each
    /// connection it accepts comes to us as a [`Tunnel`], from
    /// [`RemoteForward::accept`], or carried to a local address by
    /// [`RemoteForward::connect_to`]. At most 16 wait to be accepted; the
    /// server's next ones are refused meanwhile.
    ///
    /// sshd binds `address` only with `GatewayPorts clientspecified`;
    /// otherwise it listens on its loopback address whatever is asked.
    ///
    /// # Errors
    ///
    /// [`TunnelError::is_refused`] if the server will not listen there
    /// (`AllowTcpForwarding no`, a port it may not bind);
    /// [`TunnelError::is_timeout`] if it did not answer within the
    /// dialer's [`open_timeout`](crate::DialerBuilder::open_timeout);
    /// [`TunnelError::is_invalid_input`] for an unusable address.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before the server answers leaves a forward the
    /// server may set up; it lasts until the session ends.
    pub async fn forward_remote(
        &self,
        address: &str,
        port: u16,
    ) -> Result<RemoteForward, TunnelError> {
        check_target("address", address)?;
        RemoteForward::start(self, address, port).await
    }
}
