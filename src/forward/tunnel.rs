//! One connection through the server: a `direct-tcpip` (or
//! `direct-streamlocal`) channel as an `AsyncRead + AsyncWrite` stream.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::error::TunnelError;
use crate::channel::io::Stream;
use crate::channel::{self, Exec, Open, Overflow, Owner, Pipe, Reader, Request, Shared, Writer};
use crate::Client;

/// How much a tunnel's reader may fall behind before its channel pauses:
/// twice the SSH window, so that a reader that keeps up never pauses it.
const TUNNEL_BUFFER: usize = 4 << 20;

/// A tunnel's bounds: how long its channel may take to open, how long it
/// may pause for its reader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) open_timeout: Option<Duration>,
    pub(crate) stall: Duration,
}

/// A connection the server makes for us, as a stream: from
/// [`Client::connect_tcp`] (`ssh -W host:port`) or [`Client::connect_unix`],
/// and what the forwarding listeners hand over.
///
/// Reading gives what the far end sent, writing sends to it (waiting for the
/// SSH window: a far end that does not read stops the writer), and
/// `shutdown` sends EOF (half-close: reading goes on). Dropping it closes
/// the channel.
///
/// Memory: at most 4 MiB of what the far end sent waits unread; then the
/// tunnel pauses the connection until the reader takes some (russh cannot
/// pause one channel: every channel of the connection waits, as TCP would),
/// and a reader that takes nothing for 30 s
/// ([`DialerBuilder::tunnel_stall_timeout`](crate::DialerBuilder::tunnel_stall_timeout))
/// has its tunnel closed (the next read fails with `TimedOut`).
pub struct Tunnel {
    reader: Reader,
    writer: Writer,
    _owner: Owner,
    target: String,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// Where the tunnel goes, as asked for: `db.internal:5432`, or a socket path.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Opens `open` on `client`'s connection, with its open timeout.
    pub(crate) async fn open(
        client: &Client,
        open: Open,
        target: String,
    ) -> Result<Tunnel, TunnelError> {
        let (handle, closing) = client.channel_parts();
        Tunnel::start(Some(handle), closing, open, target, Tunnel::limits(client)).await
    }

    fn limits(client: &Client) -> Limits {
        Limits {
            open_timeout: client.open_timeout(),
            stall: client.tunnel_stall(),
        }
    }

    /// Starts the subsystem `name` on a session channel of `client`'s
    /// connection, within its open timeout, as a stream.
    pub(crate) async fn subsystem(client: &Client, name: &str) -> Result<Tunnel, TunnelError> {
        let (handle, closing) = client.channel_parts();
        let exec = Exec {
            line: name.to_owned(),
            env: Vec::new(),
            pty: None,
            subsystem: true,
        };
        let target = format!("subsystem {name}");
        let limits = Tunnel::limits(client);
        Tunnel::run(
            Some(handle),
            closing,
            Open::Session,
            Some(exec),
            target,
            limits,
        )
        .await
    }

    /// Runs the channel task for `open` and waits for the channel to be
    /// ready. `handle` may be left out for a channel the server opened.
    pub(crate) async fn start(
        handle: Option<Arc<russh::client::Handle<crate::ClientHandler>>>,
        closing: Arc<channel::Closing>,
        open: Open,
        target: String,
        limits: Limits,
    ) -> Result<Tunnel, TunnelError> {
        Tunnel::run(handle, closing, open, None, target, limits).await
    }

    async fn run(
        handle: Option<Arc<russh::client::Handle<crate::ClientHandler>>>,
        closing: Arc<channel::Closing>,
        open: Open,
        exec: Option<Exec>,
        target: String,
        limits: Limits,
    ) -> Result<Tunnel, TunnelError> {
        let start = Instant::now();
        let shared = Arc::new(Shared::new(
            Pipe::pausing(TUNNEL_BUFFER),
            // Extended data has no meaning on a tunnel: dropped.
            Pipe::new(true, None),
        ));
        // From here a drop of this future closes the channel.
        let owner = Owner::new(shared.clone(), closing.clone(), true);
        let request = Request {
            open,
            exec,
            deadline: limits
                .open_timeout
                .map(|t| crate::deadline::deadline_after(start, t)),
            stdin_null: false,
            kill_on_drop: true,
            overflow: Overflow::Pause(limits.stall),
        };
        tokio::spawn(channel::run(handle, request, shared.clone(), closing));
        shared.wait_for(|s| s.started || s.outcome.is_some()).await;
        let writer = {
            let mut state = shared.lock();
            if let Some(Err(failure)) = &state.outcome {
                let at = state.ended_at.unwrap_or_else(Instant::now);
                return Err(TunnelError::channel(
                    &target,
                    failure.clone(),
                    at.saturating_duration_since(start),
                ));
            }
            state.stdin_writer.take()
        };
        let Some(writer) = writer else {
            return Err(TunnelError::channel(
                &target,
                channel::Failure::SessionClosed,
                start.elapsed(),
            ));
        };
        Ok(Tunnel {
            reader: Reader::new(shared.clone(), Stream::Stdout),
            writer: Writer::new(writer.0, shared),
            _owner: owner,
            target,
        })
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.reader.poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    /// Sends EOF: the far end reads the end once it has read everything
    /// written before. Reading goes on.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}
