//! A running remote command and its pipes: what the caller holds while the
//! channel task does the work.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::error::ExecError;
use super::status::Output;
use super::Signal;
use crate::channel::io::{next, Next, Stream};
use crate::channel::{EndReason, ExitStatus, Failure, Owner, Reader, Shared, State, Writer};

/// A running remote command, from [`Command::spawn`](crate::Command::spawn):
/// the shape of `tokio::process::Child`.
///
/// Dropping it sends the command `KILL` and closes its channel, unless
/// [`kill_on_drop`](crate::Command::kill_on_drop) was turned off. Either
/// way its deadline still holds: the channel is closed by then at the
/// latest.
#[derive(Debug)]
pub struct RemoteProcess {
    stdin: Option<ProcessStdin>,
    stdout: Option<ProcessStdout>,
    stderr: Option<ProcessStderr>,
    owner: Owner,
    start: Instant,
}

impl RemoteProcess {
    /// The process once the channel task has started the command, or the
    /// error that kept it from starting.
    pub(super) fn started(
        owner: Owner,
        start: Instant,
        stdout_null: bool,
        stderr_null: bool,
    ) -> Result<RemoteProcess, ExecError> {
        let shared = owner.shared().clone();
        let mut state = shared.lock();
        if let Some(Err(kind)) = &state.outcome {
            // What came before the command started, if anything did.
            let e = error(kind.clone(), &state, start).exec_sent(state.exec_sent);
            let (stdout, stderr, truncated) = take_all(&mut state, false, false);
            if stdout.is_empty() && stderr.is_empty() && state.server_status.is_none() {
                return Err(e);
            }
            return Err(
                finish(Err(e), &state, stdout, stderr, truncated).expect_err("made from an error")
            );
        }
        let writer = state.stdin_writer.take();
        drop(state);
        let reader = |stream| Reader::new(shared.clone(), stream);
        Ok(RemoteProcess {
            stdin: writer.map(|writer| ProcessStdin(Writer::new(writer.0, shared.clone()))),
            stdout: (!stdout_null).then(|| ProcessStdout(reader(Stream::Stdout))),
            stderr: (!stderr_null).then(|| ProcessStderr(reader(Stream::Stderr))),
            owner,
            start,
        })
    }

    fn shared(&self) -> &Shared {
        self.owner.shared()
    }

    /// The command's standard input, if piped and not taken.
    pub fn stdin(&mut self) -> Option<&mut ProcessStdin> {
        self.stdin.as_mut()
    }

    /// The command's standard output, if piped and not taken.
    pub fn stdout(&mut self) -> Option<&mut ProcessStdout> {
        self.stdout.as_mut()
    }

    /// The command's standard error, if piped and not taken.
    pub fn stderr(&mut self) -> Option<&mut ProcessStderr> {
        self.stderr.as_mut()
    }

    /// Takes the standard input, to write from another task.
    pub fn take_stdin(&mut self) -> Option<ProcessStdin> {
        self.stdin.take()
    }

    /// Takes the standard output, to read from another task. Dropping it
    /// discards the output from then on.
    pub fn take_stdout(&mut self) -> Option<ProcessStdout> {
        self.stdout.take()
    }

    /// Takes the standard error, to read from another task. Dropping it
    /// discards the output from then on.
    pub fn take_stderr(&mut self) -> Option<ProcessStderr> {
        self.stderr.take()
    }

    /// Waits for the command to end: its exit status and EOF, or the
    /// channel's close. Closes stdin first if it is still held here (as
    /// `tokio::process::Child::wait` does), so that a command reading it
    /// is not left waiting. Output not read is kept (up to the cap).
    ///
    /// # Errors
    ///
    /// [`ExecError::is_timeout`] if its deadline passed; [`ExecError::is_closed`]
    /// if the session ended under it.
    ///
    /// # Cancellation
    ///
    /// Cancel safe: a `wait` cut short (by a timer, or as the loser of a
    /// `select!`) changes nothing, and the next one waits on.
    pub async fn wait(&mut self) -> Result<ExitStatus, ExecError> {
        drop(self.stdin.take());
        self.shared().wait_for(|s| s.outcome.is_some()).await;
        self.result()
    }

    /// The status if the command has ended, `None` if it is still running;
    /// never waits.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ExecError> {
        if self.shared().lock().outcome.is_none() {
            return Ok(None);
        }
        self.result().map(Some)
    }

    fn result(&self) -> Result<ExitStatus, ExecError> {
        let state = self.shared().lock();
        match &state.outcome {
            Some(Ok(status)) => Ok(status.clone()),
            Some(Err(kind)) => Err(error(kind.clone(), &state, self.start)),
            None => unreachable!("asked only once the command has ended"),
        }
    }

    /// Waits for the command to end and collects what is left of its
    /// output (nothing from a stream taken with `take_stdout` or
    /// `take_stderr`), at most the cap per stream.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait), with the output so far (and the status, if
    /// the server had sent it) in [`ExecError::partial_output`].
    ///
    /// # Cancellation
    ///
    /// Dropping the future drops the process: see [`RemoteProcess`].
    pub async fn wait_with_output(mut self) -> Result<Output, ExecError> {
        let result = self.wait().await;
        let mut state = self.shared().lock();
        let (stdout, stderr, truncated) =
            take_all(&mut state, self.stdout.is_none(), self.stderr.is_none());
        finish(result, &state, stdout, stderr, truncated)
    }

    /// [`wait_with_output`](Self::wait_with_output), reading as the output
    /// arrives and handing each chunk to `on_chunk` (`true` for stderr),
    /// whatever the cap keeps.
    pub(crate) async fn collect_streaming(
        mut self,
        cap: Option<usize>,
        mut on_chunk: impl FnMut(bool, &[u8]),
    ) -> Result<Output, ExecError> {
        let mut readers = [
            self.stdout.take().map(|r| r.0),
            self.stderr.take().map(|r| r.0),
        ];
        let mut kept = [Vec::new(), Vec::new()];
        let mut truncated = false;
        while readers.iter().any(Option::is_some) {
            let (i, next) = tokio::select! {
                next = next(&readers[0]), if readers[0].is_some() => (0, next),
                next = next(&readers[1]), if readers[1].is_some() => (1, next),
            };
            match next {
                Next::Data(data) => {
                    on_chunk(i == 1, &data);
                    let room = cap.map_or(usize::MAX, |c| c.saturating_sub(kept[i].len()));
                    kept[i].extend_from_slice(&data[..data.len().min(room)]);
                    truncated |= data.len() > room;
                }
                Next::Gap(_) => truncated = true,
                Next::Copied => unreachable!("nothing to copy into"),
                // `wait` below says how it ended.
                Next::End(_) => readers[i] = None,
            }
        }
        let result = self.wait().await;
        let [stdout, stderr] = kept;
        let state = self.shared().lock();
        finish(result, &state, stdout, stderr, truncated)
    }

    /// Asks for the command to be sent `KILL` and its channel closed, and
    /// returns at once; [`wait`](Self::wait) then gives
    /// [`ExitStatus::EndedByUs`]`(`[`EndReason::Kill`]`)`, or the status the
    /// server had already sent. Does nothing to a command that has ended.
    ///
    /// # Errors
    ///
    /// None today; the `Result` keeps the shape of
    /// `tokio::process::Child::start_kill`.
    pub fn start_kill(&mut self) -> Result<(), ExecError> {
        let mut state = self.shared().lock();
        if state.outcome.is_none() {
            state.kill = true;
            drop(state);
            self.shared().poke();
        }
        Ok(())
    }

    /// Sends the command `KILL`, closes its channel and waits until it has
    /// ended (within a second of a healthy server's answer; bounded by
    /// the command's deadline in any case).
    ///
    /// OpenSSH's sshd (7.9 and later) kills the command's process group,
    /// except for root logins, where it refuses signals: there the command
    /// runs on until it notices its closed pipes.
    ///
    /// # Errors
    ///
    /// None today; the `Result` keeps the shape of
    /// `tokio::process::Child::kill`.
    ///
    /// # Cancellation
    ///
    /// Cancel safe: the kill is asked for at once, and a later `kill` or
    /// `wait` waits for the same end.
    pub async fn kill(&mut self) -> Result<(), ExecError> {
        self.start_kill()?;
        self.shared().wait_for(|s| s.outcome.is_some()).await;
        Ok(())
    }

    /// Sends the command a signal (an SSH `signal` request; see [`Signal`]
    /// for what OpenSSH's sshd does with it). Does nothing to a command
    /// that has ended.
    ///
    /// # Errors
    ///
    /// None today; a `Result` for signals that may fail to send later.
    pub fn signal(&mut self, signal: Signal) -> Result<(), ExecError> {
        let mut state = self.shared().lock();
        if state.outcome.is_none() {
            state.signals.push(signal.to_russh());
            drop(state);
            self.shared().poke();
        }
        Ok(())
    }
}

/// What the pipes hold (but those whose reader was taken), and whether
/// bytes were dropped from them: the buffers themselves, not copies.
fn take_all(state: &mut State, stdout_taken: bool, stderr_taken: bool) -> (Vec<u8>, Vec<u8>, bool) {
    let mut truncated = false;
    let mut take = |taken: bool, pipe: &mut super::channel::Pipe| {
        if taken {
            return Vec::new();
        }
        let (bytes, cut) = pipe.take_all();
        truncated |= cut;
        Vec::from(bytes)
    };
    let stdout = take(stdout_taken, &mut state.stdout);
    let stderr = take(stderr_taken, &mut state.stderr);
    (stdout, stderr, truncated)
}

/// The error for `kind`, timed from `start` to the end.
fn error(kind: Failure, state: &State, start: Instant) -> ExecError {
    let at = state.ended_at.unwrap_or_else(Instant::now);
    ExecError::new(kind, at.saturating_duration_since(start))
}

/// The output, or the error with the output so far.
fn finish(
    result: Result<ExitStatus, ExecError>,
    state: &State,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
) -> Result<Output, ExecError> {
    match result {
        Ok(status) => Ok(Output {
            stdout,
            stderr,
            status,
            truncated,
        }),
        Err(e) => {
            let status = state.server_status.clone().unwrap_or(if e.is_timeout() {
                ExitStatus::EndedByUs(EndReason::Deadline)
            } else {
                ExitStatus::NotSent
            });
            Err(e.with_partial(Output {
                stdout,
                stderr,
                status,
                truncated,
            }))
        }
    }
}

/// A remote command's standard input. Writing waits for the SSH window (a
/// command that does not read its input stops the writer), but never past
/// the command's end or deadline: then it fails. `shutdown`, or dropping
/// it, sends EOF.
#[derive(Debug)]
pub struct ProcessStdin(Writer);

impl AsyncWrite for ProcessStdin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    /// Sends EOF: the command reads the end of its input once it has read
    /// everything written before.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A remote command's standard output, an [`AsyncRead`]: at most the
/// output cap is buffered unread; past it bytes are dropped, and the read
/// that reaches the place gets an error saying how many, the next one the
/// bytes after. The stream ends at the command's EOF, or with an error
/// (`TimedOut` at the deadline, `ConnectionAborted` if the session ended).
#[derive(Debug)]
pub struct ProcessStdout(Reader);

/// A remote command's standard error: as [`ProcessStdout`].
#[derive(Debug)]
pub struct ProcessStderr(Reader);

impl AsyncRead for ProcessStdout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read(cx, buf)
    }
}

impl AsyncRead for ProcessStderr {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read(cx, buf)
    }
}
