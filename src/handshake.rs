//! The SSH handshake: version exchange and key exchange through russh, with
//! the host key checked inside key exchange.

use std::sync::{Arc, Mutex};

use russh::client::{self, Handle};
use tokio::net::TcpStream;

use crate::deadline::GuardedStream;
use crate::error::Kind;
use crate::host_keys::{HostKeyFailure, HostKeys, ServerKey};

/// ssh-dial's russh client handler. It checks the server's host key against
/// the dialer's [`HostKeys`] policy and otherwise keeps russh's defaults.
///
/// It appears only as the type parameter of [`Client::handle`](crate::Client::handle).
pub struct ClientHandler {
    host: String,
    port: u16,
    host_keys: HostKeys,
    verdict: Arc<Mutex<Option<HostKeyFailure>>>,
}

impl std::fmt::Debug for ClientHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandler")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("host_keys", &self.host_keys)
            .finish()
    }
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

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
        match self.host_keys.check(&self.host, self.port, &key).await {
            Ok(()) => Ok(true),
            Err(failure) => {
                tracing::debug!(error = %failure, "host key rejected");
                *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure);
                Ok(false)
            }
        }
    }
}

/// Runs version exchange and key exchange. A host key that fails the policy
/// comes back as [`Kind::HostKey`].
pub(crate) async fn handshake(
    config: Arc<client::Config>,
    stream: GuardedStream<TcpStream>,
    host: &str,
    port: u16,
    host_keys: HostKeys,
) -> Result<Handle<ClientHandler>, Kind> {
    let verdict = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        host: host.to_owned(),
        port,
        host_keys,
        verdict: verdict.clone(),
    };
    match client::connect_stream(config, stream, handler).await {
        Ok(handle) => Ok(handle),
        Err(e) => {
            let failure = verdict.lock().unwrap_or_else(|e| e.into_inner()).take();
            Err(match failure {
                Some(f) => Kind::HostKey(f),
                None => classify(e),
            })
        }
    }
}

/// Maps a russh error from the handshake or auth to our kinds.
pub(crate) fn classify(e: russh::Error) -> Kind {
    match e {
        russh::Error::Disconnect | russh::Error::HUP => Kind::Closed,
        russh::Error::IO(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Kind::Closed,
        russh::Error::IO(io) => Kind::Io(io),
        other => Kind::Protocol(other),
    }
}
