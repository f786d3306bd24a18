//! The OpenSSH `known_hosts` format: which lines speak for a host, what
//! they say about the key it offered, and appending a line safely when
//! several dials (or processes) learn hosts at once.
//!
//! russh has a reader (`russh::keys::known_hosts`), but it knows neither
//! markers (`@revoked`), wildcards nor negation, and gives up on the whole
//! file at the first key it cannot parse; OpenSSH skips such lines. So the
//! format is read here, following OpenSSH's `hostfile.c` and `match.c`
//! line by line: bytes, not text (a Latin-1 comment spoils nothing), only
//! space and tab separate fields, a line that does not parse is skipped,
//! and a host's status comes from every line that names it, whatever the
//! key type (`check_hostkeys_by_key_or_type`). Key parsing is ssh-key's.
//!
//! The read path: `line.rs` reads one line (with `hashed.rs` for hashed
//! names), `index.rs` indexes a file by the names it lists, `cache.rs`
//! keeps indexed files while they do not change, and `lookup.rs` finds the
//! lines that name a host and judges the key it offered. The write path:
//! `write.rs` appends a learned host under a lock.

pub(crate) mod cache;
mod hashed;
mod index;
mod line;
mod lookup;
mod write;

#[cfg(test)]
pub(crate) mod tests;

pub(crate) use index::Indexed;
pub(crate) use lookup::{certificate_problem, same_type};
pub(crate) use write::{learn, Learned};

use russh::keys::{Certificate, PublicKey};

/// The spelling a host has in `known_hosts`: `host` on port 22,
/// `[host]:port` on any other, lowercased (OpenSSH's `put_host_port`).
pub(crate) fn host_port(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// A line's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    None,
    CertAuthority,
    Revoked,
}

/// A line that names the host looked up, with its key parsed.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Which of the files read it came from (an index the caller keeps).
    pub(crate) file: usize,
    /// 1-based line number.
    pub(crate) line: usize,
    pub(crate) marker: Marker,
    pub(crate) key: PublicKey,
}

/// Every line of every file that names one host (OpenSSH's `struct hostkeys`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Found {
    pub(crate) entries: Vec<Entry>,
}

/// What the lines say about an offered key (OpenSSH's `HostStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// This entry lists the key (or, for a certificate, its authority).
    Ok(usize),
    /// No line lists a key for the host (for a certificate: no authority
    /// that signed it).
    New,
    /// The host has keys on file, of any type, and this is none of them;
    /// the index is the entry named as contradicting it.
    Changed(usize),
    /// An `@revoked` line for the host lists the key (or the authority that
    /// signed the certificate).
    Revoked(usize),
}

/// The key as offered: plain, or a certificate.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Offer<'a> {
    Plain(&'a PublicKey),
    Certificate(&'a Certificate),
}
