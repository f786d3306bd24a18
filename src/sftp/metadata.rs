//! What SFTP says about a file (its attributes), a directory entry, and
//! how to open a file: the values of the public API.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

use super::codec::{
    Fields, Malformed, FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE,
};
use crate::text::PeerText;

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// A remote file's attributes, as much of them as the server sent; also
/// the changes to make with [`Sftp::set_metadata`](super::Sftp::set_metadata)
/// (only what is set is sent).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let changes = ssh_dial::Metadata::new()
///     .with_permissions(0o640)
///     .with_times(UNIX_EPOCH + Duration::from_secs(1), UNIX_EPOCH + Duration::from_secs(2));
/// assert_eq!(changes.permissions(), Some(0o640));
/// assert_eq!(changes.len(), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metadata {
    size: Option<u64>,
    owner: Option<(u32, u32)>,
    permissions: Option<u32>,
    /// Access and modification time, seconds since the epoch.
    times: Option<(u32, u32)>,
}

/// What kind of file, from the type bits of its permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only [`Sftp::symlink_metadata`](super::Sftp::symlink_metadata) sees one).
    Symlink,
    /// A device, socket or pipe, or a server that did not say.
    Other,
}

impl Metadata {
    /// No attributes: a starting point for [`Sftp::set_metadata`](super::Sftp::set_metadata).
    pub const fn new() -> Self {
        Metadata {
            size: None,
            owner: None,
            permissions: None,
            times: None,
        }
    }

    /// The size to set (truncates or extends the file).
    pub const fn with_len(mut self, len: u64) -> Self {
        self.size = Some(len);
        self
    }

    /// The numeric owner and group to set.
    pub const fn with_owner(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    /// The permission bits to set (`0o644`).
    pub const fn with_permissions(mut self, mode: u32) -> Self {
        self.permissions = Some(mode);
        self
    }

    /// The access and modification times to set (whole seconds, as SFTP
    /// version 3 carries them; times before 1970 or after 2106 are clamped).
    pub fn with_times(mut self, accessed: SystemTime, modified: SystemTime) -> Self {
        self.times = Some((secs(accessed), secs(modified)));
        self
    }

    /// The size in bytes, if the server sent it.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Option<u64> {
        self.size
    }

    /// The permission bits, with the file type bits (`0o100644`), if sent.
    pub fn permissions(&self) -> Option<u32> {
        self.permissions
    }

    /// The numeric user and group ids, if sent.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// The last modification, if sent.
    pub fn modified(&self) -> Option<SystemTime> {
        self.times
            .map(|(_, m)| UNIX_EPOCH + Duration::from_secs(m.into()))
    }

    /// The last access, if sent.
    pub fn accessed(&self) -> Option<SystemTime> {
        self.times
            .map(|(a, _)| UNIX_EPOCH + Duration::from_secs(a.into()))
    }

    /// The kind of file, from the permissions' type bits.
    pub fn file_type(&self) -> FileType {
        match self.permissions.map(|p| p & 0o170_000) {
            Some(0o100_000) => FileType::File,
            Some(0o040_000) => FileType::Dir,
            Some(0o120_000) => FileType::Symlink,
            _ => FileType::Other,
        }
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Dir
    }

    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type() == FileType::File
    }

    pub(crate) fn encode(&self, b: &mut BytesMut) {
        let mut flags = 0;
        flags |= if self.size.is_some() { ATTR_SIZE } else { 0 };
        flags |= if self.owner.is_some() { ATTR_UIDGID } else { 0 };
        flags |= if self.permissions.is_some() {
            ATTR_PERMISSIONS
        } else {
            0
        };
        flags |= if self.times.is_some() {
            ATTR_ACMODTIME
        } else {
            0
        };
        b.put_u32(flags);
        if let Some(size) = self.size {
            b.put_u64(size);
        }
        if let Some((uid, gid)) = self.owner {
            b.put_u32(uid);
            b.put_u32(gid);
        }
        if let Some(p) = self.permissions {
            b.put_u32(p);
        }
        if let Some((a, m)) = self.times {
            b.put_u32(a);
            b.put_u32(m);
        }
    }

    pub(crate) fn decode(f: &mut Fields) -> Result<Metadata, Malformed> {
        let flags = f.u32("attribute flags")?;
        let mut m = Metadata::new();
        if flags & ATTR_SIZE != 0 {
            m.size = Some(f.u64("size")?);
        }
        if flags & ATTR_UIDGID != 0 {
            m.owner = Some((f.u32("uid")?, f.u32("gid")?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            m.permissions = Some(f.u32("permissions")?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            m.times = Some((f.u32("atime")?, f.u32("mtime")?));
        }
        if flags & ATTR_EXTENDED != 0 {
            let count = f.u32("extended attribute count")?;
            for _ in 0..count {
                f.bytes("extended attribute")?;
                f.bytes("extended attribute")?;
            }
        }
        Ok(m)
    }
}

fn secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(u64::from(u32::MAX)) as u32)
}

/// A file system's statistics, as `statvfs(3)` gives them
/// ([`Sftp::fs_stats`](super::Sftp::fs_stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsStats {
    /// The block size.
    pub block_size: u64,
    /// The fragment size, the unit of the block counts.
    pub fragment_size: u64,
    /// Blocks in all.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Free blocks for unprivileged users.
    pub blocks_available: u64,
    /// Inodes in all.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// The longest file name.
    pub name_max: u64,
}

impl FsStats {
    /// Bytes free for unprivileged users.
    pub fn available_bytes(&self) -> u64 {
        self.blocks_available.saturating_mul(self.fragment_size)
    }

    pub(crate) fn decode(body: bytes::Bytes) -> Result<FsStats, Malformed> {
        let mut f = Fields(body);
        let mut v = [0u64; 11];
        for slot in &mut v {
            *slot = f.u64("statvfs")?;
        }
        Ok(FsStats {
            block_size: v[0],
            fragment_size: v[1],
            blocks: v[2],
            blocks_free: v[3],
            blocks_available: v[4],
            files: v[5],
            files_free: v[6],
            name_max: v[10],
        })
    }
}

/// One entry of a directory listing ([`Sftp::read_dir`](super::Sftp::read_dir)).
#[derive(Clone)]
pub struct DirEntry {
    pub(crate) name: String,
    pub(crate) long_name: String,
    pub(crate) metadata: Metadata,
}

impl DirEntry {
    /// The entry's name in its directory (not a path). Bytes that are not
    /// UTF-8 are replaced; the text is the server's: escape it before
    /// showing it on a terminal.
    pub fn file_name(&self) -> &str {
        &self.name
    }

    /// The `ls -l` line the server made for it (OpenSSH's), as sent.
    pub fn long_name(&self) -> &str {
        &self.long_name
    }

    /// Its attributes, as the listing gave them (a symbolic link's own).
    pub fn metadata(&self) -> Metadata {
        self.metadata
    }
}

impl fmt::Debug for DirEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirEntry")
            .field("name", &PeerText::new(&self.name))
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// How to open a remote file, as [`std::fs::OpenOptions`]: for
/// [`Sftp::open_with`](super::Sftp::open_with).
///
/// ```
/// let append = ssh_dial::OpenOptions::new().append(true).create(true);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    create: bool,
    create_new: bool,
    truncate: bool,
    mode: Option<u32>,
}

impl OpenOptions {
    /// Nothing set: set `read`, `write` or `append`.
    pub const fn new() -> Self {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            create: false,
            create_new: false,
            truncate: false,
            mode: None,
        }
    }

    /// Open for reading.
    pub const fn read(mut self, on: bool) -> Self {
        self.read = on;
        self
    }

    /// Open for writing.
    pub const fn write(mut self, on: bool) -> Self {
        self.write = on;
        self
    }

    /// Open for writing at the end (the server appends each write); implies
    /// writing, as `std::fs::OpenOptions::append` does.
    pub const fn append(mut self, on: bool) -> Self {
        self.append = on;
        self
    }

    /// Create the file if it does not exist.
    pub const fn create(mut self, on: bool) -> Self {
        self.create = on;
        self
    }

    /// Create the file, failing if it exists (`create` and `truncate` are
    /// then ignored, as in `std::fs::OpenOptions`).
    pub const fn create_new(mut self, on: bool) -> Self {
        self.create_new = on;
        self
    }

    /// Cut an existing file to length 0.
    pub const fn truncate(mut self, on: bool) -> Self {
        self.truncate = on;
        self
    }

    /// The permission bits of a file this creates (before the server's
    /// umask). Default: the server's (0o666 less its umask for OpenSSH).
    pub const fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    pub(crate) fn flags(&self) -> u32 {
        let mut flags = 0;
        let on = |flag: u32, on: bool| if on { flag } else { 0 };
        flags |= on(FXF_READ, self.read);
        flags |= on(FXF_WRITE, self.write || self.append);
        flags |= on(FXF_APPEND, self.append);
        if self.create_new {
            flags |= FXF_CREAT | FXF_EXCL;
        } else {
            flags |= on(FXF_CREAT, self.create) | on(FXF_TRUNC, self.truncate);
        }
        flags
    }

    pub(crate) fn attrs(&self) -> Metadata {
        match self.mode {
            Some(m) => Metadata::new().with_permissions(m),
            None => Metadata::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each setter sets its own flag and clears only its own, as
    /// `std::fs::OpenOptions` does.
    #[test]
    fn open_options_set_and_clear_their_own_flag() {
        let flags = |o: OpenOptions| o.flags();
        assert_eq!(flags(OpenOptions::new().read(true)), FXF_READ);
        assert_eq!(
            flags(OpenOptions::new().append(true)),
            FXF_WRITE | FXF_APPEND
        );
        assert_eq!(
            flags(OpenOptions::new().write(true).append(true).append(false)),
            FXF_WRITE
        );
        assert_eq!(
            flags(
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .create_new(false)
            ),
            FXF_WRITE | FXF_CREAT
        );
        assert_eq!(
            flags(
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .create_new(true)
            ),
            FXF_WRITE | FXF_CREAT | FXF_EXCL
        );
        assert_eq!(
            flags(OpenOptions::new().write(true).create(true).truncate(true)),
            FXF_WRITE | FXF_CREAT | FXF_TRUNC
        );
    }
}
