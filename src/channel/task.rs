//! The task's event loop: one `select!` over the caller's requests, the
//! deadline, the message being sent and the channel's messages.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::time::Instant;

use super::exec::is_shell_name;
use super::status::{EndReason, ExitStatus};
use super::{ChannelAt, Closing, Failure, Overflow, Request, Shared, SERVER_CLOSE_WAIT};
use crate::deadline::GRACE;

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
    /// The reader fell the cap behind on a channel whose bytes cannot be
    /// dropped.
    Overflow,
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

pub(super) struct Task<'a> {
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
    /// Since when the channel has been paused for its reader.
    paused_since: Option<Instant>,
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

impl<'a> Task<'a> {
    pub(super) fn new(
        read: ChannelReadHalf,
        write: Arc<ChannelWriteHalf<Msg>>,
        shared: &'a Shared,
        closing: &'a Closing,
        request: Request,
    ) -> Self {
        Task {
            read,
            write,
            shared,
            closing,
            request,
            phase: Phase::Running,
            queue: VecDeque::new(),
            refused_env: Vec::new(),
            eof: false,
            closing_since: None,
            server_close_by: None,
            counted: false,
            paused_since: None,
        }
    }

    pub(super) async fn run(&mut self, mut deadline: Pin<&mut tokio::time::Sleep>) {
        match self.first_request() {
            Some((first, phase)) => {
                self.queue.push_back(first);
                self.phase = phase;
            }
            // A tunnel: open is ready.
            None => {
                if let Some(stop) = self.started() {
                    if self.stop(stop) {
                        return;
                    }
                }
            }
        }
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
            let paused = self.pause();
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
                msg = self.read.wait(), if !paused => Event::Message(msg),
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

    /// The first request to send, and the phase that waits for its reply;
    /// none for a tunnel.
    fn first_request(&self) -> Option<(Action, Phase)> {
        let exec = self.request.exec.as_ref()?;
        Some(if !exec.env.is_empty() {
            (Action::Env(0), Phase::Env(0))
        } else if exec.pty.is_some() {
            (Action::Pty, Phase::Pty)
        } else {
            (Action::Exec, Phase::Exec)
        })
    }

    /// Whether to take no message while the reader catches up, noting
    /// since when.
    fn pause(&mut self) -> bool {
        let pausing = matches!(self.request.overflow, Overflow::Pause(_));
        let full = pausing && self.phase != Phase::Closing && {
            let state = self.shared.lock();
            state.stdout.is_full() || state.stderr.is_full()
        };
        if !full {
            self.paused_since = None;
        } else if self.paused_since.is_none() {
            self.paused_since = Some(Instant::now());
        }
        full
    }

    fn timer_at(&self) -> Option<Instant> {
        let give_up = self.closing_since.map(|since| since + GRACE);
        let stalled = match (self.paused_since, self.request.overflow) {
            (Some(since), Overflow::Pause(stall)) => Some(since + stall),
            _ => None,
        };
        [self.server_close_by, give_up, stalled]
            .into_iter()
            .flatten()
            .min()
    }

    fn send(&mut self, action: Action) -> Sending {
        let write = self.write.clone();
        let close = matches!(action, Action::Close);
        if matches!(action, Action::Exec) {
            self.shared.lock().exec_sent = true;
        }
        let sending: Pin<Box<dyn Future<Output = Result<(), russh::Error>> + Send>> = match action {
            Action::Env(i) => {
                let (name, value) = self.exec().env[i].clone();
                Box::pin(async move { write.set_env(true, name, value).await })
            }
            Action::Pty => {
                let pty = self.exec().pty.clone().expect("a pty was asked for");
                Box::pin(async move {
                    write
                        .request_pty(true, &pty.term, pty.cols, pty.rows, 0, 0, &[])
                        .await
                })
            }
            Action::Exec if self.exec().subsystem => {
                let name = self.exec().line.clone();
                Box::pin(async move { write.request_subsystem(true, &name).await })
            }
            Action::Exec => {
                let line = self.exec().line_with(&self.refused_env);
                Box::pin(async move { write.exec(true, line).await })
            }
            Action::Eof => Box::pin(async move { write.eof().await }),
            Action::Signal(sig) => Box::pin(async move { write.signal(sig).await }),
            Action::Close => Box::pin(async move { write.close().await }),
        };
        Box::pin(async move { (close, sending.await) })
    }

    /// The command (only asked for while one is being set up).
    fn exec(&self) -> &super::Exec {
        self.request.exec.as_ref().expect("a command's request")
    }

    /// Handles an event before the channel began to close; says if it must.
    fn event(&mut self, event: Event) -> Option<Stop> {
        match event {
            Event::Sent { result: Ok(()), .. } => None,
            // A reader that took nothing for the stall time.
            Event::Timer => match (self.paused_since, self.request.overflow) {
                (Some(since), Overflow::Pause(stall)) if since + stall <= Instant::now() => {
                    Some(Stop::Overflow)
                }
                _ => None,
            },
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
        if !pipe.push(&data) {
            return None;
        }
        match self.request.overflow {
            Overflow::Discard => None,
            Overflow::Kill => Some(Stop::Cap),
            // Never dropped; the loop pauses the channel instead.
            Overflow::Pause(_) => None,
        }
    }

    /// While running: a command is over with EOF and its status in hand; a
    /// tunnel, once EOF went both ways.
    fn done(&self) -> Option<Stop> {
        if self.phase != Phase::Running {
            return None;
        }
        let state = self.shared.lock();
        let over = match &self.request.exec {
            Some(exec) if !exec.subsystem => state.stdout.eof && state.server_status.is_some(),
            _ => state.stdout.eof && self.eof,
        };
        over.then_some(Stop::Done)
    }

    /// The reply to the request under way.
    fn replied(&mut self, ok: bool) -> Option<Stop> {
        match self.phase {
            Phase::Env(i) => {
                if !ok {
                    if !is_shell_name(&self.exec().env[i].0) {
                        return Some(Stop::Refused("an environment variable"));
                    }
                    self.refused_env.push(i);
                }
                self.phase = if i + 1 < self.exec().env.len() {
                    self.queue.push_back(Action::Env(i + 1));
                    Phase::Env(i + 1)
                } else if self.exec().pty.is_some() {
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
            Phase::Exec => self.started(),
            // A stray reply.
            Phase::Running | Phase::Closing => None,
        }
    }

    /// The channel is ready: the command started, or the tunnel is open.
    fn started(&mut self) -> Option<Stop> {
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
        // The exec request is out (or the tunnel open): the channel is in use.
        let exec_sent = running || self.phase == Phase::Exec;
        // Only a command can be sent a signal.
        let may_kill = exec_sent && self.request.exec.as_ref().is_some_and(|e| !e.subsystem);
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
                    Err(Failure::Ssh(
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
                    _ => Err(Failure::SessionClosed),
                });
                return true;
            }
            Stop::Deadline => {
                let at = if running {
                    ChannelAt::Running
                } else {
                    ChannelAt::SettingUp
                };
                (Err(Failure::TimedOut(at)), may_kill)
            }
            Stop::Cap => (ours(EndReason::MaxOutput), may_kill),
            Stop::Kill => (ours(EndReason::Kill), may_kill),
            Stop::Abandoned => (ours(EndReason::Kill), may_kill),
            Stop::Refused(what) => (Err(Failure::Refused(what.into())), false),
            Stop::Overflow => {
                let behind = self.shared.lock().stdout.len();
                let stall = match self.request.overflow {
                    Overflow::Pause(stall) => stall,
                    _ => std::time::Duration::ZERO,
                };
                (Err(Failure::Stalled(behind, stall)), false)
            }
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

fn signal_text(sig: Sig) -> String {
    match sig {
        Sig::Custom(name) => name,
        other => format!("{other:?}"),
    }
}
