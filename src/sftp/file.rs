//! A remote file as `AsyncRead + AsyncWrite + AsyncSeek`: one request at a
//! time, each under the session's per-operation deadline.

use std::fmt;
use std::future::Future;
use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use super::codec::{self, Fields, Request};
use super::error::{Kind, SftpError};
use super::metadata::{Metadata, OpenOptions};
use super::ops::{within, RemoteHandle};
use super::session::Session;
use super::Sftp;

type Op<T> = Pin<Box<dyn Future<Output = Result<T, SftpError>> + Send>>;

enum State {
    Idle,
    /// The data at the position, or none at the end of the file.
    Reading(Op<Option<Bytes>>),
    Writing(Op<usize>),
    Seeking(Op<u64>),
}

/// A remote file, open: from [`Sftp::open`], [`Sftp::create`] or
/// [`Sftp::open_with`].
///
/// Reading and writing go one request at a time (each read of at most the
/// session's request size, each write waiting for the server's answer, so
/// that an error shows at the write that caused it): for whole files, the
/// pipelined [`Sftp::get_to`] and [`Sftp::put_from`] are many times faster
/// over any distance. Each request runs under the session's
/// [`timeout`](super::SftpBuilder::timeout); past it the operation fails
/// with `TimedOut`.
///
/// Dropping it closes the remote file (the CLOSE is sent, not awaited);
/// [`close`](File::close) waits for the server's answer.
pub struct File {
    handle: RemoteHandle,
    path: Arc<str>,
    pos: u64,
    state: State,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("path", &crate::text::PeerText::new(&self.path))
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl Sftp {
    /// Opens `path` for reading.
    ///
    /// # Errors
    ///
    /// As [`Sftp::metadata`].
    ///
    /// # Cancellation
    ///
    /// Dropping the future (or its timeout passing) abandons the open; a
    /// handle the server sends for it later is closed when it comes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(sftp: &ssh_dial::Sftp) -> Result<(), Box<dyn std::error::Error>> {
    /// use tokio::io::AsyncReadExt;
    /// let mut file = sftp.open("/etc/hostname").await?;
    /// let mut name = String::new();
    /// file.read_to_string(&mut name).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(&self, path: &str) -> Result<File, SftpError> {
        self.open_with(path, OpenOptions::new().read(true)).await
    }

    /// Opens `path` for writing, created if missing, truncated if not.
    ///
    /// # Errors
    ///
    /// As [`Sftp::metadata`].
    ///
    /// # Cancellation
    ///
    /// As [`open`](Self::open).
    pub async fn create(&self, path: &str) -> Result<File, SftpError> {
        let options = OpenOptions::new().write(true).create(true).truncate(true);
        self.open_with(path, options).await
    }

    /// Opens `path` as `options` say.
    ///
    /// # Errors
    ///
    /// As [`Sftp::metadata`].
    ///
    /// # Cancellation
    ///
    /// As [`open`](Self::open).
    pub async fn open_with(&self, path: &str, options: OpenOptions) -> Result<File, SftpError> {
        super::check("open", path)?;
        let session = &self.session;
        let attrs = options.attrs();
        let open = session.open_handle(path, options.flags(), &attrs);
        let handle = within("open", path, session.config.timeout, open).await?;
        Ok(File {
            handle,
            path: Arc::from(path),
            pos: 0,
            state: State::Idle,
        })
    }
}

impl File {
    /// The path it was opened as.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn session(&self) -> &Arc<Session> {
        &self.handle.session
    }

    /// Runs `work` as operation `op` under the session's timeout.
    fn op<T: Send + 'static>(
        &self,
        op: &'static str,
        work: impl Future<Output = Result<T, SftpError>> + Send + 'static,
    ) -> Op<T> {
        let path = self.path.clone();
        let limit = self.session().config.timeout;
        Box::pin(async move { within(op, &path, limit, work).await })
    }

    fn read_op(&self, len: u32) -> Op<Option<Bytes>> {
        let session = self.session().clone();
        let request = Request::new(codec::READ)
            .string(&self.handle.handle)
            .u64(self.pos)
            .u32(len);
        self.op("read", async move {
            let reply = session.call(request).await?;
            if reply.kind == codec::STATUS {
                let status = session.status_code(reply)?;
                if status.code == codec::FX_EOF {
                    return Ok(None);
                }
                return Err(SftpError::new("read", None, Kind::Status(status)));
            }
            let body = session.expect(reply, codec::DATA)?;
            let data = Fields(body)
                .bytes("data")
                .map_err(|m| session.malformed(m))?;
            Ok(Some(data))
        })
    }

    fn write_op(&self, data: &[u8]) -> Op<usize> {
        let session = self.session().clone();
        let n = data.len();
        let request = Request::with_capacity(codec::WRITE, data.len() + 32)
            .string(&self.handle.handle)
            .u64(self.pos)
            .string(data);
        self.op("write", async move {
            // Within the session's budget until written: writes given up
            // while the channel is stalled cannot pile up unsent.
            let permit = session.budget(n as u32).await;
            let reply = session
                .send(request, Some(permit), true)?
                .reply()
                .await
                .map_err(|b| SftpError::new("write", None, Kind::Broken(b)))?;
            session.status(reply).map(|()| n)
        })
    }

    fn fstat(&self) -> Op<Metadata> {
        let session = self.session().clone();
        let request = Request::new(codec::FSTAT).string(&self.handle.handle);
        self.op("fstat", async move { session.attrs(request).await })
    }

    /// The file's attributes (`fstat`).
    ///
    /// # Errors
    ///
    /// As [`Sftp::metadata`].
    pub async fn metadata(&self) -> Result<Metadata, SftpError> {
        self.fstat().await
    }

    /// Truncates or extends the file to `len` bytes.
    ///
    /// # Errors
    ///
    /// As [`Sftp::metadata`].
    pub async fn set_len(&self, len: u64) -> Result<(), SftpError> {
        let session = self.session().clone();
        let request = Request::new(codec::FSETSTAT)
            .string(&self.handle.handle)
            .attrs(&Metadata::new().with_len(len));
        self.op("set_len", async move {
            let reply = session.call(request).await?;
            session.status(reply)
        })
        .await
    }

    /// Asks the server to flush the file to its disk (`fsync@openssh.com`).
    ///
    /// # Errors
    ///
    /// As [`Sftp::metadata`]; [`SftpError::is_unsupported`] if the server
    /// lacks the extension.
    pub async fn sync_all(&self) -> Result<(), SftpError> {
        if !self.session().version.has("fsync@openssh.com") {
            return Err(SftpError::new(
                "fsync",
                Some(&self.path),
                Kind::Unsupported("fsync@openssh.com"),
            ));
        }
        let session = self.session().clone();
        let request = Request::extended("fsync@openssh.com").string(&self.handle.handle);
        self.op("fsync", async move {
            let reply = session.call(request).await?;
            session.status(reply)
        })
        .await
    }

    /// Closes the file and waits for the server's answer: where a server
    /// reports a failed write that it had taken (a full disk on close).
    ///
    /// # Errors
    ///
    /// As [`Sftp::metadata`].
    ///
    /// # Cancellation
    ///
    /// The CLOSE is sent at the first poll; dropping the future then only
    /// leaves its answer unread.
    pub async fn close(self) -> Result<(), SftpError> {
        let path = self.path.clone();
        let limit = self.session().config.timeout;
        within("close", &path, limit, self.handle.close()).await
    }

    /// Waits for the operation under way; an error if another kind is.
    fn poll_pending_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<usize>>> {
        match &mut self.state {
            State::Writing(op) => {
                let result = ready!(op.as_mut().poll(cx));
                self.state = State::Idle;
                let n = result?;
                self.pos = self.pos.saturating_add(n as u64);
                Poll::Ready(Ok(Some(n)))
            }
            State::Idle => Poll::Ready(Ok(None)),
            _ => Poll::Ready(Err(busy())),
        }
    }
}

fn busy() -> io::Error {
    io::Error::other("another operation on this sftp file is under way")
}

impl AsyncRead for File {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let State::Idle = this.state {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let len = (buf.remaining() as u64).min(u64::from(this.session().read_len)) as u32;
            this.state = State::Reading(this.read_op(len));
        }
        let State::Reading(op) = &mut this.state else {
            return Poll::Ready(Err(busy()));
        };
        let result = ready!(op.as_mut().poll(cx));
        this.state = State::Idle;
        if let Some(data) = result? {
            let n = data.len().min(buf.remaining());
            buf.put_slice(&data[..n]);
            this.pos = this.pos.saturating_add(n as u64);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for File {
    /// Sends one WRITE of at most the request size from `buf` and waits
    /// for its answer. (A call that returned `Pending` finishes the write
    /// it started, whatever `buf` the next call brings, as for `tokio::fs::File`.)
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let State::Idle = this.state {
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let n = buf.len().min(this.session().write_len as usize);
            this.state = State::Writing(this.write_op(&buf[..n]));
        }
        match ready!(this.poll_pending_write(cx))? {
            Some(n) => Poll::Ready(Ok(n)),
            None => Poll::Ready(Ok(0)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending_write(cx))?;
        Poll::Ready(Ok(()))
    }

    /// Finishes the write under way; the file stays open until it is
    /// closed or dropped.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl AsyncSeek for File {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = &mut *self;
        if !matches!(this.state, State::Idle) {
            return Err(busy());
        }
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "seek before the start");
        match position {
            SeekFrom::Start(n) => this.pos = n,
            SeekFrom::Current(d) => {
                this.pos = this.pos.checked_add_signed(d).ok_or_else(invalid)?
            }
            SeekFrom::End(d) => {
                let stat = this.fstat();
                this.state = State::Seeking(Box::pin(async move {
                    let size = stat.await?.len().unwrap_or(0);
                    size.checked_add_signed(d).ok_or_else(|| {
                        SftpError::new("seek", None, Kind::InvalidInput("seek before the start"))
                    })
                }));
            }
        }
        Ok(())
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = &mut *self;
        match &mut this.state {
            State::Seeking(op) => {
                let result = ready!(op.as_mut().poll(cx));
                this.state = State::Idle;
                this.pos = result?;
                Poll::Ready(Ok(this.pos))
            }
            State::Idle => Poll::Ready(Ok(this.pos)),
            _ => Poll::Ready(Err(busy())),
        }
    }
}
