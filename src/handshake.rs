//! The SSH handshake: version exchange and key exchange through russh, with
//! the host key checked inside key exchange.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use russh::client::{self, Handle, Msg};
use russh::Channel;
use tokio::sync::mpsc;

use crate::deadline::{GuardedStream, SessionGuard, TripWire};
use crate::error::Kind;
use crate::host_keys::{HostKeyFailure, Prepared, ServerKey};

/// ssh-dial's russh client handler. It checks the server's host key against
/// the dialer's [`HostKeys`](crate::HostKeys) policy and otherwise keeps
/// russh's defaults.
///
/// It appears only as the type parameter of [`Client::handle`](crate::Client::handle).
pub struct ClientHandler {
    host_keys: Prepared,
    wire: TripWire,
    /// Dropped with the handler, when russh's session task ends.
    _session: SessionGuard,
    verdict: Arc<Mutex<Option<HostKeyFailure>>>,
    /// The host key algorithm of the first key exchange.
    negotiated: Option<russh::keys::Algorithm>,
    /// Where the connections the server opens for remote forwards go.
    inbound: Inbound,
}

/// Where the connections the server opens for our remote forwards
/// (`forwarded-tcpip`) go: per forward, as the server reports its address
/// and port, a bounded queue. One the server opens for a forward we do not
/// have, or whose queue is full, is refused.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inbound(Arc<Mutex<Queues>>);

/// Each remote forward's queue, by the address and port the server bound.
type Queues = HashMap<(String, u32), mpsc::Sender<Channel<Msg>>>;

impl Inbound {
    /// Connections for `address:port` go to `queue` from now on.
    pub(crate) fn insert(&self, address: &str, port: u32, queue: mpsc::Sender<Channel<Msg>>) {
        self.lock().insert((address.to_owned(), port), queue);
    }

    pub(crate) fn remove(&self, address: &str, port: u32) {
        self.lock().remove(&(address.to_owned(), port));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue for a connection the server reports for `address:port`:
    /// that very forward, or the only one on `port` (servers report the
    /// address as they bound it).
    fn queue(&self, address: &str, port: u32) -> Option<mpsc::Sender<Channel<Msg>>> {
        let forwards = self.lock();
        if let Some(queue) = forwards.get(&(address.to_owned(), port)) {
            return Some(queue.clone());
        }
        let mut on_port = forwards.iter().filter(|((_, p), _)| *p == port);
        match (on_port.next(), on_port.next()) {
            (Some((_, queue)), None) => Some(queue.clone()),
            _ => None,
        }
    }
}

impl std::fmt::Debug for ClientHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandler")
            .field("negotiated", &self.negotiated)
            .finish_non_exhaustive()
    }
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    /// A connection to one of our remote forwards: accepted and queued for
    /// it if it has room, refused otherwise (never left undrained: russh
    /// would stall the session on it).
    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let queue = self
            .inbound
            .queue(connected_address, connected_port)
            .and_then(|queue| queue.try_reserve_owned().ok());
        match queue {
            Some(permit) => {
                reply.accept().await;
                permit.send(channel);
            }
            None => {
                tracing::debug!(
                    address = %crate::text::PeerText::new(connected_address),
                    port = connected_port,
                    "refused a forwarded connection: no forward, or its queue is full"
                );
                reply
                    .reject(russh::ChannelOpenFailure::ResourceShortage)
                    .await;
            }
        }
        Ok(())
    }

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                ServerKey::Plain(key.clone())
            }
            russh::keys::PublicKeyOrCertificate::Certificate(c) => {
                ServerKey::Certificate(Box::new(c.clone()))
            }
        };
        // The check may wait (for a lock on known_hosts); the session task
        // waits on it, so it must end when the dial does.
        let checked = tokio::select! {
            biased;
            () = self.wire.tripped() => return Err(russh::Error::IO(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "dial deadline passed or dial abandoned",
            ))),
            checked = self.host_keys.check(&key, {
                let wire = self.wire.clone();
                move || wire.is_tripped()
            }) => checked,
        };
        match checked {
            Ok(()) => Ok(true),
            Err(failure) => {
                tracing::debug!(error = %crate::text::Escaped(&failure), "host key rejected");
                *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure);
                Ok(false)
            }
        }
    }

    /// russh asks `check_server_key` only in the first key exchange; a
    /// later one (a re-key) could present another host key unchecked. The
    /// handler is not shown that key, only the negotiated names, so a
    /// re-key that switches the host key algorithm ends the session; one
    /// that presents another key of the same algorithm cannot be seen here
    /// (see the README, "Trust and authentication").
    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        match &self.negotiated {
            None => {
                self.negotiated = Some(names.key.clone());
                Ok(())
            }
            Some(first) if *first == names.key => Ok(()),
            Some(first) => {
                tracing::warn!(
                    first = %first,
                    now = %names.key,
                    "server switched host key algorithm in a re-key; ending the session"
                );
                Err(russh::Error::UnknownKey)
            }
        }
    }
}

/// `base` with other algorithm preferences.
fn with_preferred(base: &client::Config, preferred: russh::Preferred) -> client::Config {
    client::Config {
        preferred,
        ..copy(base)
    }
}

/// A copy of `base`: russh's `Config` is not `Clone`, so the fields are
/// copied one by one.
/// Our version line as russh writes it from `config`.
pub(crate) fn version_line(config: &client::Config) -> Vec<u8> {
    match &config.client_id {
        russh::SshId::Standard(id) => format!("{id}\r\n").into_bytes(),
        russh::SshId::Raw(id) => id.as_bytes().to_vec(),
    }
}

pub(crate) fn copy(base: &client::Config) -> client::Config {
    client::Config {
        client_id: match &base.client_id {
            russh::SshId::Standard(s) => russh::SshId::Standard(s.clone()),
            russh::SshId::Raw(s) => russh::SshId::Raw(s.clone()),
        },
        limits: base.limits.clone(),
        window_size: base.window_size,
        maximum_packet_size: base.maximum_packet_size,
        channel_buffer_size: base.channel_buffer_size,
        preferred: base.preferred.clone(),
        inactivity_timeout: base.inactivity_timeout,
        keepalive_interval: base.keepalive_interval,
        keepalive_max: base.keepalive_max,
        anonymous: base.anonymous,
        gex: base.gex.clone(),
        nodelay: base.nodelay,
    }
}

/// Runs version exchange and key exchange. A host key that fails the policy
/// comes back as [`Kind::HostKey`].
/// The host key algorithms on file for the host are asked for first.
pub(crate) async fn handshake<S>(
    mut config: Arc<client::Config>,
    stream: GuardedStream<S>,
    host_keys: Prepared,
    wire: TripWire,
    session: SessionGuard,
    inbound: Inbound,
) -> Result<Handle<ClientHandler>, Kind>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if let Some(preferred) = host_keys.preferred(&config.preferred) {
        tracing::debug!(host_key_algorithms = ?preferred.key, "preferring the key types on file");
        config = Arc::new(with_preferred(&config, preferred));
    }
    let verdict = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        host_keys,
        wire,
        _session: session,
        verdict: verdict.clone(),
        negotiated: None,
        inbound,
    };
    match client::connect_stream(config, stream, handler).await {
        Ok(handle) => Ok(handle),
        Err(e) => {
            let failure = verdict.lock().unwrap_or_else(|e| e.into_inner()).take();
            Err(match failure {
                Some(f) => Kind::HostKey(f),
                None => Kind::from_russh(e),
            })
        }
    }
}
