//! Files over SFTP, bounded like the dial: [`Client::sftp`] opens a session
//! on the `sftp` subsystem (protocol version 3 as OpenSSH speaks it, with
//! its extensions), whose operations each run under a deadline, and whose
//! transfers are pipelined as OpenSSH's `sftp` pipelines them.
//!
//! Why our own client: the SFTP clients Rust, Go, Python and Java users
//! reach for hang on a server that stops answering (russh-sftp times each
//! request from when it is queued, nothing bounds a transfer; Go's
//! pkg/sftp, paramiko and jsch have open hangs), and what bounds a dial
//! must bound what follows it. Version 3 is small: the codec is one file.
//!
//! The data flows one way: `codec.rs` (packets) and `metadata.rs` (the
//! values) → `channel.rs` (the subsystem's channel) → `session.rs` (ids,
//! the writer and reader tasks, the budget of bytes in flight) → `ops.rs`
//! (one request, one reply, handles closed on drop) → `transfer.rs` (the
//! pipelined put and get) and `file.rs` (a remote file as `AsyncRead`,
//! `AsyncWrite` and `AsyncSeek`) → this file (the public operations).

mod channel;
mod codec;
mod error;
mod file;
mod metadata;
mod ops;
mod session;
mod transfer;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use error::SftpError;
pub use file::File;
pub use metadata::{DirEntry, FileType, FsStats, Metadata, OpenOptions};
pub(crate) use ops::within;

use codec::Request;
use error::Kind;
use session::{Config, Session};

use crate::Client;

/// How long each small operation (and the session's start) may take when
/// not set: [`SftpBuilder::timeout`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a transfer may wait for any reply when not set.
const DEFAULT_STALL: Duration = Duration::from_secs(30);
/// Requests in flight per transfer, as OpenSSH's `sftp -R`.
const DEFAULT_MAX_REQUESTS: usize = 64;
/// Bytes in flight per session.
const DEFAULT_MAX_IN_FLIGHT: usize = 4 << 20;

/// Configures an SFTP session: from [`Client::sftp_builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct SftpBuilder<'a> {
    client: &'a Client,
    config: Config,
}

impl<'a> SftpBuilder<'a> {
    fn new(client: &'a Client) -> Self {
        SftpBuilder {
            client,
            config: Config {
                timeout: Some(DEFAULT_TIMEOUT),
                transfer_timeout: None,
                stall_timeout: Some(DEFAULT_STALL),
                max_requests: DEFAULT_MAX_REQUESTS,
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
                chunk: None,
            },
        }
    }

    /// The deadline of the session's start (channel, subsystem, version
    /// exchange) and of each small operation (`metadata`, `rename`, a
    /// transfer's open and close, each read or write of a [`File`]).
    ///
    /// If `None`, as long as the server takes. Default is 30 seconds.
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.timeout = timeout.into();
        self
    }

    /// One deadline over each whole `put` or `get`, open to close.
    ///
    /// If `None`, a transfer may take as long as it makes progress (see
    /// [`stall_timeout`](Self::stall_timeout)). Default is `None`.
    pub fn transfer_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.transfer_timeout = timeout.into();
        self
    }

    /// How long a transfer may wait for the server's next reply: a server
    /// that stops answering fails the transfer this long after its last
    /// answer.
    ///
    /// If `None`, no limit. Default is 30 seconds.
    pub fn stall_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.stall_timeout = timeout.into();
        self
    }

    /// Requests in flight per transfer, at most. Transfers start with one
    /// and add one per reply, as OpenSSH's `sftp` does. Default is 64.
    pub fn max_requests(mut self, requests: usize) -> Self {
        self.config.max_requests = requests.max(1);
        self
    }

    /// Bytes in flight in the session, at most: data read from a local
    /// source not yet handed to the channel, and data asked of the server
    /// not yet handed to the destination, over every transfer of the
    /// session. Default is 4 MiB.
    pub fn max_in_flight(mut self, bytes: usize) -> Self {
        self.config.max_in_flight = bytes.max(1);
        self
    }

    /// The most data one READ or WRITE request carries. Default is what the
    /// server allows (`limits@openssh.com`, 255 KiB for OpenSSH 8.7 and
    /// later), capped at 255 KiB; 32 KiB for servers that do not say.
    pub fn request_size(mut self, bytes: u32) -> Self {
        self.config.chunk = Some(bytes.max(1));
        self
    }

    /// Opens the session.
    ///
    /// # Errors
    ///
    /// [`SftpError::is_timeout`] if it did not start within the
    /// [`timeout`](Self::timeout) (the channel's open is also bounded by
    /// the dialer's [`open_timeout`](crate::DialerBuilder::open_timeout));
    /// [`SftpError::is_closed`] if the SSH session is gone or the server
    /// refused the subsystem; [`SftpError::is_protocol`] for a server that
    /// does not speak SFTP version 3.
    ///
    /// # Cancellation
    ///
    /// Dropping the future closes the channel (or, if the server has not
    /// answered its open, closes it when it does).
    pub async fn open(self) -> Result<Sftp, SftpError> {
        let config = self.config;
        let client = self.client;
        let start = async {
            let open_limit = match (client.open_timeout(), config.timeout) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let channel = channel::open(client, "sftp", open_limit)
                .await
                .map_err(|e| SftpError::new("open session", None, Kind::Open(Arc::new(e))))?;
            Session::start(channel, config).await
        };
        let session = within("open session", "", config.timeout, start).await?;
        Ok(Sftp {
            session: Arc::new(session),
        })
    }
}

impl Client {
    /// Opens an SFTP session on this connection with the default bounds
    /// (30 s per operation, 30 s stall timeout, 64 requests and 4 MiB in
    /// flight): `client.sftp_builder().open()`.
    ///
    /// # Errors
    ///
    /// As [`SftpBuilder::open`].
    ///
    /// # Cancellation
    ///
    /// As [`SftpBuilder::open`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: &ssh_dial::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let sftp = client.sftp().await?;
    /// sftp.get("/var/log/syslog", "syslog").await?;
    /// for entry in sftp.read_dir("/var/log").await? {
    ///     println!("{:?} {:?}", entry.file_name(), entry.metadata().len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn sftp(&self) -> Result<Sftp, SftpError> {
        self.sftp_builder().open().await
    }

    /// Configures an SFTP session: deadlines, requests and bytes in flight.
    ///
    /// ```no_run
    /// # async fn run(client: &ssh_dial::Client) -> Result<(), ssh_dial::SftpError> {
    /// use std::time::Duration;
    /// let sftp = client
    ///     .sftp_builder()
    ///     .transfer_timeout(Duration::from_secs(600))
    ///     .stall_timeout(Duration::from_secs(10))
    ///     .open()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn sftp_builder(&self) -> SftpBuilder<'_> {
        SftpBuilder::new(self)
    }
}

/// An SFTP session: one `sftp` subsystem channel, shared by its clones and
/// the [`File`]s it opens. The channel is closed when the last of them is
/// dropped, when the server breaks the protocol, or when the SSH session
/// ends (dropping the [`Client`] ends it); then every operation fails with
/// [`SftpError::is_closed`].
///
/// Every operation runs under the session's per-operation
/// [`timeout`](SftpBuilder::timeout), transfers under the transfer and
/// stall timeouts. An operation that times out (or whose future is
/// dropped) leaves the session usable: its late reply is dropped when it
/// comes, and a file it opened is closed.
///
/// Paths are the server's: relative ones start at the login directory.
#[derive(Clone)]
pub struct Sftp {
    session: Arc<Session>,
}

impl fmt::Debug for Sftp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sftp")
            .field("closed", &self.session.is_closed())
            .field("request_size", &self.session.read_len)
            .finish_non_exhaustive()
    }
}

/// Refuses a path the server would read otherwise than meant: a NUL ends
/// a C string, so `a\0b` would name `a`.
fn check(op: &'static str, path: &str) -> Result<(), SftpError> {
    let why = if path.contains('\0') {
        "a path with a NUL byte"
    } else if path.len() > 64 * 1024 {
        "a path over 64 KiB"
    } else {
        return Ok(());
    };
    Err(SftpError::new(op, Some(path), Kind::InvalidInput(why)))
}

impl Sftp {
    async fn small<T>(
        &self,
        op: &'static str,
        path: &str,
        work: impl std::future::Future<Output = Result<T, SftpError>>,
    ) -> Result<T, SftpError> {
        check(op, path)?;
        within(op, path, self.session.config.timeout, work).await
    }

    fn path_request(kind: u8, path: &str) -> Request {
        Request::new(kind).string(path.as_bytes())
    }

    /// True if the server offers the extension `name` (`posix-rename@openssh.com`).
    pub fn has_extension(&self, name: &str) -> bool {
        self.session.version.has(name)
    }

    /// The most data one read and one write request carry (the server's
    /// limits, capped at 255 KiB).
    pub fn request_sizes(&self) -> (u32, u32) {
        (self.session.read_len, self.session.write_len)
    }

    /// True once the session is over (see [`Sftp`]).
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// The attributes of `path`, following symbolic links (`stat`).
    ///
    /// # Errors
    ///
    /// The server's status ([`SftpError::is_not_found`],
    /// [`SftpError::is_permission_denied`], [`SftpError::status`]);
    /// [`SftpError::is_timeout`] past the session's timeout;
    /// [`SftpError::is_closed`] if the session is over.
    ///
    /// # Cancellation
    ///
    /// Dropping the future abandons the request: its reply is dropped when
    /// it comes (a directory handle in it is closed). This holds for every
    /// small operation.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(sftp: &ssh_dial::Sftp) -> Result<(), ssh_dial::SftpError> {
    /// match sftp.metadata("/etc/motd").await {
    ///     Ok(m) => println!("{} bytes", m.len().unwrap_or(0)),
    ///     Err(e) if e.is_not_found() => println!("no motd"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn metadata(&self, path: &str) -> Result<Metadata, SftpError> {
        let request = Self::path_request(codec::STAT, path);
        self.small("stat", path, self.session.attrs(request)).await
    }

    /// The attributes of `path` itself, a symbolic link not followed
    /// (`lstat`).
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata).
    pub async fn symlink_metadata(&self, path: &str) -> Result<Metadata, SftpError> {
        let request = Self::path_request(codec::LSTAT, path);
        self.small("lstat", path, self.session.attrs(request)).await
    }

    /// Changes what `changes` sets of `path`'s attributes: permissions,
    /// owner, times, size.
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata).
    pub async fn set_metadata(&self, path: &str, changes: Metadata) -> Result<(), SftpError> {
        let request = Self::path_request(codec::SETSTAT, path).attrs(&changes);
        self.status_call("setstat", path, request).await
    }

    async fn status_call(
        &self,
        op: &'static str,
        path: &str,
        request: Request,
    ) -> Result<(), SftpError> {
        self.small(op, path, async {
            let reply = self.session.call(request).await?;
            self.session.status(reply)
        })
        .await
    }

    /// The entries of the directory `path`, without `.` and `..`, in the
    /// server's order; at most a million (a server that never ends a
    /// listing fails it there instead of filling memory).
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata); the timeout is over the whole
    /// listing; an error past a million entries.
    pub async fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, SftpError> {
        self.small("read_dir", path, self.session.list(path)).await
    }

    /// Creates the directory `path` (its parent must exist).
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata): OpenSSH answers `SSH_FX_FAILURE`
    /// for a directory that exists.
    pub async fn create_dir(&self, path: &str) -> Result<(), SftpError> {
        let request = Self::path_request(codec::MKDIR, path).attrs(&Metadata::new());
        self.status_call("mkdir", path, request).await
    }

    /// Removes the file (or symbolic link) `path`.
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata).
    pub async fn remove_file(&self, path: &str) -> Result<(), SftpError> {
        let request = Self::path_request(codec::REMOVE, path);
        self.status_call("remove", path, request).await
    }

    /// Removes the empty directory `path`.
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata).
    pub async fn remove_dir(&self, path: &str) -> Result<(), SftpError> {
        let request = Self::path_request(codec::RMDIR, path);
        self.status_call("rmdir", path, request).await
    }

    /// Renames `from` to `to`, replacing `to` if it exists where the
    /// server offers `posix-rename@openssh.com` (as OpenSSH's `sftp`
    /// does); plain SFTP renames refuse to replace.
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), SftpError> {
        check("rename", to)?;
        let request = if self.has_extension("posix-rename@openssh.com") {
            Request::extended("posix-rename@openssh.com")
        } else {
            Request::new(codec::RENAME)
        };
        let request = request.string(from.as_bytes()).string(to.as_bytes());
        self.status_call("rename", from, request).await
    }

    /// Makes `link` a hard link to `original` (`hardlink@openssh.com`).
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata); [`SftpError::is_unsupported`] if
    /// the server lacks the extension.
    pub async fn hard_link(&self, original: &str, link: &str) -> Result<(), SftpError> {
        check("hardlink", link)?;
        self.need("hardlink", original, "hardlink@openssh.com")?;
        let request = Request::extended("hardlink@openssh.com")
            .string(original.as_bytes())
            .string(link.as_bytes());
        self.status_call("hardlink", original, request).await
    }

    fn need(&self, op: &'static str, path: &str, ext: &'static str) -> Result<(), SftpError> {
        if self.has_extension(ext) {
            Ok(())
        } else {
            Err(SftpError::new(op, Some(path), Kind::Unsupported(ext)))
        }
    }

    /// Makes `link` a symbolic link to `target`. (OpenSSH's server takes
    /// the two paths in the reverse of the draft's order; this sends them
    /// as OpenSSH does, which is what servers expect.)
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata).
    pub async fn symlink(&self, target: &str, link: &str) -> Result<(), SftpError> {
        check("symlink", target)?;
        let request = Request::new(codec::SYMLINK)
            .string(target.as_bytes())
            .string(link.as_bytes());
        self.status_call("symlink", link, request).await
    }

    /// What the symbolic link `path` points to.
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata).
    pub async fn read_link(&self, path: &str) -> Result<String, SftpError> {
        let request = Self::path_request(codec::READLINK, path);
        self.small("readlink", path, self.session.one_name(request))
            .await
    }

    /// The absolute, canonical form of `path` (`.` is the login directory).
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata).
    pub async fn canonicalize(&self, path: &str) -> Result<String, SftpError> {
        let request = Self::path_request(codec::REALPATH, path);
        self.small("realpath", path, self.session.one_name(request))
            .await
    }

    /// The file system's statistics at `path` (`statvfs@openssh.com`).
    ///
    /// # Errors
    ///
    /// As [`metadata`](Self::metadata); [`SftpError::is_unsupported`] if
    /// the server lacks the extension.
    pub async fn fs_stats(&self, path: &str) -> Result<FsStats, SftpError> {
        self.need("statvfs", path, "statvfs@openssh.com")?;
        let request = Request::extended("statvfs@openssh.com").string(path.as_bytes());
        self.small("statvfs", path, async {
            let reply = self.session.call(request).await?;
            let body = self.session.expect(reply, codec::EXTENDED_REPLY)?;
            FsStats::decode(body).map_err(|m| self.session.malformed(m))
        })
        .await
    }
}
