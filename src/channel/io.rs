//! What a caller holds on a channel the task runs: its hold (the owner),
//! a writer for the channel's data, readers for its two pipes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncWrite, ReadBuf};

use super::pipe::Chunk;
use super::{Closing, Failure, Shared};

/// The caller's hold on a channel: when it goes (the future that opens it
/// dropped, or what the caller holds), the channel task ends the channel.
#[derive(Debug)]
pub(crate) struct Owner {
    shared: Arc<Shared>,
    closing: Arc<Closing>,
    kill_on_drop: bool,
}

impl Owner {
    /// What the task and the caller share.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn new(shared: Arc<Shared>, closing: Arc<Closing>, kill_on_drop: bool) -> Self {
        Owner {
            shared,
            closing,
            kill_on_drop,
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.owner_dropped(&self.closing, self.kill_on_drop);
    }
}

/// A writer for the channel's data. Writing waits for the SSH window (a
/// peer that does not read stops the writer), but never past the channel's
/// end or deadline: then it fails. `shutdown`, or dropping it, sends EOF.
pub(crate) struct Writer {
    inner: Pin<Box<dyn AsyncWrite + Send + Sync>>,
    shared: Arc<Shared>,
    shut: bool,
}

impl Writer {
    pub(crate) fn new(inner: Pin<Box<dyn AsyncWrite + Send + Sync>>, shared: Arc<Shared>) -> Self {
        Writer {
            inner,
            shared,
            shut: false,
        }
    }

    /// Fails once the channel has ended or the writer was shut down; else
    /// registers to be woken when the channel ends, so that a write parked
    /// on the window cannot outlive it.
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        if self.shut {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the writer was shut down",
            ));
        }
        let mut state = self.shared.lock();
        match &state.outcome {
            None => {
                state.stdin_waker = Some(cx.waker().clone());
                Ok(())
            }
            Some(Err(Failure::TimedOut(_))) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the deadline passed",
            )),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the channel has ended",
            )),
        }
    }

    /// Asks the channel task to send EOF (after every write already queued).
    fn close(&mut self) {
        if !self.shut {
            self.shut = true;
            self.shared.lock().stdin_closed = true;
            self.shared.poke();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("shut", &self.shut)
            .finish_non_exhaustive()
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        self.inner.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        self.inner.as_mut().poll_flush(cx)
    }

    /// Sends EOF: the peer reads the end once it has read everything
    /// written before.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut {
            self.check(cx)?;
            self.close();
        }
        Poll::Ready(Ok(()))
    }
}

/// Which of the channel's two pipes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// One of the two pipes, for its reader: at most the cap is buffered
/// unread; past it bytes are dropped (a command's output) and the read that
/// reaches the place gets an error saying how many, or the channel is
/// closed (a tunnel). The stream ends at the peer's EOF, or with an error
/// (`TimedOut` at the deadline, `ConnectionAborted` if the session ended).
#[derive(Debug)]
pub(crate) struct Reader {
    shared: Arc<Shared>,
    stream: Stream,
}

/// The next thing a pipe holds for its reader.
pub(crate) enum Next {
    Data(Bytes),
    /// Bytes copied straight into the reader's buffer.
    Copied,
    /// Bytes dropped here, past the cap.
    Gap(u64),
    /// The stream is over: cleanly, or why not.
    End(io::Result<()>),
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, stream: Stream) -> Self {
        Reader { shared, stream }
    }

    /// The next thing for the reader: data (copied into `into`, if given,
    /// else handed over), a gap, or the end.
    pub(crate) fn poll_next(&self, cx: &Context<'_>, into: Option<&mut ReadBuf<'_>>) -> Poll<Next> {
        let mut state = self.shared.lock();
        let state = &mut *state;
        let pipe = match self.stream {
            Stream::Stdout => &mut state.stdout,
            Stream::Stderr => &mut state.stderr,
        };
        match pipe.next() {
            Chunk::Gap(n) => return Poll::Ready(Next::Gap(n)),
            Chunk::Data(n) => {
                if pipe.is_full() {
                    // The task paused the channel for us: it may go on.
                    self.shared.poke();
                }
                return Poll::Ready(match into {
                    Some(buf) => {
                        pipe.copy_to(buf, n);
                        Next::Copied
                    }
                    None => Next::Data(pipe.take(n)),
                });
            }
            Chunk::Empty => {}
        }
        if pipe.eof {
            return Poll::Ready(Next::End(Ok(())));
        }
        match &state.outcome {
            None => {
                pipe.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Some(Ok(_)) => Poll::Ready(Next::End(Ok(()))),
            Some(Err(Failure::TimedOut(_))) => Poll::Ready(Next::End(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the deadline passed",
            )))),
            Some(Err(Failure::SessionClosed)) => Poll::Ready(Next::End(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the ssh session ended",
            )))),
            Some(Err(Failure::Stalled(behind, stall))) => {
                Poll::Ready(Next::End(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "nothing was read for {stall:?} with {behind} bytes waiting: the channel was closed"
                    ),
                ))))
            }
            Some(Err(_)) => Poll::Ready(Next::End(Err(io::Error::other("the channel failed")))),
        }
    }

    pub(crate) fn poll_read(
        &self,
        cx: &Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match self.poll_next(cx, Some(buf)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Next::Data(_) | Next::Copied) => Poll::Ready(Ok(())),
            Poll::Ready(Next::Gap(dropped)) => Poll::Ready(Err(io::Error::other(format!(
                "{dropped} bytes were dropped here, past the cap (max_output): read faster, or raise it"
            )))),
            Poll::Ready(Next::End(result)) => Poll::Ready(result),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        match self.stream {
            Stream::Stdout => state.stdout.discard(),
            Stream::Stderr => state.stderr.discard(),
        }
    }
}

/// The next chunk a reader gets.
pub(crate) async fn next(reader: &Option<Reader>) -> Next {
    let reader = reader.as_ref().expect("polled only while present");
    std::future::poll_fn(|cx| reader.poll_next(cx, None)).await
}
