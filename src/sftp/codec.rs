//! The SFTP protocol, version 3 as OpenSSH speaks it
//! (draft-ietf-secsh-filexfer-02 and OpenSSH's PROTOCOL file): requests
//! encoded whole, replies decoded from one packet, nothing else.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::metadata::Metadata;

/// The largest packet either side may send: OpenSSH's
/// `SFTP_MAX_MSG_LENGTH`, which its client enforces too.
pub(crate) const MAX_PACKET: usize = 256 * 1024;

/// The most data one READ or WRITE carries when the server does not say
/// (`limits@openssh.com`): what every SFTP server takes.
pub(crate) const DEFAULT_CHUNK: u32 = 32 * 1024;

/// The most data one READ or WRITE may carry, so that a packet stays
/// within [`MAX_PACKET`]: OpenSSH's `SFTP_MAX_MSG_LENGTH - 1024`.
pub(crate) const MAX_CHUNK: u32 = (MAX_PACKET - 1024) as u32;

pub(crate) const INIT: u8 = 1;
pub(crate) const VERSION: u8 = 2;
pub(crate) const OPEN: u8 = 3;
pub(crate) const CLOSE: u8 = 4;
pub(crate) const READ: u8 = 5;
pub(crate) const WRITE: u8 = 6;
pub(crate) const LSTAT: u8 = 7;
pub(crate) const FSTAT: u8 = 8;
pub(crate) const SETSTAT: u8 = 9;
pub(crate) const FSETSTAT: u8 = 10;
pub(crate) const OPENDIR: u8 = 11;
pub(crate) const READDIR: u8 = 12;
pub(crate) const REMOVE: u8 = 13;
pub(crate) const MKDIR: u8 = 14;
pub(crate) const RMDIR: u8 = 15;
pub(crate) const REALPATH: u8 = 16;
pub(crate) const STAT: u8 = 17;
pub(crate) const RENAME: u8 = 18;
pub(crate) const READLINK: u8 = 19;
pub(crate) const SYMLINK: u8 = 20;
pub(crate) const EXTENDED: u8 = 200;

pub(crate) const STATUS: u8 = 101;
pub(crate) const HANDLE: u8 = 102;
pub(crate) const DATA: u8 = 103;
pub(crate) const NAME: u8 = 104;
pub(crate) const ATTRS: u8 = 105;
pub(crate) const EXTENDED_REPLY: u8 = 201;

/// `SSH_FXF_*`, the open flags.
pub(crate) const FXF_READ: u32 = 0x01;
pub(crate) const FXF_WRITE: u32 = 0x02;
pub(crate) const FXF_APPEND: u32 = 0x04;
pub(crate) const FXF_CREAT: u32 = 0x08;
pub(crate) const FXF_TRUNC: u32 = 0x10;
pub(crate) const FXF_EXCL: u32 = 0x20;

/// `SSH_FX_*`, the status codes.
pub(crate) const FX_OK: u32 = 0;
pub(crate) const FX_EOF: u32 = 1;
pub(crate) const FX_NO_SUCH_FILE: u32 = 2;
pub(crate) const FX_PERMISSION_DENIED: u32 = 3;
pub(crate) const FX_OP_UNSUPPORTED: u32 = 8;

/// The name of a status code, as the draft spells it.
pub(crate) fn status_name(code: u32) -> &'static str {
    match code {
        0 => "SSH_FX_OK",
        1 => "SSH_FX_EOF",
        2 => "SSH_FX_NO_SUCH_FILE",
        3 => "SSH_FX_PERMISSION_DENIED",
        4 => "SSH_FX_FAILURE",
        5 => "SSH_FX_BAD_MESSAGE",
        6 => "SSH_FX_NO_CONNECTION",
        7 => "SSH_FX_CONNECTION_LOST",
        8 => "SSH_FX_OP_UNSUPPORTED",
        _ => "an unknown status",
    }
}

/// A request being encoded: `length type id` and the fields after.
pub(crate) struct Request(BytesMut);

impl Request {
    /// A request of type `kind`, its id filled in when it is sent.
    pub(crate) fn new(kind: u8) -> Self {
        Request::with_capacity(kind, 64)
    }

    /// The request's type.
    pub(crate) fn kind(&self) -> u8 {
        self.0[4]
    }

    pub(crate) fn with_capacity(kind: u8, extra: usize) -> Self {
        let mut b = BytesMut::with_capacity(9 + extra);
        b.put_u32(0);
        b.put_u8(kind);
        b.put_u32(0);
        Request(b)
    }

    /// An `SSH_FXP_EXTENDED` request named `name`.
    pub(crate) fn extended(name: &str) -> Self {
        Request::new(EXTENDED).string(name.as_bytes())
    }

    pub(crate) fn u32(mut self, v: u32) -> Self {
        self.0.put_u32(v);
        self
    }

    pub(crate) fn u64(mut self, v: u64) -> Self {
        self.0.put_u64(v);
        self
    }

    pub(crate) fn string(mut self, s: &[u8]) -> Self {
        self.0.put_u32(s.len() as u32);
        self.0.put_slice(s);
        self
    }

    pub(crate) fn attrs(mut self, m: &Metadata) -> Self {
        m.encode(&mut self.0);
        self
    }

    /// Appends a string of up to `limit` bytes read from `src` (to its
    /// end); how many were read.
    pub(crate) async fn data_from<R>(&mut self, src: &mut R, limit: u32) -> std::io::Result<u32>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        use tokio::io::AsyncReadExt;
        let at = self.0.len();
        self.0.put_u32(0);
        self.0.reserve(limit as usize);
        let mut src = src.take(u64::from(limit));
        while src.read_buf(&mut self.0).await? > 0 {}
        let n = (self.0.len() - at - 4) as u32;
        self.0[at..at + 4].copy_from_slice(&n.to_be_bytes());
        Ok(n)
    }

    /// The packet with `id`, its length set.
    pub(crate) fn finish(mut self, id: u32) -> Bytes {
        let len = (self.0.len() - 4) as u32;
        self.0[0..4].copy_from_slice(&len.to_be_bytes());
        self.0[5..9].copy_from_slice(&id.to_be_bytes());
        self.0.freeze()
    }
}

/// `SSH_FXP_INIT`, version 3 (it has no id).
pub(crate) fn init() -> Bytes {
    let mut b = BytesMut::with_capacity(9);
    b.put_u32(5);
    b.put_u8(INIT);
    b.put_u32(3);
    b.freeze()
}

/// A reply: its type and what follows its id.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) kind: u8,
    pub(crate) body: Bytes,
}

/// What a reply did not hold as it should: a protocol error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

/// Reads fields off a packet, failing on one cut short.
pub(crate) struct Fields(pub(crate) Bytes);

impl Fields {
    fn need(&self, n: usize, what: &str) -> Result<(), Malformed> {
        if self.0.remaining() < n {
            return Err(Malformed(format!("a reply was cut short in its {what}")));
        }
        Ok(())
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, Malformed> {
        self.need(4, what)?;
        Ok(self.0.get_u32())
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, Malformed> {
        self.need(8, what)?;
        Ok(self.0.get_u64())
    }

    /// A string, without a copy.
    pub(crate) fn bytes(&mut self, what: &str) -> Result<Bytes, Malformed> {
        let n = self.u32(what)? as usize;
        self.need(n, what)?;
        Ok(self.0.split_to(n))
    }

    /// A string as text (anything not UTF-8 replaced).
    pub(crate) fn text(&mut self, what: &str) -> Result<String, Malformed> {
        Ok(String::from_utf8_lossy(&self.bytes(what)?).into_owned())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A status reply's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) code: u32,
    pub(crate) message: String,
}

impl Status {
    pub(crate) fn decode(body: Bytes) -> Result<Status, Malformed> {
        let mut f = Fields(body);
        let code = f.u32("status code")?;
        // Version 3 servers may leave out the message and language.
        let message = if f.is_empty() {
            String::new()
        } else {
            f.text("status message")?
        };
        Ok(Status { code, message })
    }
}

/// One entry of an `SSH_FXP_NAME` reply.
#[derive(Debug, Clone)]
pub(crate) struct Name {
    pub(crate) filename: String,
    pub(crate) longname: String,
    pub(crate) attrs: Metadata,
}

pub(crate) fn names(body: Bytes) -> Result<Vec<Name>, Malformed> {
    let mut f = Fields(body);
    let count = f.u32("name count")? as usize;
    // Each entry takes at least 12 bytes: no count can ask for more
    // entries than the packet holds.
    if count > f.0.remaining() / 12 {
        return Err(Malformed(format!("a name reply claims {count} entries")));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let filename = f.text("file name")?;
        let longname = f.text("long name")?;
        let attrs = Metadata::decode(&mut f)?;
        out.push(Name {
            filename,
            longname,
            attrs,
        });
    }
    Ok(out)
}

/// The server's `SSH_FXP_VERSION`: its version and extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Version {
    pub(crate) version: u32,
    pub(crate) extensions: Vec<(String, String)>,
}

impl Version {
    pub(crate) fn decode(body: Bytes) -> Result<Version, Malformed> {
        let mut f = Fields(body);
        let version = f.u32("version")?;
        let mut extensions = Vec::new();
        while !f.is_empty() && extensions.len() < 64 {
            let name = f.text("extension name")?;
            let data = f.text("extension data")?;
            extensions.push((name, data));
        }
        Ok(Version {
            version,
            extensions,
        })
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.extensions.iter().any(|(n, _)| n == name)
    }
}

/// What `limits@openssh.com` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_packet: u64,
    pub(crate) max_read: u64,
    pub(crate) max_write: u64,
    pub(crate) max_handles: u64,
}

impl Limits {
    pub(crate) fn decode(body: Bytes) -> Result<Limits, Malformed> {
        let mut f = Fields(body);
        Ok(Limits {
            max_packet: f.u64("limits")?,
            max_read: f.u64("limits")?,
            max_write: f.u64("limits")?,
            max_handles: f.u64("limits")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_has_its_length_and_id() {
        let p = Request::new(OPEN)
            .string(b"/tmp/x")
            .u32(FXF_READ)
            .attrs(&Metadata::new())
            .finish(7);
        assert_eq!(&p[..4], &((p.len() - 4) as u32).to_be_bytes());
        assert_eq!(p[4], OPEN);
        assert_eq!(&p[5..9], &7u32.to_be_bytes());
        assert_eq!(&p[9..13], &6u32.to_be_bytes());
    }

    #[test]
    fn short_replies_are_errors_not_panics() {
        for cut in 0..12 {
            let body = Bytes::from(vec![0u8, 0, 0, 2, 0, 0, 0, 9, b'a', 0, 0][..cut].to_vec());
            let _ = Status::decode(body.clone());
            let _ = names(body.clone());
            let _ = Version::decode(body.clone());
            let _ = Limits::decode(body);
        }
        // A count far past what the packet holds allocates nothing.
        assert!(names(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])).is_err());
    }
}
