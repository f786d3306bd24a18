//! Learning a host (`accept-new`): its line appended under an exclusive
//! lock, after reading the file again, so that concurrent learners (in this
//! process or others) neither interleave lines nor add a host twice.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use russh::keys::PublicKey;

use super::hashed::{hashed_name, SHA1_LEN};
use super::index::Indexed;
use super::{Found, Offer, Status};

/// The line `ssh` writes for a new host: `host_port` (hashed as
/// `ssh-keygen -H` does, if asked), the key type and the key.
pub(super) fn entry_line(host_port: &str, key: &PublicKey, hashed: bool) -> io::Result<String> {
    let key = key.to_openssh().map_err(io::Error::other)?;
    let host = if hashed {
        let mut salt = [0u8; SHA1_LEN];
        getrandom::fill(&mut salt).map_err(io::Error::other)?;
        hashed_name(&salt, host_port).ok_or_else(|| io::Error::other("hmac key"))?
    } else {
        host_port.to_owned()
    };
    Ok(format!("{host} {key}"))
}

/// How long [`learn`] waits for another writer's lock on the file.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes an exclusive lock, polling, so that a lock someone never lets go
/// of fails the learning instead of blocking a thread for ever, and so
/// does a dial that ended meanwhile (`abandoned`).
pub(super) fn lock_within(
    file: &std::fs::File,
    wait: std::time::Duration,
    abandoned: &dyn Fn() -> bool,
) -> io::Result<()> {
    let end = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if abandoned() => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the dial ended while waiting for the file's lock",
                ))
            }
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < end => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("another writer held the file's lock for {wait:?}"),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// What [`learn`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Learned {
    /// The line was appended.
    Added,
    /// Another writer had already added this key for this host.
    AlreadyKnown,
    /// Another writer had meanwhile recorded another key (`Changed`) or
    /// revoked this one; the line that says so.
    Refused { line: usize, revoked: bool },
}

/// Appends `host_port`'s `key` to the file at `path`, creating it (and its
/// directory, mode 0700) if needed. Holds an exclusive lock on the file
/// while it reads it again and appends, so concurrent learners, in this
/// process or others, neither interleave lines nor add a host twice.
/// Blocking: call it off the async runtime.
pub(crate) fn learn(
    path: &Path,
    host_port: &str,
    key: &PublicKey,
    hashed: bool,
    abandoned: &dyn Fn() -> bool,
) -> io::Result<Learned> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir)?;
        }
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    lock_within(&file, LOCK_WAIT, abandoned)?;
    if abandoned() {
        file.unlock()?;
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the dial ended while waiting for the file's lock",
        ));
    }
    let mut text = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut text)?;
    let mut found = Found::default();
    found.load_indexed(&Indexed::new(text.clone()), host_port, 0);
    let line_of = |i: usize| found.entries[i].line;
    let learned = match found.check(Offer::Plain(key)) {
        Status::Ok(_) => Learned::AlreadyKnown,
        Status::Changed(i) => Learned::Refused {
            line: line_of(i),
            revoked: false,
        },
        Status::Revoked(i) => Learned::Refused {
            line: line_of(i),
            revoked: true,
        },
        Status::New => {
            let mut line = String::new();
            if !text.is_empty() && !text.ends_with(b"\n") {
                line.push('\n');
            }
            line.push_str(&entry_line(host_port, key, hashed)?);
            line.push('\n');
            // One write: appends of a line are whole even without the lock.
            file.write_all(line.as_bytes())?;
            file.flush()?;
            Learned::Added
        }
    };
    file.unlock()?;
    Ok(learned)
}
