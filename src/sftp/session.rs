//! The request pipeline: ids, a writer task and a reader task over the
//! subsystem's channel, replies matched to requests by id, and a budget of
//! bytes in flight.
//!
//! Why two tasks: a request must go out whole or not at all (half a packet
//! would corrupt the stream for every later request), so no future a caller
//! can drop ever writes; callers queue whole packets, and the writer task
//! writes them. And replies must always be read, whoever waits for them (an
//! unread channel pauses the whole connection), so the reader task reads
//! every packet as it comes and hands it to the request's waiter, if it is
//! still there; a reply nobody waits for any more is dropped at once.
//!
//! A handle the server opens for a request its caller gave up on (the
//! future dropped, or its timeout passed, while the reply was on its way)
//! is closed when the reply comes: the server's handles are bounded by
//! what callers hold.
//!
//! Both tasks end when the session ends (every `Sftp` and `File` dropped, or
//! the server broke the protocol or closed the channel); the reader task
//! holds the channel's owner, so the channel is closed then.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use super::channel::{Channel, ChannelReader};
use super::codec::{self, Limits, Reply, Request, Version, MAX_PACKET};
use super::error::{Broken, Kind, SftpError};

/// What the session was built with ([`SftpBuilder`](super::SftpBuilder)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) timeout: Option<Duration>,
    pub(crate) transfer_timeout: Option<Duration>,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) max_requests: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) chunk: Option<u32>,
}

/// A packet on its way out, with the budget it holds until written.
struct Outgoing {
    packet: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

/// What the tasks and the callers share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the tasks when the session ends.
    ended: Notify,
    /// The writer task's queue, for the closes of abandoned handles.
    out: mpsc::UnboundedSender<Outgoing>,
}

/// The most abandoned opens remembered (each a few bytes); past it, the
/// handle of a late reply is left to the session's end.
const MAX_ABANDONED: usize = 4096;

struct State {
    pending: HashMap<u32, oneshot::Sender<Reply>>,
    /// Requests that open a handle (OPEN, OPENDIR), their reply not yet
    /// handed over.
    opens: HashSet<u32>,
    /// Such requests given up before their reply came: a handle in it is
    /// closed.
    abandoned: HashSet<u32>,
    next_id: u32,
    /// Ids have wrapped: any id may have been sent.
    wrapped: bool,
    broken: Option<Broken>,
}

impl State {
    /// The next request id.
    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = match id.checked_add(1) {
            Some(next) => next,
            None => {
                self.wrapped = true;
                1
            }
        };
        id
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the session (the first reason stays): every waiter fails at
    /// once, and both tasks stop.
    fn end(&self, why: Broken) {
        let pending = {
            let mut state = self.lock();
            if state.broken.is_none() {
                tracing::debug!(?why, "sftp session over");
                state.broken = Some(why);
            }
            std::mem::take(&mut state.pending)
        };
        drop(pending);
        self.ended.notify_waiters();
    }

    async fn ended(&self) {
        loop {
            let notified = self.ended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().broken.is_some() {
                return;
            }
            notified.await;
        }
    }

    fn broken(&self) -> Broken {
        self.lock()
            .broken
            .clone()
            .unwrap_or_else(|| Broken::ChannelEnded("it ended".into()))
    }

    /// Sends a CLOSE for `handle` (its reply is not waited for).
    fn close_handle(&self, state: &mut State, handle: &[u8]) {
        if state.broken.is_some() {
            return;
        }
        let id = state.take_id();
        let packet = Request::new(codec::CLOSE).string(handle).finish(id);
        let _ = self.out.send(Outgoing {
            packet,
            _permit: None,
        });
    }

    /// Hands a reply to its waiter; a reply to an id never sent breaks the
    /// protocol, one to an abandoned request is dropped.
    fn dispatch(&self, packet: Bytes) -> Result<(), Broken> {
        if packet.len() < 5 {
            return Err(Broken::Protocol(format!(
                "a packet of {} bytes, too short for a reply",
                packet.len()
            )));
        }
        let kind = packet[0];
        let id = u32::from_be_bytes([packet[1], packet[2], packet[3], packet[4]]);
        let mut state = self.lock();
        match state.pending.remove(&id) {
            Some(waiter) => {
                state.opens.remove(&id);
                drop(state);
                let _ = waiter.send(Reply {
                    kind,
                    body: packet.slice(5..),
                });
                Ok(())
            }
            None if state.abandoned.remove(&id) => {
                if kind == codec::HANDLE {
                    if let Some(handle) = handle_in(&packet[5..]) {
                        self.close_handle(&mut state, handle);
                    }
                }
                Ok(())
            }
            None if state.wrapped || (id != 0 && id < state.next_id) => Ok(()),
            None => Err(Broken::Protocol(format!(
                "a reply (type {kind}) to request {id}, which was never sent"
            ))),
        }
    }
}

/// A request sent, waiting for its reply. Dropping it abandons the
/// request: its reply, if it comes, is dropped, and its budget is free.
pub(crate) struct Ticket {
    id: u32,
    reply: oneshot::Receiver<Reply>,
    shared: Arc<Shared>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Ticket {
    /// The reply. Cancel safe: the ticket can be waited on again.
    pub(crate) async fn reply(&mut self) -> Result<Reply, Broken> {
        match (&mut self.reply).await {
            Ok(reply) => Ok(reply),
            Err(_) => Err(self.shared.broken()),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.pending.remove(&self.id);
        if state.opens.remove(&self.id) {
            // Given up before its reply came.
            if state.abandoned.len() < MAX_ABANDONED {
                state.abandoned.insert(self.id);
            }
        } else if let Ok(reply) = self.reply.try_recv() {
            // Its reply came, and nobody took it.
            if reply.kind == codec::HANDLE {
                if let Some(handle) = handle_in(&reply.body) {
                    self.shared.close_handle(&mut state, handle);
                }
            }
        }
    }
}

/// The handle in a HANDLE reply's body, if it is well formed.
fn handle_in(body: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let handle = body.get(4..4usize.checked_add(len)?)?;
    (handle.len() <= 256).then_some(handle)
}

/// One SFTP session on one channel.
pub(crate) struct Session {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Outgoing>,
    budget: Arc<Semaphore>,
    pub(crate) config: Config,
    pub(crate) version: Version,
    /// The most data one READ asks for, and one WRITE carries.
    pub(crate) read_len: u32,
    pub(crate) write_len: u32,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.end(Broken::Dropped);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("read_len", &self.read_len)
            .field("write_len", &self.write_len)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Says hello on `channel` (INIT, VERSION, and the server's limits if
    /// it offers them) and starts the tasks. The caller bounds it in time;
    /// a drop closes the channel.
    pub(crate) async fn start(channel: Channel, config: Config) -> Result<Session, SftpError> {
        let Channel {
            mut reader,
            mut writer,
            owner,
        } = channel;
        let fail = |b: Broken| SftpError::new("open session", None, Kind::Broken(b));
        writer
            .write_all(&codec::init())
            .await
            .map_err(|e| fail(Broken::ChannelEnded(e.to_string())))?;
        let mut buf = BytesMut::new();
        let hello = read_packet(&mut reader, &mut buf).await.map_err(fail)?;
        if hello.first() != Some(&codec::VERSION) {
            return Err(fail(Broken::Protocol(format!(
                "the server's first packet was of type {:?}, not VERSION",
                hello.first()
            ))));
        }
        let version = Version::decode(hello.slice(1..)).map_err(|m| fail(m.into()))?;
        if version.version < 3 {
            return Err(fail(Broken::Protocol(format!(
                "the server speaks SFTP version {}, not 3",
                version.version
            ))));
        }
        let (out, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: HashMap::new(),
                opens: HashSet::new(),
                abandoned: HashSet::new(),
                next_id: 1,
                wrapped: false,
                broken: None,
            }),
            ended: Notify::new(),
            out: out.clone(),
        });
        tokio::spawn(write_task(queue, writer, shared.clone()));
        tokio::spawn(read_task(reader, buf, owner, shared.clone()));
        let max_in_flight = config.max_in_flight.clamp(1, u32::MAX as usize);
        let mut session = Session {
            shared,
            out,
            budget: Arc::new(Semaphore::new(max_in_flight)),
            config,
            version,
            read_len: codec::DEFAULT_CHUNK,
            write_len: codec::DEFAULT_CHUNK,
        };
        if session.version.has("limits@openssh.com") {
            let reply = session
                .send(Request::extended("limits@openssh.com"), None, false)?
                .reply()
                .await
                .map_err(fail)?;
            if reply.kind == codec::EXTENDED_REPLY {
                let limits = Limits::decode(reply.body).map_err(|m| fail(m.into()))?;
                session.read_len = fit(limits.max_read);
                session.write_len = fit(limits.max_write);
            }
        }
        if let Some(chunk) = config.chunk {
            let chunk = chunk.clamp(1, codec::MAX_CHUNK);
            session.read_len = session.read_len.min(chunk);
            session.write_len = session.write_len.min(chunk);
        }
        Ok(session)
    }

    /// Sends `request`; `permit`, if given, is held until the packet is
    /// written (`with_packet`) or until the ticket goes.
    pub(crate) fn send(
        &self,
        request: Request,
        permit: Option<OwnedSemaphorePermit>,
        with_packet: bool,
    ) -> Result<Ticket, SftpError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = self.shared.lock();
            if let Some(why) = &state.broken {
                return Err(SftpError::new("request", None, Kind::Broken(why.clone())));
            }
            let id = state.take_id();
            state.pending.insert(id, tx);
            if matches!(request.kind(), codec::OPEN | codec::OPENDIR) {
                state.opens.insert(id);
            }
            id
        };
        let (packet_permit, ticket_permit) = if with_packet {
            (permit, None)
        } else {
            (None, permit)
        };
        let ticket = Ticket {
            id,
            reply: rx,
            shared: self.shared.clone(),
            _permit: ticket_permit,
        };
        let outgoing = Outgoing {
            packet: request.finish(id),
            _permit: packet_permit,
        };
        if self.out.send(outgoing).is_err() {
            return Err(SftpError::new(
                "request",
                None,
                Kind::Broken(self.shared.broken()),
            ));
        }
        Ok(ticket)
    }

    /// Budget for `bytes` in flight, if there is some now.
    pub(crate) fn try_budget(&self, bytes: u32) -> Option<OwnedSemaphorePermit> {
        let n = self.clamp_budget(bytes);
        self.budget.clone().try_acquire_many_owned(n).ok()
    }

    /// Budget for `bytes` in flight, waiting for other transfers to free it.
    pub(crate) async fn budget(&self, bytes: u32) -> OwnedSemaphorePermit {
        let n = self.clamp_budget(bytes);
        self.budget
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the semaphore is never closed")
    }

    fn clamp_budget(&self, bytes: u32) -> u32 {
        bytes.clamp(1, self.config.max_in_flight.min(u32::MAX as usize) as u32)
    }

    /// Sends CLOSE for `handle` without waiting for the reply (a transfer
    /// or file given up).
    pub(crate) fn close_quietly(&self, handle: &[u8]) {
        if let Ok(ticket) = self.send(Request::new(codec::CLOSE).string(handle), None, false) {
            drop(ticket);
        }
    }

    /// Ends the session: the channel is closed, every waiter fails.
    pub(crate) fn end(&self, why: Broken) {
        self.shared.end(why);
    }

    /// True once the session has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().broken.is_some()
    }
}

/// The most data per request that fits a packet, as the server allows.
fn fit(limit: u64) -> u32 {
    match limit {
        0 => codec::DEFAULT_CHUNK,
        n => n.min(u64::from(codec::MAX_CHUNK)) as u32,
    }
}

/// Reads one packet (without its length) into `buf`'s allocation.
async fn read_packet(reader: &mut ChannelReader, buf: &mut BytesMut) -> Result<Bytes, Broken> {
    loop {
        if buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len == 0 || len > MAX_PACKET {
                return Err(Broken::Protocol(format!(
                    "a packet of {len} bytes (the most is {MAX_PACKET})"
                )));
            }
            if buf.len() >= 4 + len {
                let mut packet = buf.split_to(4 + len);
                let _ = packet.split_to(4);
                return Ok(packet.freeze());
            }
            buf.reserve(4 + len - buf.len());
        } else {
            buf.reserve(64 * 1024);
        }
        match reader.read_buf(buf).await {
            Ok(0) => return Err(Broken::ChannelEnded("the server closed it".into())),
            Ok(_) => {}
            Err(e) => return Err(Broken::ChannelEnded(e.to_string())),
        }
    }
}

async fn write_task(
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    mut writer: crate::channel::Writer,
    shared: Arc<Shared>,
) {
    loop {
        let next = tokio::select! {
            biased;
            () = shared.ended() => return,
            next = queue.recv() => next,
        };
        let Some(outgoing) = next else { return };
        let written = tokio::select! {
            biased;
            () = shared.ended() => return,
            written = writer.write_all(&outgoing.packet) => written,
        };
        if let Err(e) = written {
            return shared.end(Broken::ChannelEnded(e.to_string()));
        }
    }
}

async fn read_task(
    mut reader: ChannelReader,
    mut buf: BytesMut,
    _owner: crate::channel::Owner,
    shared: Arc<Shared>,
) {
    loop {
        let packet = tokio::select! {
            biased;
            () = shared.ended() => return,
            packet = read_packet(&mut reader, &mut buf) => packet,
        };
        if let Err(why) = packet.and_then(|p| shared.dispatch(p)) {
            return shared.end(why);
        }
        // The channel's pipe is not a Tokio resource: under a flood it is
        // always ready, and this loop would hold its worker thread (timers
        // included) for as long as the flood lasts.
        tokio::task::consume_budget().await;
    }
}
