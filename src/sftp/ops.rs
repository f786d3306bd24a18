//! One request, one reply: what each small operation sends and what it
//! makes of the answer, under the session's per-operation deadline; and a
//! remote handle that is closed however its holder goes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::codec::{self, Fields, Malformed, Reply, Request, Status};
use super::error::{Broken, Kind, SftpError};
use super::metadata::{DirEntry, Metadata};
use super::session::Session;

/// The most entries one listing takes: a million names, some hundred MiB;
/// past it, a server that never ends a listing fails it instead of filling
/// memory until the timeout.
pub(crate) const MAX_LISTING: usize = 1_000_000;

/// Runs `work` for `op` on `path` within `limit`.
pub(crate) async fn within<T>(
    op: &'static str,
    path: &str,
    limit: Option<Duration>,
    work: impl Future<Output = Result<T, SftpError>>,
) -> Result<T, SftpError> {
    let result = match limit {
        Some(t) => match tokio::time::timeout(t, work).await {
            Ok(result) => result,
            Err(_) => Err(SftpError::new(op, None, Kind::Timeout(t))),
        },
        None => work.await,
    };
    result.map_err(|e| match path {
        "" => e.with_op(op),
        path => e.with_op(op).with_path(path),
    })
}

impl Session {
    /// Sends `request` and waits for its reply (the caller bounds the wait).
    pub(crate) async fn call(&self, request: Request) -> Result<Reply, SftpError> {
        let mut ticket = self.send(request, None, false)?;
        ticket
            .reply()
            .await
            .map_err(|b| SftpError::new("request", None, Kind::Broken(b)))
    }

    /// A reply that breaks the protocol ends the session: the server and
    /// we no longer agree on what was asked.
    pub(crate) fn protocol(&self, why: impl Into<String>) -> SftpError {
        let why = Broken::Protocol(why.into());
        self.end(why.clone());
        SftpError::new("request", None, Kind::Broken(why))
    }

    pub(crate) fn malformed(&self, m: Malformed) -> SftpError {
        self.protocol(m.0)
    }

    /// A status reply as a result: OK is `Ok`.
    pub(crate) fn status(&self, reply: Reply) -> Result<(), SftpError> {
        match self.status_code(reply)? {
            s if s.code == codec::FX_OK => Ok(()),
            s => Err(SftpError::new("request", None, Kind::Status(s))),
        }
    }

    /// The status a reply carries; any other reply breaks the protocol.
    pub(crate) fn status_code(&self, reply: Reply) -> Result<Status, SftpError> {
        if reply.kind != codec::STATUS {
            return Err(self.protocol(format!(
                "a reply of type {} where a status was due",
                reply.kind
            )));
        }
        Status::decode(reply.body).map_err(|m| self.malformed(m))
    }

    /// The reply of type `kind`'s body; a status is the server's error.
    pub(crate) fn expect(&self, reply: Reply, kind: u8) -> Result<Bytes, SftpError> {
        if reply.kind == kind {
            return Ok(reply.body);
        }
        let status = self.status_code(reply)?;
        if status.code == codec::FX_OK {
            return Err(self.protocol("an OK status where data was due"));
        }
        Err(SftpError::new("request", None, Kind::Status(status)))
    }

    pub(crate) async fn attrs(&self, request: Request) -> Result<Metadata, SftpError> {
        let body = self.expect(self.call(request).await?, codec::ATTRS)?;
        Metadata::decode(&mut Fields(body)).map_err(|m| self.malformed(m))
    }

    /// The one name a REALPATH or READLINK answers.
    pub(crate) async fn one_name(&self, request: Request) -> Result<String, SftpError> {
        let body = self.expect(self.call(request).await?, codec::NAME)?;
        let names = codec::names(body).map_err(|m| self.malformed(m))?;
        match names.into_iter().next() {
            Some(name) => Ok(name.filename),
            None => Err(self.protocol("a name reply with no name")),
        }
    }

    /// Opens `path` with `flags` and `attrs`; the handle closes itself.
    pub(crate) async fn open_handle(
        self: &Arc<Self>,
        path: &str,
        flags: u32,
        attrs: &Metadata,
    ) -> Result<RemoteHandle, SftpError> {
        let request = Request::new(codec::OPEN)
            .string(path.as_bytes())
            .u32(flags)
            .attrs(attrs);
        self.handle(request).await
    }

    pub(crate) async fn handle(
        self: &Arc<Self>,
        request: Request,
    ) -> Result<RemoteHandle, SftpError> {
        // The handle is closed even if this future is dropped while the
        // reply is on its way: the ticket's reply is taken in one step.
        let body = self.expect(self.call(request).await?, codec::HANDLE)?;
        let handle = Fields(body)
            .bytes("handle")
            .map_err(|m| self.malformed(m))?;
        if handle.len() > 256 {
            return Err(self.protocol(format!("a handle of {} bytes", handle.len())));
        }
        Ok(RemoteHandle {
            session: self.clone(),
            handle,
            open: true,
        })
    }

    /// Lists the directory `path` (without `.` and `..`), at most
    /// [`MAX_LISTING`] entries.
    pub(crate) async fn list(self: &Arc<Self>, path: &str) -> Result<Vec<DirEntry>, SftpError> {
        let dir = self
            .handle(Request::new(codec::OPENDIR).string(path.as_bytes()))
            .await?;
        let mut entries = Vec::new();
        loop {
            let reply = self
                .call(Request::new(codec::READDIR).string(&dir.handle))
                .await?;
            if reply.kind == codec::STATUS {
                let status = self.status_code(reply)?;
                if status.code == codec::FX_EOF {
                    break;
                }
                return Err(SftpError::new("request", None, Kind::Status(status)));
            }
            let body = self.expect(reply, codec::NAME)?;
            let names = codec::names(body).map_err(|m| self.malformed(m))?;
            if names.is_empty() {
                break;
            }
            if entries.len().saturating_add(names.len()) > MAX_LISTING {
                return Err(SftpError::new("request", None, Kind::TooLong(MAX_LISTING)));
            }
            entries.extend(
                names
                    .into_iter()
                    .filter(|n| n.filename != "." && n.filename != "..")
                    .map(|n| DirEntry {
                        name: n.filename,
                        long_name: n.longname,
                        metadata: n.attrs,
                    }),
            );
        }
        dir.close().await?;
        Ok(entries)
    }
}

/// An open remote file or directory handle: closed when dropped (CLOSE
/// sent, its reply not awaited) unless [`close`](Self::close)d.
pub(crate) struct RemoteHandle {
    pub(crate) session: Arc<Session>,
    pub(crate) handle: Bytes,
    open: bool,
}

impl RemoteHandle {
    /// Closes it and waits for the server's answer (a write error can show
    /// only here, as with close(2)).
    pub(crate) async fn close(mut self) -> Result<(), SftpError> {
        self.open = false;
        let request = Request::new(codec::CLOSE).string(&self.handle);
        let reply = self.session.call(request).await?;
        self.session.status(reply)
    }
}

impl Drop for RemoteHandle {
    fn drop(&mut self) {
        if self.open {
            self.session.close_quietly(&self.handle);
        }
    }
}
