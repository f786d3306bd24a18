//! Remote forwarding (`ssh -R`): the server listens, and each connection it
//! accepts comes to us as a tunnel.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::client::Msg;
use russh::Channel;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::TunnelError;
use super::tunnel::{Limits, Tunnel};
use crate::channel::{Closing, Failure, Open};
use crate::deadline::GRACE;
use crate::handshake::{ClientHandler, Inbound};
use crate::Client;

/// The most connections waiting to be accepted; the server's next ones
/// are refused until there is room. Each waits as a tunnel, its unread
/// bytes bounded as every tunnel's are.
const WAITING: usize = 16;

/// A remote forward, from [`Client::forward_remote`]: the server listens on
/// its address and port, and [`accept`](Self::accept) takes each
/// connection it accepts as a [`Tunnel`]. Dropping it (or
/// [closing](Self::close) it) asks the server to stop listening
/// (`cancel-tcpip-forward`) and closes the connections not yet accepted.
pub struct RemoteForward {
    address: String,
    port: u32,
    tunnels: mpsc::Receiver<Tunnel>,
    wrapping: JoinHandle<()>,
    handle: Arc<russh::client::Handle<ClientHandler>>,
    inbound: Inbound,
    cancelled: bool,
}

impl std::fmt::Debug for RemoteForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteForward")
            .field("address", &self.address)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl RemoteForward {
    pub(super) async fn start(
        client: &Client,
        address: &str,
        port: u16,
    ) -> Result<Self, TunnelError> {
        let target = format!("{address}:{port} on the server");
        let (handle, closing) = client.channel_parts();
        let start = Instant::now();
        // Registered before asking, so that no early connection is refused.
        // A few channels on their way to becoming tunnels, the rest
        // waiting as tunnels: WAITING in all (and the one being wrapped).
        let (raw_tx, raw_rx) = mpsc::channel(4);
        let request = handle.tcpip_forward(address, u32::from(port));
        let bound = match client.open_timeout() {
            Some(t) => tokio::time::timeout(t, request).await,
            None => Ok(request.await),
        };
        let bound = match bound {
            Ok(Ok(bound)) => bound,
            Ok(Err(russh::Error::RequestDenied)) => {
                return Err(TunnelError::forward_refused(&target, start.elapsed()))
            }
            Ok(Err(_)) => {
                return Err(TunnelError::channel(
                    &target,
                    Failure::SessionClosed,
                    start.elapsed(),
                ))
            }
            Err(_) => {
                return Err(TunnelError::channel(
                    &target,
                    Failure::TimedOut(crate::channel::ChannelAt::NeverOpened),
                    start.elapsed(),
                ))
            }
        };
        // Port 0 asks the server to choose; it says which.
        let port = if port == 0 { bound } else { u32::from(port) };
        let inbound = client.inbound().clone();
        inbound.insert(address, port, raw_tx);
        let (tunnels_tx, tunnels_rx) = mpsc::channel(WAITING - 4);
        let limits = Limits {
            open_timeout: client.open_timeout(),
            stall: client.tunnel_stall(),
        };
        let wrapping = tokio::spawn(wrap(raw_rx, tunnels_tx, closing, limits));
        tracing::debug!(address = %crate::text::PeerText::new(address), port, "remote forward");
        Ok(RemoteForward {
            address: address.to_owned(),
            port,
            tunnels: tunnels_rx,
            wrapping,
            handle,
            inbound,
            cancelled: false,
        })
    }

    /// The port the server listens on (the one it chose, for port 0).
    pub fn port(&self) -> u16 {
        u16::try_from(self.port).unwrap_or(0)
    }

    /// The next connection the server accepted; `None` once the session
    /// has ended.
    ///
    /// # Cancellation
    ///
    /// Cancel safe: a connection not taken waits for the next call.
    pub async fn accept(&mut self) -> Option<Tunnel> {
        self.tunnels.recv().await
    }

    /// Connects each accepted connection to `local` (as `ssh -R
    /// port:host:hostport` does) and carries the bytes both ways, until the
    /// session ends or this future is dropped (which stops the forward and
    /// closes its connections). A connection `local` refuses is closed.
    pub async fn connect_to(mut self, local: SocketAddr) {
        let mut connections = tokio::task::JoinSet::new();
        while let Some(mut tunnel) = self.accept().await {
            while connections.try_join_next().is_some() {}
            connections.spawn(async move {
                match tokio::net::TcpStream::connect(local).await {
                    Ok(mut tcp) => {
                        let _ = tcp.set_nodelay(true);
                        let _ = super::carry(&mut tcp, &mut tunnel).await;
                    }
                    Err(e) => tracing::debug!(%local, error = %e, "remote forward: cannot connect"),
                }
            });
        }
    }

    /// Asks the server to stop listening (bounded by a second) and closes
    /// the connections not yet accepted.
    pub async fn close(mut self) {
        self.cancel();
        let cancel = self
            .handle
            .cancel_tcpip_forward(self.address.clone(), self.port);
        let _ = tokio::time::timeout(GRACE, cancel).await;
    }

    /// Stops taking connections for the forward.
    fn cancel(&mut self) {
        if !self.cancelled {
            self.cancelled = true;
            self.inbound.remove(&self.address, self.port);
            self.wrapping.abort();
        }
    }
}

impl Drop for RemoteForward {
    fn drop(&mut self) {
        if self.cancelled {
            return;
        }
        self.cancel();
        // The cancel request, bounded, from a task: a drop cannot wait.
        let (handle, address, port) = (self.handle.clone(), self.address.clone(), self.port);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let cancel = handle.cancel_tcpip_forward(address, port);
                let _ = tokio::time::timeout(GRACE, cancel).await;
            });
        }
    }
}

/// Makes a tunnel of each connection as soon as it comes (so that its
/// channel is drained from the start), and queues it for `accept`; one
/// that finds the queue full is closed.
async fn wrap(
    mut raw: mpsc::Receiver<Channel<Msg>>,
    tunnels: mpsc::Sender<Tunnel>,
    closing: Arc<Closing>,
    limits: Limits,
) {
    while let Some(channel) = raw.recv().await {
        let target = format!("connection {}", channel.id());
        let tunnel =
            Tunnel::start(None, closing.clone(), Open::Given(channel), target, limits).await;
        match tunnel {
            Ok(tunnel) => {
                if tunnels.try_send(tunnel).is_err() {
                    tracing::debug!("remote forward: no room to wait for accept; closed");
                }
            }
            Err(e) => tracing::debug!(error = %e, "remote forward: a connection failed"),
        }
    }
}
