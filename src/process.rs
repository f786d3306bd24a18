//! Commands as processes: streamed, capped, with stdin, every channel bounded.
//!
//! russh hands a channel's messages to one queue per channel, and its
//! session task *waits* when that queue is full: one consumer that stops
//! reading would freeze every other channel and the keepalive replies of the
//! session. And it widens the SSH window as data arrives, not as it is
//! consumed, so the server never slows down for a slow reader. So each
//! process has a pump task that always drains its channel into two bounded
//! pipes (stdout, stderr) and watches the process's deadline. A pipe that
//! fills up because nobody reads it ends the process (or, if asked, drops
//! the excess): memory per stalled process is bounded by its output cap,
//! and the session never waits on it.
//!
//! Every channel ends: at the deadline, on [`RemoteProcess::kill`], or when
//! the [`RemoteProcess`] is dropped, the pump sends a `KILL` signal request
//! (on kill and deadline) and `CHANNEL_CLOSE`, within a bounded time, and
//! ends, so no `MaxSessions` slot is kept.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::deadline::GRACE;
use crate::error::{ExecError, ExecKind};
use crate::handshake::ClientHandler;
use crate::output::{ExitStatus, Output};
use russh::client::Handle;

/// The default output cap, per stream.
pub(crate) const DEFAULT_MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// A command to run on the server: a builder in the shape of
/// `tokio::process::Command`, from [`Client::command`](crate::Client::command).
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: &ssh_dial::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tokio::io::AsyncBufReadExt;
///
/// let mut tail = client
///     .command("tail -F /var/log/syslog")
///     .timeout(Some(Duration::from_secs(3600)))
///     .spawn()
///     .await?;
/// let mut lines = tokio::io::BufReader::new(tail.stdout().unwrap()).lines();
/// while let Some(line) = lines.next_line().await? {
///     println!("{line}");
/// }
/// # Ok(()) }
/// ```
#[must_use = "a command does nothing until spawned or run"]
pub struct Command<'c> {
    handle: &'c Handle<ClientHandler>,
    closing: Arc<Closing>,
    command: String,
    env: Vec<(String, String)>,
    pty: Option<(String, u32, u32)>,
    timeout: Option<Duration>,
    max_output: Option<usize>,
    keep_running: bool,
}

impl std::fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("command", &self.command)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("pty", &self.pty)
            .field("timeout", &self.timeout)
            .field("max_output", &self.max_output)
            .field("keep_running", &self.keep_running)
            .finish()
    }
}

impl<'c> Command<'c> {
    pub(crate) fn new(
        handle: &'c Handle<ClientHandler>,
        closing: Arc<Closing>,
        command: String,
        timeout: Option<Duration>,
        max_output: Option<usize>,
    ) -> Self {
        Command {
            handle,
            closing,
            command,
            env: Vec::new(),
            pty: None,
            timeout,
            max_output,
            keep_running: false,
        }
    }

    /// Sets an environment variable for the command (an SSH `env` request;
    /// OpenSSH's sshd accepts only the names its `AcceptEnv` lists, and the
    /// command then fails with an error naming the variable).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs the command on a pseudo-terminal of this type and size (stdout
    /// and stderr then arrive together on stdout). Default is no terminal.
    pub fn pty(mut self, term: impl Into<String>, cols: u32, rows: u32) -> Self {
        self.pty = Some((term.into(), cols, rows));
        self
    }

    /// The deadline, from opening the channel to the exit status. When it
    /// passes, the command is sent `KILL` and its channel closed.
    ///
    /// If `None`, it may run forever. Default is the dialer's
    /// [`exec_timeout`](crate::DialerBuilder::exec_timeout) (60 seconds).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most output kept per stream: for [`output`](Self::output), the
    /// bytes collected (the rest is cut and [`Output::truncated`] set); for
    /// [`spawn`](Self::spawn), the bytes buffered unread. Past it the command
    /// is sent `KILL` and its channel closed, unless
    /// [`keep_running_past_max_output`](Self::keep_running_past_max_output).
    ///
    /// If `None`, unbounded. Default is the dialer's
    /// [`max_output`](crate::DialerBuilder::max_output) (16 MiB).
    pub fn max_output(mut self, max: Option<usize>) -> Self {
        self.max_output = max;
        self
    }

    /// Whether a command that exceeds [`max_output`](Self::max_output) keeps
    /// running, its further output discarded (a reader of a spawned process
    /// then gets an error once it has read what was kept). Default is
    /// `false`: it is ended.
    pub fn keep_running_past_max_output(mut self, keep: bool) -> Self {
        self.keep_running = keep;
        self
    }

    /// Starts the command and returns at once with its pipes.
    ///
    /// # Errors
    ///
    /// [`ExecError::is_invalid_input`] for a command or variable name with a
    /// NUL, an empty variable name or a zero-sized terminal, before anything
    /// is sent; otherwise as [`Client::exec`](crate::Client::exec) for
    /// opening the channel and starting the command, within the deadline.
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with its time driver enabled.
    pub async fn spawn(self) -> Result<RemoteProcess, ExecError> {
        let start = Instant::now();
        let fail = |kind| ExecError::new(kind, start.elapsed());
        self.validate()
            .map_err(|why| fail(ExecKind::InvalidInput(why)))?;
        let deadline = self
            .timeout
            .map(|t| crate::deadline::deadline_after(start, t));
        let handle = self.handle;
        let closed_or = |kind| {
            if handle.is_closed() {
                fail(ExecKind::SessionClosed)
            } else {
                fail(kind)
            }
        };
        if within(deadline, self.closing.clone().settled())
            .await
            .is_none()
        {
            return Err(fail(ExecKind::TimedOut));
        }
        let channel = match within(deadline, handle.channel_open_session()).await {
            None => return Err(fail(ExecKind::TimedOut)),
            Some(Err(russh::Error::ChannelOpenFailure(_))) => {
                return Err(closed_or(ExecKind::Refused))
            }
            Some(Err(e)) => return Err(closed_or(ExecKind::Ssh(e))),
            Some(Ok(c)) => c,
        };
        tracing::debug!(channel = %channel.id(), "exec");
        let (mut read, write) = channel.split();
        let mut early = Vec::new();
        let set_up = within(deadline, async {
            for (name, value) in &self.env {
                write.set_env(true, name.as_str(), value.as_str()).await?;
                if !replied(&mut read, &mut early).await? {
                    return Ok(Err(ExecKind::EnvRefused(name.clone())));
                }
            }
            if let Some((term, cols, rows)) = &self.pty {
                write
                    .request_pty(true, term, *cols, *rows, 0, 0, &[])
                    .await?;
                if !replied(&mut read, &mut early).await? {
                    return Ok(Err(ExecKind::Refused));
                }
            }
            write.exec(true, self.command.as_str()).await?;
            if !replied(&mut read, &mut early).await? {
                return Ok(Err(ExecKind::Refused));
            }
            Ok::<_, russh::Error>(Ok(()))
        })
        .await;
        let write = Arc::new(write);
        let refused = match set_up {
            Some(Ok(Ok(()))) => None,
            Some(Ok(Err(kind))) => Some(closed_or(kind)),
            Some(Err(e)) => Some(closed_or(ExecKind::Ssh(e))),
            None => Some(fail(ExecKind::TimedOut)),
        };
        if let Some(err) = refused {
            let _ = tokio::time::timeout(GRACE, write.close()).await;
            return Err(err);
        }

        let shared = Arc::new(Shared::new());
        let (stop_tx, stop_rx) = oneshot::channel();
        let pump = tokio::spawn(
            Pump {
                write: write.clone(),
                shared: shared.clone(),
                deadline,
                closing: self.closing.clone(),
                keep_running: self.keep_running,
                cap: self.max_output,
            }
            .run(read, early, stop_rx),
        );
        Ok(RemoteProcess {
            stdin: Some(ProcessStdin {
                inner: Box::pin(write.make_writer()),
                shared: shared.clone(),
            }),
            stdout: Some(ProcessOutput {
                shared: shared.clone(),
                stream: Stream::Stdout,
            }),
            stderr: Some(ProcessOutput {
                shared: shared.clone(),
                stream: Stream::Stderr,
            }),
            shared,
            stop: Some(stop_tx),
            pump: Some(pump),
            closing: self.closing.clone(),
            start,
        })
    }

    /// Runs the command to its end and collects its output, at most
    /// [`max_output`](Self::max_output) per stream. Stdin is closed at once.
    ///
    /// A non-zero exit is not an error: look at [`Output::status`]. The
    /// command is over once the server has sent its exit status and EOF,
    /// whether or not it then closes the channel; a channel closed without
    /// an exit status gives [`ExitStatus::NotSent`].
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn); and [`ExecError::is_timeout`] if the
    /// deadline passed, with what the command had printed so far in
    /// [`ExecError::partial_output`].
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with its time driver enabled.
    ///
    /// # Cancellation
    ///
    /// Dropping the future closes the channel (the pump task sends
    /// `CHANNEL_CLOSE` within a bounded time).
    pub async fn output(self) -> Result<Output, ExecError> {
        self.output_with(|_, _| {}).await
    }

    /// [`output`](Self::output), handing each chunk to `on_chunk` as it
    /// arrives (`true` for stderr), whatever the cap keeps.
    pub(crate) async fn output_with(
        self,
        mut on_chunk: impl FnMut(bool, &[u8]),
    ) -> Result<Output, ExecError> {
        let cap = self.max_output;
        let keep_running = self.keep_running;
        let mut process = self.spawn().await?;
        drop(process.stdin.take());
        let mut stdout = process.stdout.take().expect("just spawned");
        let mut stderr = process.stderr.take().expect("just spawned");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut truncated = false;
        let (mut out_done, mut err_done) = (false, false);
        // A stream with a gap (output dropped while buffered) keeps only
        // what came before it.
        let (mut out_cut, mut err_cut) = (false, false);
        while !(out_done && err_done) {
            let (chunk, stream_done, into, is_stderr, cut) = tokio::select! {
                r = next_chunk(&mut stdout), if !out_done => (r, &mut out_done, &mut out, false, &mut out_cut),
                r = next_chunk(&mut stderr), if !err_done => (r, &mut err_done, &mut err, true, &mut err_cut),
            };
            match chunk {
                Ok(Some(None)) => {
                    *cut = true;
                    truncated = true;
                }
                Ok(Some(Some(bytes))) => {
                    on_chunk(is_stderr, &bytes);
                    let room = if *cut {
                        0
                    } else {
                        cap.map_or(usize::MAX, |c| c.saturating_sub(into.len()))
                    };
                    into.extend_from_slice(&bytes[..bytes.len().min(room)]);
                    if bytes.len() > room {
                        truncated = true;
                        if !keep_running {
                            process.kill_quietly();
                        }
                    }
                }
                Ok(None) => *stream_done = true,
                // The stream ended badly (deadline, session gone): `wait`
                // below says why.
                Err(_) => *stream_done = true,
            }
        }
        let status = process.wait().await;
        let output = |status, truncated| Output {
            stdout: out,
            stderr: err,
            status,
            truncated,
        };
        match status {
            Ok(status) => Ok(output(status, truncated)),
            Err(e) if e.is_timeout() => Err(e.with_partial(output(ExitStatus::NotSent, truncated))),
            // Output came faster than it was collected and passed the cap
            // while buffered: cut there, as collecting would have.
            Err(e) if e.is_output_overflow() => Ok(output(ExitStatus::NotSent, true)),
            Err(e) => Err(e),
        }
    }
}

impl Command<'_> {
    fn validate(&self) -> Result<(), String> {
        if self.command.contains('\0') {
            return Err("the command contains a NUL byte".into());
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains(['\0', '=']) || value.contains('\0') {
                return Err(format!(
                    "environment variable {:?} is not a valid name and value",
                    crate::text::PeerText::new(name)
                ));
            }
        }
        if let Some((term, cols, rows)) = &self.pty {
            if *cols == 0 || *rows == 0 || term.is_empty() || term.contains('\0') {
                return Err(format!("pty {term:?} {cols}x{rows} is not a terminal"));
            }
        }
        Ok(())
    }
}

/// Waits for the reply to a request sent with `want_reply`: true for
/// success. Messages that arrive first (data, EOF) are kept for the pump.
async fn replied(
    read: &mut ChannelReadHalf,
    early: &mut Vec<ChannelMsg>,
) -> Result<bool, russh::Error> {
    loop {
        match read.wait().await {
            Some(ChannelMsg::Success) => return Ok(true),
            Some(ChannelMsg::Failure) => return Ok(false),
            Some(ChannelMsg::Close) | None => return Err(russh::Error::Disconnect),
            Some(other) => early.push(other),
        }
    }
}

/// `fut`, bounded by `deadline` if there is one; `None` if it passed.
pub(crate) async fn within<F: std::future::Future>(
    deadline: Option<Instant>,
    fut: F,
) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// A running remote command, from [`Command::spawn`].
///
/// Dropping it closes the channel (the command is not signalled; OpenSSH's
/// sshd closes its pipes); [`kill`](Self::kill) sends `KILL` first.
#[derive(Debug)]
pub struct RemoteProcess {
    stdin: Option<ProcessStdin>,
    stdout: Option<ProcessOutput>,
    stderr: Option<ProcessOutput>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<Stop>>,
    pump: Option<JoinHandle<()>>,
    closing: Arc<Closing>,
    start: Instant,
}

#[derive(Debug)]
enum Stop {
    Kill,
    /// The process was dropped: close its channel, and say so to `Closing`.
    Drop,
}

/// Closes of dropped processes not yet handed to the session. A new
/// command waits for them, so that the server has freed their session slots
/// (`MaxSessions`) before it sees the new one: messages to the session are
/// ordered, and a close sent first is handled first.
#[derive(Debug, Default)]
pub(crate) struct Closing {
    pending: std::sync::atomic::AtomicUsize,
    settled: tokio::sync::Notify,
}

impl Closing {
    fn begin(&self) {
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn end(&self) {
        if self
            .pending
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.settled.notify_waiters();
        }
    }

    async fn settled(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for RemoteProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            self.closing.begin();
            if stop.send(Stop::Drop).is_err() {
                // The pump has ended: nothing to close.
                self.closing.end();
            }
        }
    }
}

impl RemoteProcess {
    /// The command's standard input: `shutdown` (or dropping it) sends EOF.
    pub fn stdin(&mut self) -> Option<&mut ProcessStdin> {
        self.stdin.as_mut()
    }

    /// Takes the standard input, to write from another task.
    pub fn take_stdin(&mut self) -> Option<ProcessStdin> {
        self.stdin.take()
    }

    /// Takes the standard output, as an [`AsyncRead`].
    pub fn stdout(&mut self) -> Option<ProcessOutput> {
        self.stdout.take()
    }

    /// Takes the standard error, as an [`AsyncRead`].
    pub fn stderr(&mut self) -> Option<ProcessOutput> {
        self.stderr.take()
    }

    /// Waits for the command to end, and for its channel to close.
    ///
    /// Output not read is kept (up to the cap) and can still be read.
    ///
    /// # Errors
    ///
    /// [`ExecError::is_timeout`] if its deadline passed; [`ExecError::is_closed`]
    /// if the session ended under it.
    pub async fn wait(&mut self) -> Result<ExitStatus, ExecError> {
        if let Some(pump) = self.pump.take() {
            let _ = pump.await;
        }
        let state = self.shared.lock();
        let elapsed = self.start.elapsed();
        match &state.end {
            End::Running => Err(ExecError::new(ExecKind::SessionClosed, elapsed)),
            End::TimedOut => Err(ExecError::new(ExecKind::TimedOut, elapsed)),
            End::SessionGone if state.status.is_none() => {
                Err(ExecError::new(ExecKind::SessionClosed, elapsed))
            }
            End::Overflowed if state.status.is_none() => {
                Err(ExecError::new(ExecKind::OutputOverflow, elapsed))
            }
            _ => Ok(state.status.clone().unwrap_or(ExitStatus::NotSent)),
        }
    }

    /// Sends the command `KILL` and closes its channel; [`wait`](Self::wait)
    /// then returns once the channel is closed.
    pub async fn kill(&mut self) {
        self.kill_quietly();
        if let Some(pump) = self.pump.take() {
            let _ = tokio::time::timeout(GRACE * 2, pump).await;
        }
    }

    fn kill_quietly(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Stop::Kill);
        }
    }
}

/// A remote command's standard input. Writing waits for the SSH window (a
/// command that does not read its input stops the writer), but never past
/// the command's end or deadline: then it fails. `shutdown` sends EOF.
pub struct ProcessStdin {
    inner: Pin<Box<dyn AsyncWrite + Send + Sync>>,
    shared: Arc<Shared>,
}

impl ProcessStdin {
    /// Fails once the process has ended; else registers to be woken when
    /// it does, so a write parked on the window cannot outlive it.
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        let mut state = self.shared.lock();
        match state.end {
            End::Running => {
                state.stdin_waker = Some(cx.waker().clone());
                Ok(())
            }
            End::TimedOut => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the command's deadline passed",
            )),
            _ => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the command has ended",
            )),
        }
    }
}

impl std::fmt::Debug for ProcessStdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessStdin")
    }
}

impl AsyncWrite for ProcessStdin {
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

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        self.inner.as_mut().poll_shutdown(cx)
    }
}

/// A remote command's standard output or error.
#[derive(Debug)]
pub struct ProcessOutput {
    shared: Arc<Shared>,
    stream: Stream,
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// The next thing a pipe holds for its reader.
enum Next {
    Data(Bytes),
    /// Bytes dropped here, past the cap (keep-running mode).
    Gap(u64),
    /// The stream is over: cleanly, or why not.
    End(io::Result<()>),
}

impl ProcessOutput {
    fn poll_next(&self, cx: &Context<'_>, max: usize) -> Poll<Next> {
        let mut state = self.shared.lock();
        let end = state.end.clone();
        let pipe = state.pipe(self.stream);
        match pipe.chunks.front_mut() {
            Some(Chunk::Gap(n)) => {
                let n = *n;
                pipe.chunks.pop_front();
                return Poll::Ready(Next::Gap(n));
            }
            Some(Chunk::Data(front)) => {
                let data = front.split_to(front.len().min(max));
                pipe.len -= data.len();
                if front.is_empty() {
                    pipe.chunks.pop_front();
                }
                return Poll::Ready(Next::Data(data));
            }
            None => {}
        }
        if pipe.eof || end != End::Running {
            return Poll::Ready(Next::End(match end {
                End::TimedOut => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the command's deadline passed",
                )),
                End::Overflowed => Err(io::Error::other(
                    "the command was ended: its unread output passed max_output",
                )),
                _ => Ok(()),
            }));
        }
        pipe.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncRead for ProcessOutput {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match self.poll_next(cx, buf.remaining()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Next::Data(data)) => {
                buf.put_slice(&data);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Next::Gap(dropped)) => Poll::Ready(Err(io::Error::other(format!(
                "{dropped} bytes of output were dropped here, past max_output: read faster, or raise the cap"
            )))),
            Poll::Ready(Next::End(result)) => Poll::Ready(result),
        }
    }
}

/// The next chunk of a stream, for [`Command::output`]: `Ok(None)` at its
/// end, `Err` if it ended badly, `Ok(Some(None))` for a gap.
async fn next_chunk(output: &mut ProcessOutput) -> io::Result<Option<Option<Bytes>>> {
    match std::future::poll_fn(|cx| output.poll_next(cx, usize::MAX)).await {
        Next::Data(data) => Ok(Some(Some(data))),
        Next::Gap(_) => Ok(Some(None)),
        Next::End(Ok(())) => Ok(None),
        Next::End(Err(e)) => Err(e),
    }
}

/// What the pump and the pipes share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    stdout: Pipe,
    stderr: Pipe,
    status: Option<ExitStatus>,
    end: End,
    /// A writer parked on the window, to fail when the process ends.
    stdin_waker: Option<Waker>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Running,
    /// The channel closed (by the server or after our close).
    Closed,
    TimedOut,
    Overflowed,
    SessionGone,
}

#[derive(Debug, Default)]
struct Pipe {
    chunks: VecDeque<Chunk>,
    /// Bytes buffered, unread.
    len: usize,
    eof: bool,
    waker: Option<Waker>,
}

/// What a pipe holds, in order.
#[derive(Debug)]
enum Chunk {
    Data(Bytes),
    /// This many bytes were dropped here, past the cap (keep-running mode);
    /// the reader is told when it gets to them.
    Gap(u64),
}

impl Pipe {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl Shared {
    fn new() -> Self {
        Shared {
            state: Mutex::new(State {
                stdout: Pipe::default(),
                stderr: Pipe::default(),
                status: None,
                end: End::Running,
                stdin_waker: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn pipe(&mut self, stream: Stream) -> &mut Pipe {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn finish(&mut self, end: End) {
        if self.end == End::Running {
            self.end = end;
        }
        self.stdout.wake();
        self.stderr.wake();
        if let Some(w) = self.stdin_waker.take() {
            w.wake();
        }
    }
}

/// Drains the channel into the pipes until it closes, the deadline passes,
/// the process is killed or dropped, or unread output passes the cap.
struct Pump {
    write: Arc<ChannelWriteHalf<Msg>>,
    shared: Arc<Shared>,
    deadline: Option<Instant>,
    closing: Arc<Closing>,
    keep_running: bool,
    cap: Option<usize>,
}

impl Pump {
    async fn run(
        self,
        mut read: ChannelReadHalf,
        early: Vec<ChannelMsg>,
        mut stop: oneshot::Receiver<Stop>,
    ) {
        let Pump {
            write,
            shared,
            deadline,
            closing,
            keep_running,
            cap,
        } = self;
        let mut dropped = false;
        let mut early = early.into_iter();
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let sleep = tokio::time::sleep_until(deadline.unwrap_or(far));
        tokio::pin!(sleep);
        let (mut eof, mut status_seen) = (false, false);
        let ending = loop {
            let msg = match early.next() {
                Some(m) => Some(m),
                None => tokio::select! {
                    biased;
                    stopped = &mut stop => break Some(match stopped {
                        Ok(Stop::Kill) => (true, End::Closed),
                        Ok(Stop::Drop) => {
                            dropped = true;
                            (false, End::Closed)
                        }
                        Err(_) => (false, End::Closed),
                    }),
                    () = &mut sleep => break Some((true, End::TimedOut)),
                    msg = read.wait() => msg,
                },
            };
            let mut state = shared.lock();
            match msg {
                Some(ChannelMsg::Data { data }) => {
                    if let Some(end) = state.push(Stream::Stdout, data, cap, keep_running) {
                        break Some((true, end));
                    }
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    if let Some(end) = state.push(Stream::Stderr, data, cap, keep_running) {
                        break Some((true, end));
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    state.status = Some(ExitStatus::Code(exit_status));
                    status_seen = true;
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    state.status = Some(ExitStatus::Signal(signal_text(signal_name)));
                    status_seen = true;
                }
                Some(ChannelMsg::Eof) => {
                    eof = true;
                    state.stdout.eof = true;
                    state.stderr.eof = true;
                    state.stdout.wake();
                    state.stderr.wake();
                }
                Some(ChannelMsg::Close) => break None,
                None => {
                    drop(state);
                    shared.lock().finish(End::SessionGone);
                    settle(&mut stop, &closing, dropped);
                    return;
                }
                _ => {}
            }
            // Data ends at EOF and the status may come on either side of it;
            // with both in hand the command is over, closed by the server or
            // not: the close is ours to send.
            if eof && status_seen {
                break Some((false, End::Closed));
            }
        };
        if let Some((kill, end)) = ending {
            // Bounded: a healthy session takes these at once. The server's own
            // close need not be waited for: it handles our close before any
            // later request on this connection, so the session slot is free
            // for the next command.
            let _ = tokio::time::timeout(GRACE, async {
                if kill {
                    let _ = write.signal(Sig::KILL).await;
                }
                let _ = write.close().await;
            })
            .await;
            shared.lock().finish(end);
        } else {
            shared.lock().finish(End::Closed);
        }
        settle(&mut stop, &closing, dropped);
    }
}

/// Accounts for a drop of the process: handled in the loop (`dropped`), or
/// sent while the pump was ending and never read.
fn settle(stop: &mut oneshot::Receiver<Stop>, closing: &Closing, dropped: bool) {
    if dropped || matches!(stop.try_recv(), Ok(Stop::Drop)) {
        closing.end();
    }
}

impl State {
    /// Buffers `data`; returns how the process ends if the pipe's unread
    /// bytes pass the cap and it is not to keep running.
    fn push(&mut self, stream: Stream, data: Bytes, cap: Option<usize>, keep: bool) -> Option<End> {
        let pipe = self.pipe(stream);
        let room = cap.map_or(usize::MAX, |c| c.saturating_sub(pipe.len));
        if data.len() > room {
            if room > 0 {
                pipe.len += room;
                pipe.chunks.push_back(Chunk::Data(data.slice(..room)));
            }
            if !keep {
                pipe.wake();
                return Some(End::Overflowed);
            }
            let dropped = (data.len() - room) as u64;
            match pipe.chunks.back_mut() {
                Some(Chunk::Gap(n)) => *n += dropped,
                _ => pipe.chunks.push_back(Chunk::Gap(dropped)),
            }
        } else {
            pipe.len += data.len();
            pipe.chunks.push_back(Chunk::Data(data));
        }
        pipe.wake();
        None
    }
}

fn signal_text(sig: Sig) -> String {
    match sig {
        Sig::Custom(name) => name,
        other => format!("{other:?}"),
    }
}
