//! The dial's deadline, made visible to russh's session task.
//!
//! russh reads the server banner in the caller's future, then runs key
//! exchange in a task it spawns and detaches. While key exchange is active
//! that task does not look at its `Handle`, so dropping the dial future (or
//! racing it against a timer) leaves the task and its socket alive until the
//! peer closes. The fix is Go's `net.Conn.SetDeadline` in stream form:
//! [`GuardedStream`] wraps the TCP stream, and its [`Switch`] can trip it from
//! outside. Once tripped, every pending and future read, write, flush and
//! shutdown fails with [`io::ErrorKind::TimedOut`] and the parked task is
//! woken, so whichever future owns the stream (the caller's, or russh's
//! session task) errors out and drops it, closing the socket.
//!
//! The timer itself lives in the dial (one `sleep_until` per dial); the stream
//! only needs the switch. [`Switch::closed`] resolves once the stream has been
//! dropped, which is how the dial knows the socket is gone before it returns.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

#[derive(Debug, Default)]
struct Shared {
    tripped: AtomicBool,
    /// Set, with the time, once the peer's version line has been read: the
    /// version exchange is over and key exchange has begun.
    banner_seen: AtomicBool,
    banner_at: std::sync::OnceLock<std::time::Instant>,
    read_waker: Mutex<Option<Waker>>,
    write_waker: Mutex<Option<Waker>>,
}

impl Shared {
    fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    fn park(slot: &Mutex<Option<Waker>>, waker: &Waker) {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    fn wake(slot: &Mutex<Option<Waker>>) {
        let waker = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Wraps a stream so that a [`Switch`] can fail it from outside.
#[derive(Debug)]
pub(crate) struct GuardedStream<S> {
    inner: S,
    shared: Arc<Shared>,
    banner: BannerScan,
    /// Dropped with the stream; [`Switch::closed`] waits for that.
    _closed: oneshot::Sender<()>,
}

/// Controls a [`GuardedStream`]; kept by the dial and then by the client.
#[derive(Debug)]
pub(crate) struct Switch {
    shared: Arc<Shared>,
    closed: oneshot::Receiver<()>,
    /// The receiver must not be polled again once it has completed.
    closed_seen: bool,
}

/// Wraps `inner`, returning the stream and the switch that controls it.
pub(crate) fn guard<S>(inner: S) -> (GuardedStream<S>, Switch) {
    let shared = Arc::new(Shared::default());
    let (tx, rx) = oneshot::channel();
    let stream = GuardedStream {
        inner,
        shared: shared.clone(),
        banner: BannerScan::default(),
        _closed: tx,
    };
    (
        stream,
        Switch {
            shared,
            closed: rx,
            closed_seen: false,
        },
    )
}

impl Switch {
    /// Fails every pending and future I/O on the stream and wakes the task
    /// parked on it. Idempotent.
    pub(crate) fn trip(&self) {
        if !self.shared.tripped.swap(true, Ordering::AcqRel) {
            Shared::wake(&self.shared.read_waker);
            Shared::wake(&self.shared.write_waker);
        }
    }

    #[cfg(test)]
    pub(crate) fn is_tripped(&self) -> bool {
        self.shared.is_tripped()
    }

    /// Whether the peer's SSH version line has been read.
    pub(crate) fn banner_seen(&self) -> bool {
        self.shared.banner_seen.load(Ordering::Acquire)
    }

    /// When the peer's version line was read, if it was.
    pub(crate) fn banner_at(&self) -> Option<std::time::Instant> {
        self.shared.banner_at.get().copied()
    }

    /// Whether the stream (and so the socket) has been dropped.
    pub(crate) fn is_closed(&mut self) -> bool {
        if !self.closed_seen {
            self.closed_seen = !matches!(
                self.closed.try_recv(),
                Err(oneshot::error::TryRecvError::Empty)
            );
        }
        self.closed_seen
    }

    /// Trips the switch and waits, at most `grace`, until the stream has been
    /// dropped. Returns whether it was.
    ///
    /// Once tripped, the owner of the stream fails on its next poll, which
    /// the trip itself schedules, so in practice this takes one turn of the
    /// scheduler; `grace` only guards against an owner that is stuck on
    /// something other than the stream.
    pub(crate) async fn shut(&mut self, grace: Duration) -> bool {
        self.trip();
        if self.is_closed() {
            return true;
        }
        let closed = tokio::time::timeout(grace, &mut self.closed).await.is_ok();
        self.closed_seen = closed;
        if !closed {
            tracing::warn!(
                ?grace,
                "ssh session did not release its socket after being tripped"
            );
        }
        closed
    }
}

impl<S> GuardedStream<S> {
    fn check(&self) -> io::Result<()> {
        if self.shared.is_tripped() {
            Err(tripped())
        } else {
            Ok(())
        }
    }
}

/// `start + after`, or a time too far away to matter when that overflows
/// (`Duration::MAX` as a timeout means "no limit", not a panic).
pub(crate) fn deadline_after(start: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    start
        .checked_add(after)
        .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn tripped() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "dial deadline passed or dial abandoned",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                Shared::park(&this.shared.read_waker, cx.waker());
                // A trip between the check and the park would be missed.
                this.check()?;
                Poll::Pending
            }
            Poll::Ready(Ok(())) => {
                if !this.banner.done() && this.banner.feed(&buf.filled()[before..]) {
                    let _ = this.shared.banner_at.set(std::time::Instant::now());
                    this.shared.banner_seen.store(true, Ordering::Release);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> GuardedStream<S> {
    fn poll_write_op<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        self.check()?;
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Pending => {
                Shared::park(&self.shared.write_waker, cx.waker());
                self.check()?;
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_op(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_op(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_op(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_write_op(cx, |s, cx| s.poll_shutdown(cx))
    }
}

/// Finds the end of the peer's version line (RFC 4253 §4.2: a line starting
/// `SSH-2.0-` or `SSH-1.99-`, as russh accepts; other lines may come first)
/// in the bytes as they arrive, however they are split.
#[derive(Debug, Default, Clone, Copy)]
struct BannerScan {
    /// The first bytes of the current line.
    head: [u8; 9],
    len: u8,
    done: bool,
}

impl BannerScan {
    fn done(&self) -> bool {
        self.done
    }

    /// Feeds bytes; returns true once the version line has ended.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if b == b'\n' {
                let head = &self.head[..usize::from(self.len)];
                if head.starts_with(b"SSH-2.0-") || head.starts_with(b"SSH-1.99-") {
                    self.done = true;
                    return true;
                }
                self.len = 0;
            } else if usize::from(self.len) < self.head.len() {
                self.head[usize::from(self.len)] = b;
                self.len += 1;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn banner_scan_finds_version_line_split_anywhere() {
        let text = b"hello\r\nSSH-not\nxSSH-2.0-no\r\nSSH-2.0-OpenSSH_9.6\r\nrest";
        for split in 0..text.len() {
            let mut scan = BannerScan::default();
            let (a, b) = text.split_at(split);
            let done = scan.feed(a) || scan.feed(b);
            assert!(done, "split at {split}");
        }
        let mut scan = BannerScan::default();
        assert!(!scan.feed(b"SSH-2.0-partial"));
        assert!(scan.feed(b"\r\n"));
        let mut scan = BannerScan::default();
        assert!(!scan.feed(b"SSH-3.0-no\nSSH-\nSSH-2.0\ngarbage\nmore garbage"));
    }

    #[tokio::test]
    async fn trip_fails_a_parked_read_and_wakes_it() {
        let (a, _b) = tokio::io::duplex(64);
        let (mut stream, mut switch) = guard(a);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            stream.read(&mut buf).await
        });
        tokio::task::yield_now().await;
        switch.trip();
        let err = reader.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            switch.shut(Duration::from_secs(1)).await,
            "stream was dropped"
        );
    }

    #[tokio::test]
    async fn trip_fails_a_parked_write() {
        let (a, _b) = tokio::io::duplex(4);
        let (mut stream, switch) = guard(a);
        let writer = tokio::spawn(async move { stream.write_all(&[0u8; 64]).await });
        tokio::task::yield_now().await;
        switch.trip();
        let err = writer.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn untripped_stream_passes_bytes_and_sees_banner() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut stream, switch) = guard(a);
        b.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        let mut buf = [0u8; 11];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"SSH-2.0-x\r\n");
        assert!(switch.banner_seen());
        assert!(!switch.is_tripped());
    }
}
