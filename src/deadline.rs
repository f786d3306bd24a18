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
//! The timer itself lives in the dial (one `sleep_until` per dial, in
//! [`race`]); the stream only needs the switch. The switch's `closed`
//! receiver resolves once the stream has been dropped, which is how the dial
//! knows the socket is gone before it returns.
//!
//! The socket is not the only thing russh's session task waits on. It also
//! waits on the [`Handle`](russh::client::Handle) (a keyboard-interactive
//! answer, an agent signature) and on our handler (the host key check,
//! which may wait for a lock on known_hosts). So when the deadline fires,
//! [`race`] drops the phase's future at once instead of letting it unwind,
//! the dial drops the handle, which fails every wait on it, and the handler
//! races its own work against the [`TripWire`]. Then nothing the session
//! task waits on can outlast the trip, and `Switch::shut` finds the socket
//! gone within a turn of the scheduler; its grace period is only a fallback.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::error::Phase;

/// How long cleanup waits for a tripped session to let go of its socket
/// before giving up with a warning. A fallback, not a schedule: every wait
/// of the session task ends at the trip, so in practice this takes one turn
/// of the scheduler.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Shared {
    tripped: AtomicBool,
    /// Wakes [`TripWire::tripped`] waiters.
    trip: Notify,
    /// Set, with the time, once russh has accepted the peer's version line:
    /// the version exchange is over and key exchange has begun.
    banner_seen: AtomicBool,
    /// Set once the connection carries tunnels (a jump host's): every
    /// read then asks the kernel to acknowledge at once (see
    /// [`Switch::carry_tunnels`]).
    quick_ack: AtomicBool,
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

    fn trip(&self) {
        if !self.tripped.swap(true, Ordering::AcqRel) {
            Shared::wake(&self.read_waker);
            Shared::wake(&self.write_waker);
            self.trip.notify_waiters();
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
    /// Whether our own version line has been written whole (it ends with
    /// the first `\n` we write).
    sent_version: bool,
    /// Dropped with the stream; [`Switch::shut`] waits for that.
    _closed: oneshot::Sender<()>,
    /// The TCP socket under the stream, if it is one (for quick ACKs).
    tcp_fd: Option<std::os::fd::RawFd>,
    /// Our version line, sent before russh ran, and how much of russh's
    /// own first write (the same line) has been taken in its place.
    ahead: Option<(Box<[u8]>, usize)>,
    /// The server's first bytes, read before russh ran: russh reads them
    /// first, and how far it has.
    replay: Option<(Box<[u8]>, usize)>,
    /// What went wrong before russh ran, for russh to meet at its first read.
    early_error: Option<io::Error>,
}

/// Controls a [`GuardedStream`]; kept by the dial and then by the client.
#[derive(Debug)]
pub(crate) struct Switch {
    shared: Arc<Shared>,
    closed: oneshot::Receiver<()>,
    /// The receiver must not be polled again once it has completed.
    closed_seen: bool,
    /// Resolves when the [`SessionGuard`] (held by russh's session task,
    /// in our handler) is dropped, the last thing that task does.
    ended: Option<oneshot::Receiver<()>>,
}

/// Held by the handler that russh's session task owns; dropped when that
/// task ends, which [`Switch::shut`] waits for after the socket.
#[derive(Debug)]
pub(crate) struct SessionGuard(#[allow(dead_code)] oneshot::Sender<()>);

/// Wraps `inner`, returning the stream and the switch that controls it.
pub(crate) fn guard<S>(inner: S) -> (GuardedStream<S>, Switch) {
    let shared = Arc::new(Shared::default());
    let (tx, rx) = oneshot::channel();
    let stream = GuardedStream {
        inner,
        shared: shared.clone(),
        sent_version: false,
        _closed: tx,
        tcp_fd: None,
        ahead: None,
        replay: None,
        early_error: None,
    };
    (
        stream,
        Switch {
            shared,
            closed: rx,
            closed_seen: false,
            ended: None,
        },
    )
}

impl<S> GuardedStream<S> {
    /// Notes the TCP socket under the stream, so that
    /// [`Switch::carry_tunnels`] can take effect.
    pub(crate) fn on_tcp_socket(mut self, fd: std::os::fd::RawFd) -> Self {
        self.tcp_fd = Some(fd);
        self
    }

    /// After a read on a connection that carries tunnels: acknowledge at
    /// once instead of the kernel's delayed ACK. The peer (a jump host's
    /// sshd) writes what the tunnel brings without `TCP_NODELAY`, so its
    /// next small segment waits for our ACK; delayed, that is 40 ms per
    /// round trip through the tunnel. Linux's quick-ACK mode lapses, so it
    /// is asked for after every read.
    fn quick_ack(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(fd) = self.tcp_fd {
            if self.shared.quick_ack.load(Ordering::Relaxed) {
                // SAFETY: the fd belongs to the stream this struct owns,
                // open for as long as it is.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                let _ = socket2::SockRef::from(&fd).set_tcp_quickack(true);
            }
        }
    }
}

impl Switch {
    /// From now on the connection carries tunnels (it is a jump host):
    /// each read is acknowledged at once (see `GuardedStream::quick_ack`).
    pub(crate) fn carry_tunnels(&self) {
        self.shared.quick_ack.store(true, Ordering::Relaxed);
    }

    /// Fails every pending and future I/O on the stream and wakes the task
    /// parked on it. Idempotent.
    pub(crate) fn trip(&self) {
        Shared::trip(&self.shared);
    }

    /// A guard for russh's session task to hold (in our handler), so that
    /// [`shut`](Self::shut) also waits for that task to end.
    pub(crate) fn session_guard(&mut self) -> SessionGuard {
        let (tx, rx) = oneshot::channel();
        self.ended = Some(rx);
        SessionGuard(tx)
    }

    /// A handle for code that runs inside russh's session task (our
    /// handler) to stop waiting when the switch trips.
    pub(crate) fn wire(&self) -> TripWire {
        TripWire {
            shared: self.shared.clone(),
        }
    }

    #[cfg(test)]
    pub(crate) fn is_tripped(&self) -> bool {
        self.shared.is_tripped()
    }

    /// Whether russh has accepted the peer's SSH version line.
    pub(crate) fn banner_seen(&self) -> bool {
        self.shared.banner_seen.load(Ordering::Acquire)
    }

    /// When russh accepted the peer's version line, if it did.
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

    /// Waits, without tripping anything, until russh's session task has
    /// ended (or, for a session without a guard, its stream is gone).
    pub(crate) async fn ended(&mut self) {
        if let Some(ended) = &mut self.ended {
            let _ = ended.await;
            self.ended = None;
        } else if !self.is_closed() {
            let _ = (&mut self.closed).await;
            self.closed_seen = true;
        }
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
        let until = tokio::time::Instant::now() + grace;
        if !self.is_closed() {
            let closed = tokio::time::timeout_at(until, &mut self.closed)
                .await
                .is_ok();
            self.closed_seen = closed;
            if !closed {
                tracing::warn!(
                    ?grace,
                    "ssh session did not release its socket after being tripped"
                );
                return false;
            }
        }
        // Then the session task itself, which drops the stream shortly
        // before it ends.
        if let Some(ended) = &mut self.ended {
            if tokio::time::timeout_at(until, ended).await.is_err() {
                tracing::warn!(?grace, "ssh session task did not end after being tripped");
            }
            self.ended = None;
        }
        true
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

/// A wait of between half and all of `full` (at most 100 years), at random:
/// so that many waiters started together do not all wake together.
pub(crate) fn jittered(full: Duration) -> Duration {
    let full = full.min(Duration::from_secs(100 * 365 * 24 * 3600));
    let mut random = [0u8; 8];
    let fraction = match getrandom::fill(&mut random) {
        Ok(()) => u64::from_le_bytes(random) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    };
    full.mul_f64(0.5 + 0.5 * fraction)
}

fn tripped() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "dial deadline passed or dial abandoned",
    )
}

/// The most of the server's first bytes read before russh runs: its version
/// line fits (255 bytes at most, as russh takes it), and russh reads the
/// rest from the socket.
const READ_AHEAD: usize = 256;

impl<S: AsyncRead + AsyncWrite + Unpin> GuardedStream<S> {
    /// Sends our version line and waits for the server's first bytes,
    /// before russh's handshake future (4.4 KiB) is made: a dial to a peer
    /// that never speaks costs only this. russh then runs as if it had
    /// done both itself: its own write of the same line is taken without
    /// sending it again, and its reads get the bytes read here first. What
    /// fails here (a reset, an EOF) is left for russh to meet, so that the
    /// dial's errors stay russh's. Not cancel safe; raced against the
    /// deadline, after which the stream is dropped.
    pub(crate) async fn exchange_ahead(&mut self, version_line: Vec<u8>) {
        let mut sent = 0;
        while sent < version_line.len() {
            let wrote = std::future::poll_fn(|cx| {
                self.poll_write_op(cx, |s, cx| s.poll_write(cx, &version_line[sent..]))
            })
            .await;
            match wrote {
                Ok(0) => {
                    self.early_error = Some(io::ErrorKind::WriteZero.into());
                    return;
                }
                Ok(n) => sent += n,
                Err(e) => {
                    self.early_error = Some(e);
                    return;
                }
            }
        }
        self.ahead = Some((version_line.into_boxed_slice(), 0));
        let mut first = [0u8; READ_AHEAD];
        let mut buf = ReadBuf::new(&mut first);
        match std::future::poll_fn(|cx| Pin::new(&mut *self).poll_read(cx, &mut buf)).await {
            Ok(()) if !buf.filled().is_empty() => {
                self.replay = Some((buf.filled().into(), 0));
            }
            // EOF: russh reads it again from the socket.
            Ok(()) => {}
            Err(e) => self.early_error = Some(e),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        if let Some(e) = this.early_error.take() {
            return Poll::Ready(Err(e));
        }
        if let Some((bytes, at)) = &mut this.replay {
            let n = (bytes.len() - *at).min(buf.remaining());
            buf.put_slice(&bytes[*at..*at + n]);
            *at += n;
            if *at == bytes.len() {
                this.replay = None;
            }
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                Shared::park(&this.shared.read_waker, cx.waker());
                // A trip between the check and the park would be missed.
                this.check()?;
                Poll::Pending
            }
            ready => {
                if matches!(ready, Poll::Ready(Ok(()))) {
                    this.quick_ack();
                }
                ready
            }
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

impl<S> GuardedStream<S> {
    /// Notes what is being written. russh writes our version line, then
    /// reads the server's, and writes nothing more (its KEXINIT) unless it
    /// accepted that line: so the first byte written after our own version
    /// line marks the end of the version exchange, by russh's own rules
    /// (which lines count as pre-banner text, UTF-8, length) rather than a
    /// second reading of them.
    fn saw_written(&mut self, written: &[u8]) {
        if self.shared.banner_seen.load(Ordering::Relaxed) {
            return;
        }
        let rest = if self.sent_version {
            written
        } else {
            match written.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.sent_version = true;
                    &written[end + 1..]
                }
                None => return,
            }
        };
        if !rest.is_empty() {
            let _ = self.shared.banner_at.set(std::time::Instant::now());
            self.shared.banner_seen.store(true, Ordering::Release);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some((line, at)) = &mut this.ahead {
            // russh's version line, already on the wire: taken, not sent.
            let n = (line.len() - *at).min(buf.len());
            debug_assert_eq!(&line[*at..*at + n], &buf[..n], "russh's version line");
            *at += n;
            if *at == line.len() {
                this.ahead = None;
            }
            this.check()?;
            this.saw_written(&buf[..n]);
            return Poll::Ready(Ok(n));
        }
        let written = this.poll_write_op(cx, |s, cx| s.poll_write(cx, buf));
        if let Poll::Ready(Ok(n)) = written {
            this.saw_written(&buf[..n]);
        }
        written
    }

    // Not vectored: the version scan needs the bytes in one slice, and russh
    // writes from one buffer anyway.

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_op(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_write_op(cx, |s, cx| s.poll_shutdown(cx))
    }
}

/// A handle on the switch for the session task's own waits.
#[derive(Debug, Clone)]
pub(crate) struct TripWire {
    shared: Arc<Shared>,
}

impl TripWire {
    /// Whether the switch has tripped.
    pub(crate) fn is_tripped(&self) -> bool {
        self.shared.is_tripped()
    }

    /// Resolves once the switch trips (at once if it has).
    pub(crate) async fn tripped(&self) {
        loop {
            let notified = self.shared.trip.notified();
            tokio::pin!(notified);
            // Registered before the check, so a trip in between is not missed.
            notified.as_mut().enable();
            if self.is_tripped() {
                return;
            }
            notified.await;
        }
    }
}

/// Trips the switch when dropped, unless defused: a dial future dropped
/// mid-handshake takes russh's session task and the socket down with it.
pub(crate) struct Armed {
    wire: TripWire,
    armed: bool,
}

impl Armed {
    pub(crate) fn new(switch: &Switch) -> Self {
        Armed {
            wire: switch.wire(),
            armed: true,
        }
    }

    /// The dial succeeded: the client owns the switch now.
    pub(crate) fn defuse(mut self) {
        self.armed = false;
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if self.armed {
            Shared::trip(&self.wire.shared);
        }
    }
}

/// How [`race`] ended.
pub(crate) enum Raced<T> {
    Done(T),
    /// The deadline passed; the phase is read at that instant.
    TimedOut(Phase),
}

/// Runs `fut` until `deadline`. If the deadline comes first, trips the
/// switch and drops `fut` at once, whatever it was waiting on: the caller
/// then drops the session handle and waits for the socket with
/// [`Switch::shut`].
pub(crate) async fn race<F: Future>(
    fut: F,
    deadline: Instant,
    switch: &Switch,
) -> Raced<F::Output> {
    tokio::select! {
        biased;
        out = fut => Raced::Done(out),
        () = tokio::time::sleep_until(deadline) => {
            let phase = handshake_phase(switch);
            switch.trip();
            Raced::TimedOut(phase)
        }
    }
}

/// Before russh has accepted the server's version line, the handshake is in
/// version exchange; after it, in key exchange.
pub(crate) fn handshake_phase(switch: &Switch) -> Phase {
    if switch.banner_seen() {
        Phase::KeyExchange
    } else {
        Phase::VersionExchange
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    async fn untripped_stream_passes_bytes_and_the_first_write_after_our_version_ends_the_exchange()
    {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut stream, switch) = guard(a);
        b.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        let mut buf = [0u8; 11];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"SSH-2.0-x\r\n");
        assert!(!switch.banner_seen(), "reading is not accepting");
        stream.write_all(b"SSH-2.0-us").await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        assert!(!switch.banner_seen(), "our own version line");
        stream.write_all(b"\x00\x00\x01").await.unwrap();
        assert!(switch.banner_seen(), "russh's KEXINIT");
        assert!(!switch.is_tripped());
    }

    #[tokio::test]
    async fn the_trip_wire_wakes_its_waiters() {
        let (a, _b) = tokio::io::duplex(64);
        let (_stream, switch) = guard(a);
        let wire = switch.wire();
        let waiter = tokio::spawn(async move { wire.tripped().await });
        tokio::task::yield_now().await;
        switch.trip();
        waiter.await.unwrap();
        // And at once, once tripped.
        switch.wire().tripped().await;
    }
}
