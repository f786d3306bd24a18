//! A channel, owned by one task from the open request to the close: a
//! command's session channel, or a tunnel's `direct-tcpip` channel.
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
//! sends the requests (a command's), drains it into two bounded pipes
//! ([`pipe`]), and closes it,
//! whatever the caller does: the caller's handles ([`Shared`]) only ask.
//! Every wait of the task is in one `select!` with the channel's messages,
//! the deadline and the caller's requests, so it always drains, never waits
//! past the deadline, and sees a dropped caller at once. An open the server
//! has not answered when the caller goes (or the deadline passes) is
//! awaited until the server answers or the session ends, and then closed.

mod exec;
pub(crate) mod io;
mod pipe;
mod status;
mod task;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use russh::client::{Handle, Msg};
use russh::{Channel, Sig};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;
use tokio::time::Instant;

pub(crate) use exec::{quote, Exec, Pty};
pub(crate) use io::{Owner, Reader, Writer};
pub(crate) use pipe::Pipe;
pub use status::{EndReason, ExitStatus};

use crate::deadline::GRACE;
use crate::handshake::ClientHandler;

/// Where the channel comes from.
pub(crate) enum Open {
    /// A session channel, for a command.
    Session,
    /// `direct-tcpip` to `host:port`, resolved by the server, as `ssh -W`.
    DirectTcpip {
        host: String,
        port: u32,
        /// The address the connection came from, as the server is told.
        originator: (String, u32),
    },
    /// `direct-streamlocal@openssh.com` to a Unix socket on the server.
    StreamLocal { path: String },
    /// A channel the server opened (`forwarded-tcpip`), already confirmed.
    Given(Channel<Msg>),
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Open::Session => f.write_str("Session"),
            Open::DirectTcpip { host, port, .. } => write!(f, "DirectTcpip({host}:{port})"),
            Open::StreamLocal { path } => write!(f, "StreamLocal({path})"),
            Open::Given(c) => write!(f, "Given({})", c.id()),
        }
    }
}

/// What happens to data a reader has not taken past the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Read and dropped, the reader told where (a command's output).
    Discard,
    /// The command is sent `KILL` and its channel closed.
    Kill,
    /// The task stops taking the channel's messages until the reader
    /// catches up (a tunnel: its bytes cannot be dropped). russh cannot
    /// pause one channel, so its session waits: every channel of the
    /// connection pauses, as TCP would. A reader that takes nothing for
    /// this long ends the channel.
    Pause(Duration),
}

/// What the task is to do.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) open: Open,
    /// The command to start on a session channel; none for a tunnel.
    pub(crate) exec: Option<Exec>,
    /// For a command, until it ends; for a tunnel, until its channel is open.
    pub(crate) deadline: Option<Instant>,
    /// Send EOF as soon as the channel is started.
    pub(crate) stdin_null: bool,
    pub(crate) kill_on_drop: bool,
    pub(crate) overflow: Overflow,
}

/// Why a channel failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The deadline passed; what became of the channel.
    TimedOut(ChannelAt),
    /// The SSH session is gone.
    SessionClosed,
    /// The server refused the channel or a request on it.
    Refused(String),
    /// Unusable input, caught before anything was sent.
    InvalidInput(String),
    /// Any other SSH failure, as russh put it (escaped when shown).
    Ssh(String),
    /// The reader, this many bytes behind, took nothing for this long;
    /// the channel was closed.
    Stalled(usize, Duration),
    /// The server refused to open the channel.
    OpenRefused {
        /// What was asked for: `a channel to db:5432`.
        what: String,
        why: OpenFailure,
    },
}

/// Why the server refused to open a channel (RFC 4254 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenFailure {
    /// `SSH_OPEN_ADMINISTRATIVELY_PROHIBITED`: sshd's `AllowTcpForwarding
    /// no`, or its `MaxSessions` reached.
    Prohibited,
    /// `SSH_OPEN_CONNECT_FAILED`: the server could not reach the target.
    ConnectFailed,
    UnknownChannelType,
    ResourceShortage,
    /// Another code, with the server's text.
    Other(u32, String),
}

impl std::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenFailure::Prohibited => f.write_str("administratively prohibited"),
            OpenFailure::ConnectFailed => f.write_str("connect failed"),
            OpenFailure::UnknownChannelType => f.write_str("unknown channel type"),
            OpenFailure::ResourceShortage => f.write_str("resource shortage"),
            OpenFailure::Other(code, text) => {
                write!(f, "{} (code {code})", crate::text::PeerText::new(text))
            }
        }
    }
}

impl From<&russh::ChannelOpenFailure> for OpenFailure {
    fn from(reason: &russh::ChannelOpenFailure) -> Self {
        match reason {
            russh::ChannelOpenFailure::AdministrativelyProhibited => OpenFailure::Prohibited,
            russh::ChannelOpenFailure::ConnectFailed => OpenFailure::ConnectFailed,
            russh::ChannelOpenFailure::UnknownChannelType => OpenFailure::UnknownChannelType,
            russh::ChannelOpenFailure::ResourceShortage => OpenFailure::ResourceShortage,
            russh::ChannelOpenFailure::Other { code, reason } => {
                OpenFailure::Other(*code, reason.clone())
            }
        }
    }
}

/// What had become of a timed-out channel when the error was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelAt {
    /// The server had not opened it (or it was never asked for, while
    /// earlier closes were still being sent); if the server opens it
    /// later, it is closed then.
    NeverOpened,
    /// Open, the command not yet started: close sent.
    SettingUp,
    /// The command had started: sent `KILL`, and close sent.
    Running,
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
    /// The channel is ready: a command started (the server accepted the
    /// exec request), a tunnel open.
    pub(crate) started: bool,
    /// How it ended, once it has; set once.
    pub(crate) outcome: Option<Result<ExitStatus, Failure>>,
    pub(crate) ended_at: Option<Instant>,
    /// The server's exit-status or exit-signal, once sent.
    pub(crate) server_status: Option<ExitStatus>,
    /// The exec (or subsystem) request was handed to the session: from
    /// here the command may have started, whatever the outcome says.
    pub(crate) exec_sent: bool,
    /// The writer for the channel's data, to hand out (piped stdin only).
    pub(crate) stdin_writer: Option<StdinWriter>,
    /// A writer parked on the window, to fail when the channel ends.
    pub(crate) stdin_waker: Option<Waker>,
    // What the caller asked for, until the task takes it.
    pub(crate) stdin_closed: bool,
    pub(crate) signals: Vec<Sig>,
    pub(crate) kill: bool,
    pub(crate) owner_gone: bool,
    owner_gone_seen: bool,
    /// A session channel counted in use by the caller before the task
    /// was spawned; released if the task never runs.
    pub(crate) counted: Option<SessionCount>,
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
                exec_sent: false,
                stdin_writer: None,
                stdin_waker: None,
                stdin_closed: false,
                signals: Vec::new(),
                kill: false,
                owner_gone: false,
                owner_gone_seen: false,
                drop_pending: false,
                task_done: false,
                counted: None,
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

    pub(super) fn settle_drop(&self, closing: &Closing) {
        let mut state = self.lock();
        if std::mem::take(&mut state.drop_pending) {
            closing.end();
        }
    }

    pub(super) fn end(&self, outcome: Result<ExitStatus, Failure>) {
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
///
/// It also counts the connection's session channels in use, from the open
/// request to the close queued (or the late open closed): what the
/// server's `MaxSessions` counts, for whoever shares the connection.
#[derive(Debug, Default)]
pub(crate) struct Closing {
    pending: AtomicUsize,
    settled: Notify,
    sessions: AtomicUsize,
    freed: Notify,
    /// Session channels the server confirmed, until their task ends.
    confirmed: AtomicUsize,
    /// Session channels released since the connection began.
    released: std::sync::atomic::AtomicU64,
}

/// A session channel counted in use before its task runs, so that the
/// count never lags the caller (a pool reads it to share the connection).
/// Handed to the task in [`State::counted`]; if the task is dropped before
/// it runs, dropping this releases the count.
#[derive(Debug)]
pub(crate) struct SessionCount(Option<Arc<Closing>>);

impl SessionCount {
    /// The task has taken the count over: its end releases it.
    fn taken_over(mut self) {
        self.0 = None;
    }
}

impl Drop for SessionCount {
    fn drop(&mut self) {
        if let Some(closing) = self.0.take() {
            closing.release_session();
        }
    }
}

/// Counts a confirmed session channel until dropped (with its task).
struct Confirmed<'a>(&'a Closing);

impl Drop for Confirmed<'_> {
    fn drop(&mut self) {
        self.0.confirmed.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Closing {
    /// Session channels in use on the connection.
    pub(crate) fn sessions_in_use(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    /// Session channels the server has confirmed and that are not closed
    /// yet: at most what it counts against `MaxSessions` (it may still
    /// count some whose close is on its way).
    pub(crate) fn sessions_confirmed(&self) -> usize {
        self.confirmed.load(Ordering::Acquire)
    }

    /// Resolves at the next release of a session channel (check
    /// [`sessions_in_use`](Self::sessions_in_use) after enabling it).
    pub(crate) fn session_freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Counts a session channel in use now, for a task about to be spawned.
    pub(crate) fn count_session(self: &Arc<Self>) -> SessionCount {
        self.sessions.fetch_add(1, Ordering::AcqRel);
        SessionCount(Some(self.clone()))
    }

    /// Session channels released so far (their close queued): a count
    /// that only grows, for telling which closes a later round trip to
    /// the server has overtaken.
    pub(crate) fn sessions_released(&self) -> u64 {
        self.released.load(Ordering::Acquire)
    }

    fn release_session(&self) {
        self.released.fetch_add(1, Ordering::AcqRel);
        self.sessions.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_waiters();
    }

    pub(super) fn begin(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn end(&self) {
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
    /// A session channel, counted in use until now.
    session: bool,
}

impl Drop for TaskDone<'_> {
    fn drop(&mut self) {
        self.shared.lock().task_done = true;
        self.shared.settle_drop(self.closing);
        self.shared.end(Err(Failure::SessionClosed));
        if self.session {
            self.closing.release_session();
        }
    }
}

type OpenResult = Result<Channel<Msg>, russh::Error>;

/// How long a command that has sent its status and EOF is given to close
/// its channel before we close it. A server that closes first spares russh
/// a channel entry: russh 0.65 keeps the entry of a channel *we* close first
/// until the session ends (it drops the server's answering close unread).
/// New commands wait for this, so that the server's session slot is free
/// before their open.
const SERVER_CLOSE_WAIT: Duration = Duration::from_millis(50);

/// Runs a channel from its open to its close.
pub(crate) async fn run(
    handle: Option<Arc<Handle<ClientHandler>>>,
    mut request: Request,
    shared: Arc<Shared>,
    closing: Arc<Closing>,
) {
    let session = matches!(request.open, Open::Session);
    // Counted by the caller already (see `Closing::count_session`): the
    // task's own release below takes the count over.
    let counted = shared.lock().counted.take();
    match counted {
        Some(count) => count.taken_over(),
        None if session => {
            closing.sessions.fetch_add(1, Ordering::AcqRel);
        }
        None => {}
    }
    let _done = TaskDone {
        shared: &shared,
        closing: &closing,
        session,
    };
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let deadline = tokio::time::sleep_until(request.deadline.unwrap_or(far));
    tokio::pin!(deadline);

    let what = match std::mem::replace(&mut request.open, Open::Session) {
        Open::Given(channel) => return start(channel, request, &shared, &closing, deadline).await,
        Open::Session => What::Session,
        Open::DirectTcpip {
            host,
            port,
            originator,
        } => What::Tcp(host, port, originator),
        Open::StreamLocal { path } => What::Unix(path),
    };
    let Some(handle) = handle else {
        return shared.end(Err(Failure::SessionClosed));
    };
    // Closes owed by dropped channels go first.
    tokio::select! {
        biased;
        () = owner_gone(&shared) => return,
        () = &mut deadline => return shared.end(Err(Failure::TimedOut(ChannelAt::NeverOpened))),
        () = closing.settled() => {}
    }
    let label = what.label();
    let open: Pin<Box<dyn Future<Output = OpenResult> + Send + '_>> = match what {
        What::Session => Box::pin(handle.channel_open_session()),
        What::Tcp(host, port, (from, from_port)) => {
            Box::pin(handle.channel_open_direct_tcpip(host, port, from, from_port))
        }
        What::Unix(path) => Box::pin(handle.channel_open_direct_streamlocal(path)),
    };
    tokio::pin!(open);
    let channel = tokio::select! {
        biased;
        opened = &mut open => match opened {
            Ok(channel) => channel,
            Err(e) => return shared.end(Err(open_failed(&handle, &label, e))),
        },
        () = &mut deadline => {
            shared.end(Err(Failure::TimedOut(ChannelAt::NeverOpened)));
            return close_when_opened(open, &shared, &closing).await;
        }
        () = owner_gone(&shared) => return close_when_opened(open, &shared, &closing).await,
    };
    tracing::debug!(channel = %channel.id(), "{label} open");
    let _confirmed = session.then(|| {
        closing.confirmed.fetch_add(1, Ordering::AcqRel);
        Confirmed(&closing)
    });
    start(channel, request, &shared, &closing, deadline).await;
}

/// The channel asked for, as the server will be asked.
enum What {
    Session,
    Tcp(String, u32, (String, u32)),
    Unix(String),
}

impl What {
    /// For errors: what the server refused.
    fn label(&self) -> String {
        match self {
            What::Session => "a session channel".into(),
            What::Tcp(host, port, _) => format!("a channel to {host}:{port}"),
            What::Unix(path) => format!("a channel to {path}"),
        }
    }
}

/// Runs an open channel: the command's requests, then its data, to the
/// close. A tunnel's deadline was for its open alone.
async fn start(
    channel: Channel<Msg>,
    request: Request,
    shared: &Shared,
    closing: &Closing,
    deadline: Pin<&mut tokio::time::Sleep>,
) {
    let (read, write) = channel.split();
    let write = Arc::new(write);
    if !request.stdin_null {
        shared.lock().stdin_writer = Some(StdinWriter(Box::pin(write.make_writer())));
    }
    let after_open =
        tokio::time::sleep_until(Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
    tokio::pin!(after_open);
    let deadline = if request.exec.is_some() {
        deadline
    } else {
        after_open
    };
    task::Task::new(read, write, shared, closing, request)
        .run(deadline)
        .await;
}

/// The session's refusal or failure to open the channel, as an error.
fn open_failed(handle: &Handle<ClientHandler>, what: &str, e: russh::Error) -> Failure {
    match e {
        russh::Error::ChannelOpenFailure(reason) => Failure::OpenRefused {
            what: what.to_owned(),
            why: OpenFailure::from(&reason),
        },
        _ if handle.is_closed() => Failure::SessionClosed,
        other => Failure::Ssh(other.to_string()),
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
