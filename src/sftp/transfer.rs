//! Whole-file transfers, pipelined as OpenSSH's `sftp` pipelines them: up
//! to `max_requests` READs or WRITEs in flight (starting at one, one more
//! per reply), within the session's budget of bytes in flight; short reads
//! asked again for the rest, replies put in file order whatever order they
//! come in. One deadline over the whole transfer, and a stall timeout on
//! each wait for a reply.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::codec::{self, Fields, Request, FXF_CREAT, FXF_READ, FXF_TRUNC, FXF_WRITE};
use super::error::{Kind, SftpError};
use super::metadata::Metadata;
use super::ops::within;
use super::session::{Session, Ticket};
use super::Sftp;

fn local(e: std::io::Error) -> SftpError {
    SftpError::new("transfer", None, Kind::Local(Arc::new(e)))
}

/// Waits for a reply, at most `stall`.
async fn wait<T>(
    stall: Option<Duration>,
    reply: impl Future<Output = Result<T, super::error::Broken>>,
) -> Result<T, SftpError> {
    let broken = |b| SftpError::new("transfer", None, Kind::Broken(b));
    match stall {
        Some(t) => match tokio::time::timeout(t, reply).await {
            Ok(r) => r.map_err(broken),
            Err(_) => Err(SftpError::new("transfer", None, Kind::Stalled(t))),
        },
        None => reply.await.map_err(broken),
    }
}

/// Budget for `bytes`: at once if there is some, else (with nothing of
/// ours in flight to free it) waiting for other transfers; `None`: consume
/// a reply first.
async fn budget(
    session: &Session,
    bytes: u32,
    ours_in_flight: bool,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    match session.try_budget(bytes) {
        Some(p) => Some(p),
        None if ours_in_flight => None,
        None => Some(session.budget(bytes).await),
    }
}

/// Writes everything `src` gives to `handle` from offset 0; the bytes sent.
pub(crate) async fn upload<R>(
    session: &Session,
    handle: &[u8],
    src: &mut R,
) -> Result<u64, SftpError>
where
    R: AsyncRead + Unpin,
{
    let chunk = session.write_len;
    let max = session.config.max_requests.max(1);
    let stall = session.config.stall_timeout;
    let mut window = 1;
    let mut in_flight: VecDeque<Ticket> = VecDeque::new();
    let mut offset = 0u64;
    let mut read_all = false;
    loop {
        while !read_all && in_flight.len() < window {
            let Some(permit) = budget(session, chunk, !in_flight.is_empty()).await else {
                break;
            };
            let extra = handle.len() + 16 + chunk as usize;
            let mut request = Request::with_capacity(codec::WRITE, extra)
                .string(handle)
                .u64(offset);
            let n = request.data_from(src, chunk).await.map_err(local)?;
            if n == 0 {
                read_all = true;
                break;
            }
            in_flight.push_back(session.send(request, Some(permit), true)?);
            offset += u64::from(n);
        }
        let Some(mut oldest) = in_flight.pop_front() else {
            return Ok(offset);
        };
        let reply = wait(stall, oldest.reply()).await?;
        session.status(reply)?;
        window = (window + 1).min(max);
    }
}

/// A READ in flight.
struct Read {
    offset: u64,
    len: u32,
    ticket: Ticket,
}

/// Reads `handle` from offset 0 to its end into `dst`, asking for at most
/// one chunk past `size_hint` at a time (more once the file proves
/// longer); the bytes written.
pub(crate) async fn download<W>(
    session: &Session,
    handle: &[u8],
    size_hint: u64,
    dst: &mut W,
) -> Result<u64, SftpError>
where
    W: AsyncWrite + Unpin,
{
    let chunk = session.read_len;
    let max = session.config.max_requests.max(1);
    let stall = session.config.stall_timeout;
    let read = |offset: u64, len: u32| {
        Request::new(codec::READ)
            .string(handle)
            .u64(offset)
            .u32(len)
    };
    let mut window = 1;
    let mut size = size_hint;
    let mut in_flight: VecDeque<Read> = VecDeque::new();
    let mut next = 0u64;
    let mut written = 0u64;
    loop {
        while in_flight.len() < window {
            // Past the size we know, one request at a time: it finds the end.
            if next >= size && in_flight.back().is_some_and(|r| r.offset >= size) {
                break;
            }
            let Some(permit) = budget(session, chunk, !in_flight.is_empty()).await else {
                break;
            };
            let ticket = session.send(read(next, chunk), Some(permit), false)?;
            in_flight.push_back(Read {
                offset: next,
                len: chunk,
                ticket,
            });
            next += u64::from(chunk);
        }
        let Some(mut oldest) = in_flight.pop_front() else {
            break;
        };
        let reply = wait(stall, oldest.ticket.reply()).await?;
        if reply.kind == codec::STATUS {
            let status = session.status_code(reply)?;
            if status.code == codec::FX_EOF {
                // The end; what was asked past it is abandoned.
                break;
            }
            return Err(SftpError::new("transfer", None, Kind::Status(status)));
        }
        let body = session.expect(reply, codec::DATA)?;
        let data = Fields(body)
            .bytes("data")
            .map_err(|m| session.malformed(m))?;
        let n = data.len() as u32;
        if n == 0 || n > oldest.len {
            return Err(
                session.protocol(format!("{n} bytes in answer to a read of {}", oldest.len))
            );
        }
        dst.write_all(&data).await.map_err(local)?;
        written += u64::from(n);
        if oldest.offset >= size {
            // The file is longer than it was: read on to its end.
            size = u64::MAX;
        }
        if n < oldest.len {
            // A short read: the rest is asked for again, first in line.
            let (offset, len) = (oldest.offset + u64::from(n), oldest.len - n);
            let ticket = session.send(read(offset, len), None, false)?;
            in_flight.push_front(Read {
                offset,
                len,
                ticket,
            });
        }
        window = (window + 1).min(max);
    }
    dst.flush().await.map_err(local)?;
    Ok(written)
}

impl Sftp {
    fn transfer_limit(&self) -> Option<Duration> {
        self.session.config.transfer_timeout
    }

    /// Uploads the local file `local` to `remote` (created, or truncated),
    /// pipelined; the bytes sent. A file it creates gets `local`'s
    /// permission bits, as OpenSSH's `sftp put` does.
    ///
    /// # Errors
    ///
    /// [`SftpError::is_timeout`] past the transfer timeout or the stall
    /// timeout ([`SftpBuilder`](super::SftpBuilder)); the server's status
    /// ([`SftpError::status`]); [`SftpError::is_local`] if `local` cannot
    /// be read.
    ///
    /// # Cancellation
    ///
    /// Dropping the future (or its deadline passing) closes the remote
    /// file (its CLOSE is sent, not awaited); what was written stays. The
    /// session stays usable.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: &ssh_dial::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let sftp = client.sftp().await?;
    /// let sent = sftp.put("target/release/app", "/srv/app/app.new").await?;
    /// sftp.rename("/srv/app/app.new", "/srv/app/app").await?;
    /// # Ok(()) }
    /// ```
    pub async fn put(&self, local: impl AsRef<Path>, remote: &str) -> Result<u64, SftpError> {
        let local = local.as_ref();
        super::check("put", remote)?;
        within("put", remote, self.transfer_limit(), async {
            let mut file = tokio::fs::File::open(local).await.map_err(local_err)?;
            let mode = file.metadata().await.map_err(local_err)?;
            let attrs = Metadata::new().with_permissions(permissions(&mode));
            self.upload_from(&mut file, remote, attrs).await
        })
        .await
    }

    /// Uploads everything `src` gives to `remote` (created, or truncated),
    /// pipelined; the bytes sent.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put); [`SftpError::is_local`] if `src` fails.
    ///
    /// # Cancellation
    ///
    /// As [`put`](Self::put).
    pub async fn put_from<R>(&self, src: &mut R, remote: &str) -> Result<u64, SftpError>
    where
        R: AsyncRead + Unpin,
    {
        within("put", remote, self.transfer_limit(), async {
            self.upload_from(src, remote, Metadata::new()).await
        })
        .await
    }

    async fn upload_from<R>(
        &self,
        src: &mut R,
        remote: &str,
        attrs: Metadata,
    ) -> Result<u64, SftpError>
    where
        R: AsyncRead + Unpin,
    {
        super::check("put", remote)?;
        let session = &self.session;
        let limit = session.config.timeout;
        let flags = FXF_WRITE | FXF_CREAT | FXF_TRUNC;
        let handle = within(
            "put",
            remote,
            limit,
            session.open_handle(remote, flags, &attrs),
        )
        .await?;
        let sent = upload(session, &handle.handle, src).await?;
        within("put", remote, limit, handle.close()).await?;
        Ok(sent)
    }

    /// Downloads `remote` to the local file `local` (created, or
    /// truncated), pipelined; the bytes received.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put); [`SftpError::is_local`] if `local` cannot be
    /// written.
    ///
    /// # Cancellation
    ///
    /// Dropping the future (or its deadline passing) closes the remote
    /// file; `local` keeps what was written.
    pub async fn get(&self, remote: &str, local: impl AsRef<Path>) -> Result<u64, SftpError> {
        let local = local.as_ref();
        within("get", remote, self.transfer_limit(), async {
            let session = &self.session;
            let limit = session.config.timeout;
            let (handle, size) = self.open_for_reading(remote, limit).await?;
            let file = tokio::fs::File::create(local).await.map_err(local_err)?;
            let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
            let got = download(session, &handle.handle, size, &mut file).await?;
            within("get", remote, limit, handle.close()).await?;
            Ok(got)
        })
        .await
    }

    /// Downloads `remote` into `dst`, pipelined; the bytes written.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); [`SftpError::is_local`] if `dst` fails.
    ///
    /// # Cancellation
    ///
    /// As [`get`](Self::get).
    pub async fn get_to<W>(&self, remote: &str, dst: &mut W) -> Result<u64, SftpError>
    where
        W: AsyncWrite + Unpin,
    {
        within("get", remote, self.transfer_limit(), async {
            let session = &self.session;
            let limit = session.config.timeout;
            let (handle, size) = self.open_for_reading(remote, limit).await?;
            let got = download(session, &handle.handle, size, dst).await?;
            within("get", remote, limit, handle.close()).await?;
            Ok(got)
        })
        .await
    }

    /// Opens `remote` for reading, with its size (0 if the server does
    /// not say: then it is read to its end one request at a time first).
    async fn open_for_reading(
        &self,
        remote: &str,
        limit: Option<Duration>,
    ) -> Result<(super::ops::RemoteHandle, u64), SftpError> {
        super::check("get", remote)?;
        let session = &self.session;
        within("get", remote, limit, async {
            let handle = session
                .open_handle(remote, FXF_READ, &Metadata::new())
                .await?;
            let stat = Request::new(codec::FSTAT).string(&handle.handle);
            let size = session.attrs(stat).await?.len().unwrap_or(0);
            Ok((handle, size))
        })
        .await
    }
}

fn local_err(e: std::io::Error) -> SftpError {
    local(e)
}

#[cfg(unix)]
fn permissions(m: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn permissions(m: &std::fs::Metadata) -> u32 {
    if m.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}
