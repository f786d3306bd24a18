//! A command's channel, owned by one task from the open request to the close.
//!
//! Why a task, and not the caller's future: three things in russh make a
//! channel outlive a future that is dropped around it.
//!
//! - A channel whose open is pending when its future is dropped is kept by
//!   russh's session when the server confirms it: the server's session slot
//!   (`MaxSessions`) is taken for the life of the connection.
//! - Dropping russh's write half sends no `CHANNEL_CLOSE`; neither does
//!   dropping the read half.
//! - russh's session task *waits* when a channel's queue is full, so a
//!   channel nobody drains freezes every other channel and the keepalive
//!   replies of the connection.
//!
//! So no future a caller can drop ever holds a channel. [`run`] opens it,
//! sends the requests, drains it into two bounded pipes, and closes it,
//! whatever the caller does: the caller's handles ([`Shared`]) only ask.
//! Every wait of the task is in one `select!` with the channel's messages,
//! the deadline and the caller's requests, so it always drains, never waits
//! past the deadline, and sees a dropped caller at once. An open the server
//! has not answered when the caller goes (or the deadline passes) is
//! awaited until the server answers or the session ends, and then closed.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use russh::client::{Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::error::{ChannelAt, ExecKind};
use super::status::{EndReason, ExitStatus};
use super::{quote, Pty};
use crate::deadline::GRACE;
use crate::handshake::ClientHandler;

/// How long a command that has sent its status and EOF is given to close
/// its channel before we close it. A server that closes first spares russh
/// a channel entry: russh 0.65 keeps the entry of a channel *we* close first
/// until the session ends (it drops the server's answering close unread).
/// New commands wait for this, so that the server's session slot is free
/// before their open.
const SERVER_CLOSE_WAIT: Duration = Duration::from_millis(50);

/// What the task is to run.
#[derive(Debug)]
pub(crate) struct Request {
    /// The command line, with its `cd` if any.
    pub(crate) line: String,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) pty: Option<Pty>,
    pub(crate) deadline: Option<Instant>,
    /// Send EOF as soon as the command starts.
    pub(crate) stdin_null: bool,
    pub(crate) kill_on_drop: bool,
    pub(crate) kill_at_cap: bool,
}

/// What the task and the caller's handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the task: the caller asked for something.
    control: Notify,
    /// Wakes waiters for the start and the end.
    changed: Notify,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) stdout: Pipe,
    pub(crate) stderr: Pipe,
    /// The command has started (the server accepted the exec request).
    pub(crate) started: bool,
    /// How it ended, once it has; set once.
    pub(crate) outcome: Option<Result<ExitStatus, ExecKind>>,
    pub(crate) ended_at: Option<Instant>,
    /// The server's exit-status or exit-signal, once sent.
    pub(crate) server_status: Option<ExitStatus>,
    /// The writer for stdin, for `spawn` to hand out (piped stdin only).
    pub(crate) stdin_writer: Option<StdinWriter>,
    /// A writer parked on the window, to fail when the process ends.
    pub(crate) stdin_waker: Option<Waker>,
    // What the caller asked for, until the task takes it.
    pub(crate) stdin_closed: bool,
    pub(crate) signals: Vec<Sig>,
    pub(crate) kill: bool,
    pub(crate) owner_gone: bool,
    owner_gone_seen: bool,
    /// A dropped owner counted in [`Closing`]: settled once the close is
    /// queued, or once there is none to send.
    drop_pending: bool,
    task_done: bool,
}

/// russh's writer for the channel's data.
pub(crate) struct StdinWriter(pub(crate) Pin<Box<dyn AsyncWrite + Send + Sync>>);

impl std::fmt::Debug for StdinWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StdinWriter")
    }
}

/// One stream's bytes, buffered for its reader, in one contiguous buffer:
/// `output` takes it as the result without a copy (a copy would hold the
/// cap twice), and a reader takes bytes from its front.
#[derive(Debug)]
pub(crate) struct Pipe {
    /// Discard everything (`Stdio::null`, or the reader is gone).
    pub(crate) null: bool,
    /// The most unread bytes kept; `None` for no limit.
    cap: Option<usize>,
    /// The unread bytes.
    pub(crate) buf: BytesMut,
    /// Where bytes were dropped past the cap: the count of bytes kept before
    /// the place (over the stream's life), and how many were dropped there.
    pub(crate) gaps: VecDeque<(u64, u64)>,
    /// Bytes kept so far, and bytes read so far, over the stream's life.
    kept: u64,
    pub(crate) read: u64,
    pub(crate) eof: bool,
    pub(crate) waker: Option<Waker>,
}

/// What a pipe has next for its reader.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Up to this many bytes may be read before the next gap.
    Data(usize),
    /// This many bytes were dropped here, past the cap.
    Gap(u64),
    Empty,
}

impl Pipe {
    pub(crate) fn new(null: bool, cap: Option<usize>) -> Self {
        Pipe {
            null,
            cap,
            buf: BytesMut::new(),
            gaps: VecDeque::new(),
            kept: 0,
            read: 0,
            eof: false,
            waker: None,
        }
    }

    pub(crate) fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Discards what is buffered and all that comes later.
    pub(crate) fn discard(&mut self) {
        self.null = true;
        self.buf = BytesMut::new();
        self.gaps.clear();
    }

    /// Buffers `data`, up to the cap; returns whether some was dropped.
    fn push(&mut self, data: &[u8]) -> bool {
        if self.null {
            return false;
        }
        let room = self
            .cap
            .map_or(usize::MAX, |c| c.saturating_sub(self.buf.len()));
        let take = data.len().min(room);
        self.buf.extend_from_slice(&data[..take]);
        self.kept += take as u64;
        let dropped = (data.len() - take) as u64;
        if dropped > 0 {
            match self.gaps.back_mut() {
                Some((at, n)) if *at == self.kept => *n += dropped,
                _ => self.gaps.push_back((self.kept, dropped)),
            }
        }
        self.wake();
        dropped > 0
    }

    /// What the reader gets next.
    pub(crate) fn next(&mut self) -> Chunk {
        match self.gaps.front() {
            Some(&(at, n)) if at == self.read => {
                self.gaps.pop_front();
                Chunk::Gap(n)
            }
            Some(&(at, _)) => Chunk::Data((at - self.read) as usize),
            None if self.buf.is_empty() => Chunk::Empty,
            None => Chunk::Data(self.buf.len()),
        }
    }

    /// Takes up to `n` bytes from the front (at most what [`next`](Self::next) allowed).
    pub(crate) fn take(&mut self, n: usize) -> BytesMut {
        let n = n.min(self.buf.len());
        self.read += n as u64;
        self.buf.split_to(n)
    }

    /// Drops `n` bytes from the front, read by copying them.
    pub(crate) fn advance(&mut self, n: usize) {
        bytes::Buf::advance(&mut self.buf, n);
        self.read += n as u64;
    }

    /// Everything unread, as one buffer, and whether bytes were dropped.
    pub(crate) fn take_all(&mut self) -> (BytesMut, bool) {
        let truncated = !self.gaps.is_empty();
        self.gaps.clear();
        let all = std::mem::take(&mut self.buf);
        self.read += all.len() as u64;
        (all, truncated)
    }
}

impl Shared {
    pub(crate) fn new(stdout: Pipe, stderr: Pipe) -> Self {
        Shared {
            state: Mutex::new(State {
                stdout,
                stderr,
                started: false,
                outcome: None,
                ended_at: None,
                server_status: None,
                stdin_writer: None,
                stdin_waker: None,
                stdin_closed: false,
                signals: Vec::new(),
                kill: false,
                owner_gone: false,
                owner_gone_seen: false,
                drop_pending: false,
                task_done: false,
            }),
            control: Notify::new(),
            changed: Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the task for something (set in the state first).
    pub(crate) fn poke(&self) {
        self.control.notify_one();
    }

    /// Waits until `done` holds for the state. Cancel safe.
    pub(crate) async fn wait_for(&self, done: impl Fn(&State) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.lock()) {
                return;
            }
            notified.await;
        }
    }

    /// The owner (the spawn future, then the process) is gone: the task is
    /// to close the channel, so that a new command waits for that close.
    pub(crate) fn owner_dropped(&self, closing: &Closing, kill_on_drop: bool) {
        let mut state = self.lock();
        if state.task_done || state.owner_gone {
            return;
        }
        state.owner_gone = true;
        // A close follows unless the process has ended (its close is
        // already queued) or keeps running (kill_on_drop is off).
        let closes = state.outcome.is_none() && (kill_on_drop || !state.started);
        if closes {
            closing.begin();
            state.drop_pending = true;
        }
        drop(state);
        self.poke();
    }

    fn settle_drop(&self, closing: &Closing) {
        let mut state = self.lock();
        if std::mem::take(&mut state.drop_pending) {
            closing.end();
        }
    }

    fn end(&self, outcome: Result<ExitStatus, ExecKind>) {
        let mut state = self.lock();
        if state.outcome.is_none() {
            state.outcome = Some(outcome);
            state.ended_at = Some(Instant::now());
        }
        state.stdout.wake();
        state.stderr.wake();
        if let Some(w) = state.stdin_waker.take() {
            w.wake();
        }
        drop(state);
        self.changed.notify_waiters();
    }
}

/// Closes that a dropped command owes the server and has not yet queued.
/// A new command waits for them, so that the server has freed their session
/// slots (`MaxSessions`) before it sees the new open: messages to the
/// session are ordered, and a close queued first is handled first.
#[derive(Debug, Default)]
pub(crate) struct Closing {
    pending: AtomicUsize,
    settled: Notify,
}

impl Closing {
    fn begin(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    fn end(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_waiters();
        }
    }

    async fn settled(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Marks the task done however it ends (even dropped with its runtime):
/// a waiter is never left waiting, a drop never left counted.
struct TaskDone<'a> {
    shared: &'a Shared,
    closing: &'a Closing,
}

impl Drop for TaskDone<'_> {
    fn drop(&mut self) {
        self.shared.lock().task_done = true;
        self.shared.settle_drop(self.closing);
        self.shared.end(Err(ExecKind::SessionClosed));
    }
}

type OpenResult = Result<Channel<Msg>, russh::Error>;

/// Runs a command's channel from its open to its close.
pub(crate) async fn run(
    handle: Arc<Handle<ClientHandler>>,
    request: Request,
    shared: Arc<Shared>,
    closing: Arc<Closing>,
) {
    let _done = TaskDone {
        shared: &shared,
        closing: &closing,
    };
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let deadline = tokio::time::sleep_until(request.deadline.unwrap_or(far));
    tokio::pin!(deadline);

    // Closes owed by dropped commands go first.
    tokio::select! {
        biased;
        () = owner_gone(&shared) => return,
        () = &mut deadline => return shared.end(Err(ExecKind::TimedOut(ChannelAt::NeverOpened))),
        () = closing.settled() => {}
    }

    let open = handle.channel_open_session();
    tokio::pin!(open);
    let channel = tokio::select! {
        biased;
        opened = &mut open => match opened {
            Ok(channel) => channel,
            Err(e) => return shared.end(Err(open_failed(&handle, e))),
        },
        () = &mut deadline => {
            shared.end(Err(ExecKind::TimedOut(ChannelAt::NeverOpened)));
            return close_when_opened(open, &shared, &closing).await;
        }
        () = owner_gone(&shared) => return close_when_opened(open, &shared, &closing).await,
    };
    tracing::debug!(channel = %channel.id(), "exec");
    let (read, write) = channel.split();
    let write = Arc::new(write);
    if !request.stdin_null {
        shared.lock().stdin_writer = Some(StdinWriter(Box::pin(write.make_writer())));
    }
    let mut task = Task {
        read,
        write,
        shared: &shared,
        closing: &closing,
        phase: Phase::Env(0),
        queue: VecDeque::new(),
        refused_env: Vec::new(),
        eof: false,
        closing_since: None,
        server_close_by: None,
        counted: false,
        request,
    };
    task.run(deadline).await;
}

/// The session's refusal or failure to open the channel, as an error.
fn open_failed(handle: &Handle<ClientHandler>, e: russh::Error) -> ExecKind {
    match e {
        russh::Error::ChannelOpenFailure(reason) => {
            ExecKind::Refused(format!("a session channel: {}", open_failure_text(&reason)))
        }
        _ if handle.is_closed() => ExecKind::SessionClosed,
        other => ExecKind::Ssh(other.to_string()),
    }
}

/// RFC 4254's name for a channel open failure.
pub(crate) fn open_failure_text(reason: &russh::ChannelOpenFailure) -> String {
    match reason {
        russh::ChannelOpenFailure::AdministrativelyProhibited => {
            "administratively prohibited".into()
        }
        russh::ChannelOpenFailure::ConnectFailed => "connect failed".into(),
        russh::ChannelOpenFailure::UnknownChannelType => "unknown channel type".into(),
        russh::ChannelOpenFailure::ResourceShortage => "resource shortage".into(),
        russh::ChannelOpenFailure::Other { code, reason } => format!("{reason} (code {code})"),
    }
}

/// Resolves once the caller has gone.
async fn owner_gone(shared: &Shared) {
    loop {
        let notified = shared.control.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.lock().owner_gone {
            return;
        }
        notified.await;
    }
}

/// An open nobody wants any more: waits for the server's answer (as long as
/// the session lives) and closes the channel if it was opened. A dropped
/// owner stays counted in [`Closing`] for at most [`GRACE`], so that a
/// server that never answers delays other commands by no more than that.
async fn close_when_opened<F>(mut open: Pin<&mut F>, shared: &Shared, closing: &Closing)
where
    F: Future<Output = OpenResult>,
{
    closing.begin();
    let mut counted = true;
    let grace = tokio::time::sleep(GRACE);
    tokio::pin!(grace);
    let opened = loop {
        tokio::select! {
            opened = &mut open => break opened,
            () = &mut grace, if counted => {
                counted = false;
                closing.end();
                shared.settle_drop(closing);
            }
        }
    };
    if let Ok(channel) = opened {
        tracing::debug!(channel = %channel.id(), "closing a channel opened after its command was given up");
        let _ = tokio::time::timeout(GRACE, channel.close()).await;
    }
    if counted {
        closing.end();
    }
    shared.settle_drop(closing);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the reply to the env request with this index.
    Env(usize),
    Pty,
    Exec,
    Running,
    /// The outcome is out; the close is queued or being queued.
    Closing,
}

/// Why the channel is to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// EOF and exit status in hand: the command is over.
    Done,
    ServerClosed,
    SessionGone,
    Deadline,
    Cap,
    Kill,
    /// The owner went away.
    Abandoned,
    /// The server refused a request (named).
    Refused(&'static str),
}

/// Something to send, one at a time, in order.
#[derive(Debug)]
enum Action {
    Env(usize),
    Pty,
    Exec,
    Eof,
    Signal(Sig),
    Close,
}

/// A message on its way to the session's queue; `true` for the close.
type Sending = Pin<Box<dyn Future<Output = (bool, Result<(), russh::Error>)> + Send>>;

struct Task<'a> {
    read: ChannelReadHalf,
    write: Arc<ChannelWriteHalf<Msg>>,
    shared: &'a Shared,
    closing: &'a Closing,
    request: Request,
    phase: Phase,
    queue: VecDeque<Action>,
    refused_env: Vec<usize>,
    /// EOF sent (or queued).
    eof: bool,
    /// When the channel began to close; it is given up on [`GRACE`] later.
    closing_since: Option<Instant>,
    /// The command is over: until then, the server is given the chance to
    /// close the channel first (counted in [`Closing`] meanwhile).
    server_close_by: Option<Instant>,
    /// This task's own count in [`Closing`].
    counted: bool,
}

enum Event {
    /// A message was queued (`close`: it was the channel's close).
    Sent {
        close: bool,
        result: Result<(), russh::Error>,
    },
    Message(Option<ChannelMsg>),
    Deadline,
    Control,
    Timer,
}

impl Task<'_> {
    async fn run(&mut self, mut deadline: Pin<&mut tokio::time::Sleep>) {
        let (first, phase) = self.first_request();
        self.queue.push_back(first);
        self.phase = phase;
        let mut sending: Option<Sending> = None;
        let mut deadline_passed = false;
        let timer = tokio::time::sleep(GRACE);
        tokio::pin!(timer);
        loop {
            if sending.is_none() {
                if let Some(action) = self.queue.pop_front() {
                    sending = Some(self.send(action));
                }
            }
            let timer_at = self.timer_at();
            if let Some(at) = timer_at {
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
            }
            // The caller and the clocks before the channel: a flood keeps
            // the channel always ready, and must not starve them.
            let event = tokio::select! {
                biased;
                () = self.shared.control.notified() => Event::Control,
                () = &mut deadline, if !deadline_passed => Event::Deadline,
                () = &mut timer, if timer_at.is_some() => Event::Timer,
                (close, result) = async { sending.as_mut().expect("checked").await }, if sending.is_some() => {
                    Event::Sent { close, result }
                }
                msg = self.read.wait() => Event::Message(msg),
            };
            match event {
                Event::Sent { .. } => sending = None,
                Event::Deadline => deadline_passed = true,
                _ => {}
            }
            let over = if self.phase == Phase::Closing {
                self.closing_event(event)
            } else {
                match self.event(event) {
                    Some(stop) => self.stop(stop),
                    None => false,
                }
            };
            if over {
                return;
            }
        }
    }

    /// The first request to send, and the phase that waits for its reply.
    fn first_request(&self) -> (Action, Phase) {
        if !self.request.env.is_empty() {
            (Action::Env(0), Phase::Env(0))
        } else if self.request.pty.is_some() {
            (Action::Pty, Phase::Pty)
        } else {
            (Action::Exec, Phase::Exec)
        }
    }

    fn timer_at(&self) -> Option<Instant> {
        let give_up = self.closing_since.map(|since| since + GRACE);
        match (self.server_close_by, give_up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn send(&mut self, action: Action) -> Sending {
        let write = self.write.clone();
        let close = matches!(action, Action::Close);
        let sending: Pin<Box<dyn Future<Output = Result<(), russh::Error>> + Send>> = match action {
            Action::Env(i) => {
                let (name, value) = self.request.env[i].clone();
                Box::pin(async move { write.set_env(true, name, value).await })
            }
            Action::Pty => {
                let pty = self.request.pty.clone().expect("a pty was asked for");
                Box::pin(async move {
                    write
                        .request_pty(true, &pty.term, pty.cols, pty.rows, 0, 0, &[])
                        .await
                })
            }
            Action::Exec => {
                let line = self.exec_line();
                Box::pin(async move { write.exec(true, line).await })
            }
            Action::Eof => Box::pin(async move { write.eof().await }),
            Action::Signal(sig) => Box::pin(async move { write.signal(sig).await }),
            Action::Close => Box::pin(async move { write.close().await }),
        };
        Box::pin(async move { (close, sending.await) })
    }

    /// The command line, with the variables the server refused exported
    /// by the shell instead (sshd's default `AcceptEnv` takes almost none).
    fn exec_line(&self) -> String {
        if self.refused_env.is_empty() {
            return self.request.line.clone();
        }
        let mut line = String::from("export");
        for &i in &self.refused_env {
            let (name, value) = &self.request.env[i];
            line.push(' ');
            line.push_str(name);
            line.push('=');
            line.push_str(&quote(value));
        }
        line.push_str("; ");
        line.push_str(&self.request.line);
        line
    }

    /// Handles an event before the channel began to close; says if it must.
    fn event(&mut self, event: Event) -> Option<Stop> {
        match event {
            Event::Sent { result: Ok(()), .. } | Event::Timer => None,
            Event::Sent { result: Err(_), .. } => Some(Stop::SessionGone),
            Event::Message(msg) => self.message(msg),
            Event::Deadline => Some(Stop::Deadline),
            Event::Control => self.control(),
        }
    }

    /// Handles an event while the channel closes; true when the task is over.
    fn closing_event(&mut self, event: Event) -> bool {
        match event {
            // The close is queued: a new command's open now comes after it.
            Event::Sent {
                close: true,
                result: Ok(()),
            } => self.finish(),
            Event::Sent { result: Err(_), .. } | Event::Message(None) => self.finish(),
            // The server closed first, and russh has answered with our close.
            Event::Message(Some(ChannelMsg::Close)) => {
                self.queue.clear();
                self.finish()
            }
            Event::Timer => match self.server_close_by.take() {
                // The server kept the channel open: close it ourselves.
                Some(_) => {
                    self.queue.push_back(Action::Close);
                    self.closing_since = Some(Instant::now());
                    false
                }
                _ => self.finish(),
            },
            Event::Control => {
                self.shared.lock().owner_gone_seen = true;
                false
            }
            Event::Sent { .. } | Event::Message(Some(_)) | Event::Deadline => false,
        }
    }

    fn message(&mut self, msg: Option<ChannelMsg>) -> Option<Stop> {
        let Some(msg) = msg else {
            return Some(Stop::SessionGone);
        };
        match msg {
            ChannelMsg::Data { data } => return self.output(false, data),
            ChannelMsg::ExtendedData { data, ext: 1 } => return self.output(true, data),
            ChannelMsg::ExitStatus { exit_status } => {
                // Statuses are 0-255 in practice; a larger one wraps as
                // a C int would.
                self.shared.lock().server_status = Some(ExitStatus::Code(exit_status as i32));
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                ..
            } => {
                self.shared.lock().server_status = Some(ExitStatus::Signal {
                    name: signal_text(signal_name),
                    core_dumped,
                });
            }
            ChannelMsg::Eof => {
                let mut state = self.shared.lock();
                state.stdout.eof = true;
                state.stderr.eof = true;
                state.stdout.wake();
                state.stderr.wake();
            }
            ChannelMsg::Success => return self.replied(true),
            ChannelMsg::Failure => return self.replied(false),
            ChannelMsg::Close => return Some(Stop::ServerClosed),
            _ => {}
        }
        self.done()
    }

    /// Data or extended data for a pipe.
    fn output(&mut self, stderr: bool, data: Bytes) -> Option<Stop> {
        let mut state = self.shared.lock();
        let pipe = if stderr {
            &mut state.stderr
        } else {
            &mut state.stdout
        };
        let over = pipe.push(&data);
        (over && self.request.kill_at_cap).then_some(Stop::Cap)
    }

    /// EOF and the status both in hand, while running: the command is over.
    fn done(&self) -> Option<Stop> {
        if self.phase != Phase::Running {
            return None;
        }
        let state = self.shared.lock();
        (state.stdout.eof && state.server_status.is_some()).then_some(Stop::Done)
    }

    /// The reply to the request under way.
    fn replied(&mut self, ok: bool) -> Option<Stop> {
        match self.phase {
            Phase::Env(i) => {
                if !ok {
                    let name = &self.request.env[i].0;
                    if !is_shell_name(name) {
                        return Some(Stop::Refused("an environment variable"));
                    }
                    self.refused_env.push(i);
                }
                self.phase = if i + 1 < self.request.env.len() {
                    self.queue.push_back(Action::Env(i + 1));
                    Phase::Env(i + 1)
                } else if self.request.pty.is_some() {
                    self.queue.push_back(Action::Pty);
                    Phase::Pty
                } else {
                    self.queue.push_back(Action::Exec);
                    Phase::Exec
                };
                None
            }
            Phase::Pty if !ok => Some(Stop::Refused("the terminal (pty-req)")),
            Phase::Pty => {
                self.phase = Phase::Exec;
                self.queue.push_back(Action::Exec);
                None
            }
            Phase::Exec if !ok => Some(Stop::Refused("the command (exec)")),
            Phase::Exec => {
                self.phase = Phase::Running;
                if self.request.stdin_null {
                    self.queue.push_back(Action::Eof);
                    self.eof = true;
                }
                self.shared.lock().started = true;
                self.shared.changed.notify_waiters();
                // Requests made while it was starting, and what came first.
                self.control().or_else(|| self.done())
            }
            // A stray reply.
            Phase::Running | Phase::Closing => None,
        }
    }

    /// Takes what the caller asked for.
    fn control(&mut self) -> Option<Stop> {
        let mut state = self.shared.lock();
        if state.owner_gone && !state.owner_gone_seen {
            state.owner_gone_seen = true;
            if self.phase != Phase::Running || self.request.kill_on_drop {
                return Some(Stop::Abandoned);
            }
            // Detached: it runs on to its end or deadline, its output
            // drained and dropped, its stdin closed.
            state.stdout.discard();
            state.stderr.discard();
            state.stdin_closed = true;
            drop(state);
            self.shared.settle_drop(self.closing);
            state = self.shared.lock();
        }
        if self.phase != Phase::Running {
            return None;
        }
        if state.kill {
            return Some(Stop::Kill);
        }
        for sig in state.signals.drain(..) {
            self.queue.push_back(Action::Signal(sig));
        }
        if state.stdin_closed && !self.eof {
            self.eof = true;
            self.queue.push_back(Action::Eof);
        }
        None
    }

    /// Begins to end the channel for `stop`; true when the task is over.
    fn stop(&mut self, stop: Stop) -> bool {
        let running = self.phase == Phase::Running;
        // The exec request is out: the command may be running.
        let exec_sent = running || self.phase == Phase::Exec;
        let server_status = self.shared.lock().server_status.clone();
        let ours = |why| Ok(server_status.clone().unwrap_or(ExitStatus::EndedByUs(why)));
        let (outcome, kill) = match stop {
            Stop::Done => {
                // Over: said at once; the close may wait for the server's.
                self.shared
                    .end(Ok(server_status.unwrap_or(ExitStatus::NotSent)));
                self.closing.begin();
                self.counted = true;
                self.phase = Phase::Closing;
                self.closing_since = Some(Instant::now());
                self.server_close_by = Some(Instant::now() + SERVER_CLOSE_WAIT);
                return false;
            }
            Stop::ServerClosed => {
                // russh has answered the server's close with ours.
                self.shared.end(if exec_sent {
                    Ok(server_status.unwrap_or(ExitStatus::NotSent))
                } else {
                    Err(ExecKind::Ssh(
                        "the server closed the channel before starting the command".into(),
                    ))
                });
                self.shared.settle_drop(self.closing);
                return true;
            }
            Stop::SessionGone => {
                let eof = self.shared.lock().stdout.eof;
                self.shared.end(match server_status {
                    Some(status) if eof => Ok(status),
                    _ => Err(ExecKind::SessionClosed),
                });
                return true;
            }
            Stop::Deadline => {
                let at = if running {
                    ChannelAt::Running
                } else {
                    ChannelAt::SettingUp
                };
                (Err(ExecKind::TimedOut(at)), exec_sent)
            }
            Stop::Cap => (ours(EndReason::MaxOutput), true),
            Stop::Kill => (ours(EndReason::Kill), true),
            Stop::Abandoned => (ours(EndReason::Kill), exec_sent),
            Stop::Refused(what) => (Err(ExecKind::Refused(what.into())), false),
        };
        // Said at once; a new command waits for the close (counted).
        self.shared.end(outcome);
        self.closing.begin();
        self.counted = true;
        self.phase = Phase::Closing;
        self.closing_since = Some(Instant::now());
        self.queue.clear();
        if kill {
            self.queue.push_back(Action::Signal(Sig::KILL));
        }
        self.queue.push_back(Action::Close);
        false
    }

    /// Settles what was counted; the task is over.
    fn finish(&mut self) -> bool {
        if std::mem::take(&mut self.counted) {
            self.closing.end();
        }
        self.shared.settle_drop(self.closing);
        true
    }
}

/// A name `export` takes: letters, digits and `_`, not starting with a digit.
fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn signal_text(sig: Sig) -> String {
    match sig {
        Sig::Custom(name) => name,
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_keeps_up_to_its_cap_and_marks_the_gap() {
        let mut pipe = Pipe::new(false, Some(4));
        assert!(!pipe.push(b"ab"));
        assert!(pipe.push(b"cdef"));
        assert!(pipe.push(b"gh"));
        assert_eq!(&pipe.buf[..], b"abcd");
        assert_eq!(pipe.gaps, [(4, 4)]);
        // Read up to the gap, then the gap, then what came after it.
        assert!(matches!(pipe.next(), Chunk::Data(4)));
        assert_eq!(&pipe.take(3)[..], b"abc");
        assert!(matches!(pipe.next(), Chunk::Data(1)));
        assert_eq!(&pipe.take(9)[..], b"d");
        assert!(!pipe.push(b"ijk"));
        assert!(matches!(pipe.next(), Chunk::Gap(4)));
        assert!(matches!(pipe.next(), Chunk::Data(3)));
        let (rest, truncated) = pipe.take_all();
        assert_eq!((&rest[..], truncated), (&b"ijk"[..], false));
        let mut null = Pipe::new(true, Some(4));
        assert!(!null.push(b"abcdefgh"));
        assert!(null.buf.is_empty());
    }

    #[test]
    fn shell_names_are_what_export_takes() {
        for ok in ["A", "_x1", "LC_ALL"] {
            assert!(is_shell_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A;B", "É"] {
            assert!(!is_shell_name(bad), "{bad}");
        }
    }
}
