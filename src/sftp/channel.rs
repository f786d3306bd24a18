//! The `sftp` subsystem's channel, run by the channel task
//! (`crate::channel`) as a tunnel's is, handed over as its three parts:
//! the reader and writer of its data, for the session's two tasks, and
//! the hold whose drop closes it.
//!
//! Why not [`Client::subsystem`]'s `Tunnel`: its channel task keeps the
//! open deadline running for a subsystem's whole life (the deadline of a
//! command, which a subsystem request is to the task), so an SFTP session
//! would be closed `open_timeout` (10 s) after it opened. Here the task gets
//! no deadline, and the open is bounded by a timeout around waiting for it:
//! a drop of that wait closes the channel, or closes it when the server
//! opens it late, as the task does for any owner that goes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use crate::channel::io::Stream;
use crate::channel::{
    self, Exec, Failure, Open, Overflow, Owner, Pipe, Reader, Request, Shared, Writer,
};
use crate::forward::TunnelError;
use crate::Client;

/// How far the session's reader task may fall behind before the channel
/// pauses, as a tunnel's: the task reads at once, so this is slack.
const BUFFER: usize = 4 << 20;

/// The subsystem's channel, open and started.
pub(crate) struct Channel {
    pub(crate) reader: ChannelReader,
    pub(crate) writer: Writer,
    pub(crate) owner: Owner,
}

/// The channel's data, as an `AsyncRead`.
pub(crate) struct ChannelReader(Reader);

impl AsyncRead for ChannelReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read(cx, buf)
    }
}

/// Opens a session channel on `client`'s connection and starts the
/// subsystem `name` on it, within `timeout`.
pub(crate) async fn open(
    client: &Client,
    name: &str,
    timeout: Option<Duration>,
) -> Result<Channel, TunnelError> {
    let start = Instant::now();
    let target = format!("subsystem {name}");
    let (handle, closing) = client.channel_parts();
    let shared = Arc::new(Shared::new(Pipe::pausing(BUFFER), Pipe::new(true, None)));
    // From here a drop (of this future, or at the timeout) closes the channel.
    let owner = Owner::new(shared.clone(), closing.clone(), true);
    let request = Request {
        open: Open::Session,
        exec: Some(Exec {
            line: name.to_owned(),
            env: Vec::new(),
            pty: None,
            subsystem: true,
        }),
        deadline: None,
        stdin_null: false,
        kill_on_drop: true,
        overflow: Overflow::Pause(client.tunnel_stall()),
    };
    tokio::spawn(channel::run(Some(handle), request, shared.clone(), closing));
    let ready = shared.wait_for(|s| s.started || s.outcome.is_some());
    let failed = |failure| TunnelError::channel(&target, failure, start.elapsed());
    match timeout {
        Some(t) => {
            if tokio::time::timeout(t, ready).await.is_err() {
                return Err(failed(Failure::TimedOut(channel::ChannelAt::SettingUp)));
            }
        }
        None => ready.await,
    }
    let writer = {
        let mut state = shared.lock();
        if let Some(Err(failure)) = &state.outcome {
            return Err(failed(failure.clone()));
        }
        state.stdin_writer.take()
    };
    let Some(writer) = writer else {
        return Err(failed(Failure::SessionClosed));
    };
    Ok(Channel {
        reader: ChannelReader(Reader::new(shared.clone(), Stream::Stdout)),
        writer: Writer::new(writer.0, shared),
        owner,
    })
}
