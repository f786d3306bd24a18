//! Local forwarding (`ssh -L`) and dynamic forwarding (`ssh -D`): a
//! listener whose every connection goes through a tunnel of its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::error::TunnelError;
use super::socks;
use super::tunnel::{Limits, Tunnel};
use crate::channel::{Closing, Open};
use crate::handshake::ClientHandler;
use crate::Client;

/// The most forwarded connections at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 256;

/// Where each connection goes.
#[derive(Debug, Clone)]
pub(super) enum To {
    Fixed(String, u32),
    /// Where the SOCKS request says.
    Socks,
}

/// A running local (`-L`) or dynamic (`-D`) forward, from
/// [`Client::forward_local`] or [`Client::forward_dynamic`]. Dropping it
/// stops the listener and closes every tunnel it opened.
#[derive(Debug)]
pub struct LocalForward {
    local_addr: SocketAddr,
    stats: Arc<Stats>,
    serving: JoinHandle<()>,
}

/// What a forward has done.
#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    failed: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

/// What each connection needs of the client.
#[derive(Clone)]
struct Parts {
    handle: Arc<russh::client::Handle<ClientHandler>>,
    closing: Arc<Closing>,
    limits: Limits,
    stats: Arc<Stats>,
}

impl LocalForward {
    pub(super) async fn start(
        client: &Client,
        bind: SocketAddr,
        to: To,
    ) -> Result<Self, TunnelError> {
        let what = match &to {
            To::Fixed(host, port) => format!("{host}:{port} from {bind}"),
            To::Socks => format!("SOCKS on {bind}"),
        };
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| TunnelError::bind(&what, e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| TunnelError::bind(&what, e))?;
        let (handle, closing) = client.channel_parts();
        let stats = Arc::new(Stats::default());
        let parts = Parts {
            handle,
            closing,
            limits: Limits {
                open_timeout: client.open_timeout(),
                stall: client.tunnel_stall(),
            },
            stats: stats.clone(),
        };
        tracing::debug!(%local_addr, forward = %what, "forwarding");
        let serving = tokio::spawn(serve(listener, to, parts));
        Ok(LocalForward {
            local_addr,
            stats,
            serving,
        })
    }

    /// The address it listens on (with the port chosen, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::Relaxed)
    }

    /// Connections whose tunnel could not be opened (or whose SOCKS request
    /// was unusable), so far.
    pub fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// The last of those failures, as its error's message.
    pub fn last_failure(&self) -> Option<String> {
        self.stats
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops listening and closes every tunnel, and returns once the
    /// listener and the connections' tasks have ended.
    pub async fn close(mut self) {
        self.serving.abort();
        let _ = (&mut self.serving).await;
    }
}

impl Drop for LocalForward {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// Accepts while a connection slot is free and the session lives; each
/// connection in a task of the set, which dies (and closes its tunnel)
/// with this one.
async fn serve(listener: TcpListener, to: To, parts: Parts) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if parts.handle.is_closed() {
            tracing::debug!("the session ended: no more forwarding");
            return;
        }
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors, most likely: let some close.
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        parts.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let (to, parts) = (to.clone(), parts.clone());
        connections.spawn(async move {
            forward_one(tcp, peer, to, &parts).await;
            drop(slot);
        });
    }
}

/// One connection: its target (fixed or asked for), its tunnel, and the
/// bytes both ways until both ends have sent EOF.
async fn forward_one(mut tcp: TcpStream, peer: SocketAddr, to: To, parts: &Parts) {
    let _ = tcp.set_nodelay(true);
    let (host, port, mut socks) = match to {
        To::Fixed(host, port) => (host, port, None),
        To::Socks => match socks::request(&mut tcp).await {
            Ok(request) => (request.host.clone(), request.port, Some(request)),
            Err(why) => return parts.failed(&format!("SOCKS from {peer}: {why}")),
        },
    };
    let open = Open::DirectTcpip {
        host: host.clone(),
        port,
        originator: (peer.ip().to_string(), u32::from(peer.port())),
    };
    let target = format!("{host}:{port}");
    let tunnel = Tunnel::start(
        Some(parts.handle.clone()),
        parts.closing.clone(),
        open,
        target,
        parts.limits,
    )
    .await;
    let mut tunnel = match tunnel {
        Ok(tunnel) => tunnel,
        Err(e) => {
            if let Some(request) = socks.take() {
                let _ = request.fail(&mut tcp, &e).await;
            }
            return parts.failed(&e.to_string());
        }
    };
    if let Some(request) = socks.take() {
        if request.succeed(&mut tcp).await.is_err() {
            return;
        }
    }
    let _ = super::carry(&mut tcp, &mut tunnel).await;
}

impl Parts {
    fn failed(&self, why: &str) {
        tracing::debug!(error = %crate::text::PeerText::new(why), "forwarded connection failed");
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        *self
            .stats
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why.to_owned());
    }
}
