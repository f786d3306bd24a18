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

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};
use sha1::Sha1;

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

impl Found {
    /// Reads `text` (one file, `file` being its index) for the lines that
    /// name `lookup` (already in [`host_port`] spelling) and appends them.
    /// Returns whether the file has any line that is not blank or a comment.
    #[cfg(test)]
    fn load(&mut self, text: &[u8], lookup: &str, file: usize) -> bool {
        let indexed = Indexed::new(text.to_vec());
        self.load_indexed(&indexed, lookup, file)
    }

    /// As [`load`](Self::load), from a file indexed once: only the lines
    /// that can name `lookup` are looked at.
    pub(crate) fn load_indexed(&mut self, file_lines: &Indexed, lookup: &str, file: usize) -> bool {
        for index in file_lines.candidates(lookup) {
            let (number, line) = file_lines.line(index);
            let Some(Ok(parsed)) = Line::parse(line) else {
                continue;
            };
            if !parsed.names(lookup) {
                continue;
            }
            match parsed.key() {
                Some(key) => self.entries.push(Entry {
                    file,
                    line: number,
                    marker: parsed.marker,
                    key,
                }),
                None => tracing::debug!(
                    line = number,
                    "skipping known_hosts line with an unreadable key"
                ),
            }
        }
        file_lines.any
    }

    /// OpenSSH's `check_key_in_hostkeys`: plain keys are looked up among
    /// plain lines, certificates among `@cert-authority` lines, and either
    /// is revoked by an `@revoked` line for its key (or its authority).
    pub(crate) fn check(&self, offer: Offer<'_>) -> Status {
        let want = match offer {
            Offer::Plain(_) => Marker::None,
            Offer::Certificate(_) => Marker::CertAuthority,
        };
        let mut status = Status::New;
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.marker != want {
                continue;
            }
            match offer {
                Offer::Certificate(cert) => {
                    if entry.key.key_data() == cert.signature_key() {
                        status = Status::Ok(i);
                        break;
                    }
                }
                Offer::Plain(key) => {
                    if entry.key.key_data() == key.key_data() {
                        status = Status::Ok(i);
                        break;
                    }
                    status = Status::Changed(i);
                }
            }
        }
        let revoked = match offer {
            Offer::Plain(key) => self.revoked(key.key_data(), None),
            Offer::Certificate(cert) => self.revoked(cert.public_key(), Some(cert.signature_key())),
        };
        match revoked {
            Some(i) => Status::Revoked(i),
            None => status,
        }
    }

    fn revoked(
        &self,
        key: &russh::keys::ssh_key::public::KeyData,
        authority: Option<&russh::keys::ssh_key::public::KeyData>,
    ) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.marker == Marker::Revoked
                && (e.key.key_data() == key || Some(e.key.key_data()) == authority)
        })
    }

    /// OpenSSH's `lookup_key_in_hostkeys_by_type`: whether a plain line
    /// lists a key of this algorithm's type (for ECDSA, of its curve) for
    /// the host, and that key is not revoked.
    pub(crate) fn knows_type(&self, algorithm: &Algorithm) -> bool {
        self.entries
            .iter()
            .find(|e| e.marker == Marker::None && same_type(&e.key.algorithm(), algorithm))
            .is_some_and(|e| self.revoked(e.key.key_data(), None).is_none())
    }

    /// Whether an `@cert-authority` line names the host.
    pub(crate) fn has_authority(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.marker == Marker::CertAuthority)
    }
}

/// Whether two algorithms have the same key type: every RSA signature
/// algorithm uses an RSA key.
pub(crate) fn same_type(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}

/// Why a host certificate that a trusted authority signed is still not
/// good for `host` (as dialed, lowercased) at `now`, if it is not
/// (OpenSSH's `sshkey_cert_check_host`).
pub(crate) fn certificate_problem(
    cert: &Certificate,
    authority: &PublicKey,
    host: &str,
    now_unix: u64,
) -> Option<&'static str> {
    let ca = authority.fingerprint(HashAlg::Sha256);
    if cert.validate_at(now_unix, [&ca]).is_err() {
        Some("bad signature or outside its validity period")
    } else if cert.cert_type() != CertType::Host {
        Some("not a host certificate")
    } else if !cert.valid_principals().is_empty()
        && !cert.valid_principals().iter().any(|p| p == host)
    {
        Some("not valid for this host name")
    } else if !cert.critical_options().is_empty() {
        Some("has critical options")
    } else if cert.signature().algorithm() == (Algorithm::Rsa { hash: None }) {
        Some("is signed with ssh-rsa (SHA-1), which OpenSSH no longer accepts")
    } else {
        None
    }
}

/// One line that is not blank or a comment: `[@marker] hosts keytype
/// base64 [comment]`, as bytes.
struct Line<'a> {
    marker: Marker,
    hosts: &'a [u8],
    key_type: &'a [u8],
    base64: &'a [u8],
}

fn is_blank(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

/// Splits off the next field: up to a space or tab, then skips those.
fn field(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(is_blank).unwrap_or(s.len());
    let (f, rest) = s.split_at(end);
    let skip = rest.iter().take_while(|b| is_blank(b)).count();
    (f, &rest[skip..])
}

impl<'a> Line<'a> {
    /// `None` for blank and comment lines, `Some(Err)` for lines that are
    /// entries but do not parse.
    fn parse(line: &'a [u8]) -> Option<Result<Line<'a>, ()>> {
        let skip = line.iter().take_while(|b| is_blank(b)).count();
        let line = &line[skip..];
        if line.is_empty() || line[0] == b'#' {
            return None;
        }
        Some(Line::fields(line))
    }

    fn fields(mut line: &'a [u8]) -> Result<Line<'a>, ()> {
        let mut marker = Marker::None;
        // OpenSSH's check_markers: at most one, ended by the first space
        // (or, failing that, the first tab) on the line.
        while line.first() == Some(&b'@') {
            if marker != Marker::None {
                return Err(());
            }
            let end = line
                .iter()
                .position(|&b| b == b' ')
                .or_else(|| line.iter().position(|&b| b == b'\t'))
                .ok_or(())?;
            marker = match &line[..end] {
                b"@cert-authority" => Marker::CertAuthority,
                b"@revoked" => Marker::Revoked,
                _ => return Err(()),
            };
            let rest = &line[end..];
            line = &rest[rest.iter().take_while(|b| is_blank(b)).count()..];
        }
        let (hosts, rest) = field(line);
        if rest.is_empty() || rest[0] == b'#' {
            return Err(());
        }
        let (key_type, rest) = field(rest);
        let (base64, _comment) = field(rest);
        // A CRLF file leaves '\r' on the last field; OpenSSH's base64
        // decoder skips it.
        let base64 = base64.strip_suffix(b"\r").unwrap_or(base64);
        if hosts.is_empty() || key_type.is_empty() || base64.is_empty() {
            return Err(());
        }
        Ok(Line {
            marker,
            hosts,
            key_type,
            base64,
        })
    }

    /// OpenSSH's `match_maybe_hashed`: a hosts field starting with `|` is
    /// one hash, compared whole; otherwise a pattern list.
    fn names(&self, lookup: &str) -> bool {
        if self.hosts[0] == b'|' {
            hashed_matches(lookup, self.hosts)
        } else {
            pattern_list_matches(lookup.as_bytes(), self.hosts)
        }
    }

    fn key(&self) -> Option<PublicKey> {
        let key_type = std::str::from_utf8(self.key_type).ok()?;
        let base64 = std::str::from_utf8(self.base64).ok()?;
        PublicKey::from_openssh(&format!("{key_type} {base64}")).ok()
    }
}

/// OpenSSH's `match_hostname`: `match_pattern_list` with the patterns
/// lowercased; a matching negated pattern rejects, else any matching
/// pattern accepts. `host` is already lowercase.
pub(crate) fn pattern_list_matches(host: &[u8], patterns: &[u8]) -> bool {
    crate::pattern::list(host, patterns, true) == crate::pattern::Listed::Yes
}

/// The length of an HMAC-SHA1 key and digest.
const SHA1_LEN: usize = 20;

fn hmac_sha1(salt: &[u8], host_port: &str) -> Option<Hmac<Sha1>> {
    let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).ok()?;
    Some(mac.chain_update(host_port.as_bytes()))
}

/// `|1|base64(salt)|base64(hmac)`, as OpenSSH's `host_hash` writes it.
fn hashed_name(salt: &[u8], host_port: &str) -> Option<String> {
    use data_encoding::BASE64;
    let mac = hmac_sha1(salt, host_port)?.finalize().into_bytes();
    Some(format!(
        "|1|{}|{}",
        BASE64.encode(salt),
        BASE64.encode(&mac)
    ))
}

/// OpenSSH's hashed-name match: the salt (which must decode to 20 bytes)
/// is taken from the field, the name hashed with it, and the whole field
/// compared with the result. A field that is not exactly that, commas and
/// all, names no host.
fn hashed_matches(host_port: &str, field: &[u8]) -> bool {
    let Some(rest) = field.strip_prefix(b"|1|") else {
        return false;
    };
    let Some(end) = rest.iter().position(|&b| b == b'|') else {
        return false;
    };
    let Ok(salt) = data_encoding::BASE64.decode(&rest[..end]) else {
        return false;
    };
    if salt.len() != SHA1_LEN {
        return false;
    }
    hashed_name(&salt, host_port).is_some_and(|name| name.as_bytes() == field)
}

/// One known_hosts file, parsed once for every lookup: its entry lines, an
/// index from the plain names they list to those lines, the hashed names
/// decoded, and the lines with wildcards or negations, which every lookup
/// still matches in full. A lookup then costs the lines that can name the
/// host, one HMAC per hashed line, and one match per pattern line, instead
/// of parsing the whole file.
#[derive(Debug, Default)]
pub(crate) struct Indexed {
    text: Vec<u8>,
    /// Whether any line is more than blank or a comment.
    any: bool,
    /// The entry lines: 1-based number, start and end in `text`.
    lines: Vec<(usize, usize, usize)>,
    /// Lowercased plain name to the entry lines that list it.
    plain: std::collections::HashMap<Vec<u8>, Vec<u32>>,
    /// Entry lines with a `|1|salt|hash` name: the HMAC keyed with the
    /// salt (its key schedule done once), and the digest.
    hashed: Vec<(u32, Hmac<Sha1>, [u8; SHA1_LEN])>,
    /// Entry lines with wildcards or negations.
    patterns: Vec<u32>,
}

impl Indexed {
    pub(crate) fn new(text: Vec<u8>) -> Indexed {
        let mut indexed = Indexed::default();
        let mut start = 0;
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let end = start + raw.len();
            // C strings end at a NUL; so does OpenSSH's view of the line.
            let cut = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            let line = &raw[..cut];
            let line_start = start;
            start = end + 1;
            let Some(parsed) = Line::parse(line) else {
                continue;
            };
            indexed.any = true;
            let Ok(parsed) = parsed else {
                continue;
            };
            let id = indexed.lines.len() as u32;
            indexed.lines.push((i + 1, line_start, line_start + cut));
            let hosts = parsed.hosts;
            if hosts[0] == b'|' {
                if let Some((salt, digest)) = decode_hashed(hosts) {
                    if let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) {
                        indexed.hashed.push((id, mac, digest));
                    }
                }
            } else if hosts.iter().any(|b| matches!(b, b'*' | b'?' | b'!')) {
                indexed.patterns.push(id);
            } else {
                for name in hosts.split(|&b| b == b',') {
                    // Too long a sub-pattern fails the whole list in OpenSSH.
                    if name.len() >= 1023 {
                        indexed.patterns.push(id);
                        break;
                    }
                    let list = indexed.plain.entry(name.to_ascii_lowercase()).or_default();
                    if list.last() != Some(&id) {
                        list.push(id);
                    }
                }
            }
        }
        indexed.text = text;
        indexed
    }

    /// The entry lines that may name `lookup`, in file order.
    fn candidates(&self, lookup: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .plain
            .get(lookup.as_bytes())
            .cloned()
            .unwrap_or_default();
        ids.extend(self.patterns.iter().copied());
        for (id, keyed, digest) in &self.hashed {
            let mac = keyed
                .clone()
                .chain_update(lookup.as_bytes())
                .finalize()
                .into_bytes();
            if mac[..] == digest[..] {
                ids.push(*id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// An entry line's number and bytes.
    fn line(&self, id: u32) -> (usize, &[u8]) {
        let (number, start, end) = self.lines[id as usize];
        (number, &self.text[start..end])
    }
}

/// The salt and digest of a `|1|salt|hash` field, if the field is exactly
/// what OpenSSH would write for them (else it names no host).
fn decode_hashed(field: &[u8]) -> Option<([u8; SHA1_LEN], [u8; SHA1_LEN])> {
    use data_encoding::BASE64;
    let rest = field.strip_prefix(b"|1|")?;
    let end = rest.iter().position(|&b| b == b'|')?;
    let salt: [u8; SHA1_LEN] = BASE64.decode(&rest[..end]).ok()?.try_into().ok()?;
    let digest: [u8; SHA1_LEN] = BASE64.decode(&rest[end + 1..]).ok()?.try_into().ok()?;
    let canonical = format!("|1|{}|{}", BASE64.encode(&salt), BASE64.encode(&digest));
    (canonical.as_bytes() == field).then_some((salt, digest))
}

/// Files read and indexed once, kept while they do not change.
///
/// A file is looked at (`stat`) on every use and read again when its size,
/// times or inode differ, or when it changed so recently that a rewrite in
/// the same clock tick could hide (git's "racily clean" rule).
pub(crate) mod cache {
    use std::collections::HashMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{Duration, SystemTime};

    use super::Indexed;

    /// Files kept at most; past it the cache starts over.
    const MAX_FILES: usize = 256;
    /// A file modified this recently is read again on its next use.
    const RACY: Duration = Duration::from_secs(2);

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Stamp {
        len: u64,
        modified: Option<SystemTime>,
        ctime: (i64, i64),
        ino: u64,
        dev: u64,
    }

    struct Cached {
        stamp: Stamp,
        racy: bool,
        file: Arc<Indexed>,
    }

    fn files() -> &'static Mutex<HashMap<PathBuf, Cached>> {
        static FILES: OnceLock<Mutex<HashMap<PathBuf, Cached>>> = OnceLock::new();
        FILES.get_or_init(Mutex::default)
    }

    /// The file at `path`, indexed; `None` if it does not exist. Blocks on
    /// the file system: call it off the runtime's workers.
    pub(crate) fn load(path: &Path) -> io::Result<Option<Arc<Indexed>>> {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                forget(path);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let stamp = Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        };
        {
            let files = files().lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = files.get(path) {
                if c.stamp == stamp && !c.racy {
                    return Ok(Some(c.file.clone()));
                }
            }
        }
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let file = Arc::new(Indexed::new(text));
        let now = SystemTime::now();
        let racy = stamp
            .modified
            .is_none_or(|m| now.duration_since(m).map_or(true, |age| age < RACY));
        let mut files = files().lock().unwrap_or_else(|e| e.into_inner());
        if files.len() >= MAX_FILES {
            files.clear();
        }
        files.insert(
            path.to_owned(),
            Cached {
                stamp,
                racy,
                file: file.clone(),
            },
        );
        Ok(Some(file))
    }

    /// Drops what is kept for `path` (after writing it, or when it is gone).
    pub(crate) fn forget(path: &Path) {
        files()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
    }
}

/// The line `ssh` writes for a new host: `host_port` (hashed as
/// `ssh-keygen -H` does, if asked), the key type and the key.
pub(crate) fn entry_line(host_port: &str, key: &PublicKey, hashed: bool) -> io::Result<String> {
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
fn lock_within(
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two real Ed25519 public keys, for tests here and in `host_keys`.
    pub(crate) const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILg4zKcoTwbt5lqhVGjk64meBdTzYRuV14vdclMQCvs6";
    pub(crate) const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHykAdtuNqZDk6gGBjSaUTuyUA1cSpiZoQ3ixvz/XoWH";
    /// A real ECDSA P-256 public key.
    pub(crate) const EC1: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBM4n7DLU4VZEea8rPLmklR72E4a81cKB38SkS3h0PfhJIDcvAH43gIvFKI40UCc/oZIjKKeBKHD+XDPvZknJqW4=";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn found(text: &str, host: &str, port: u16) -> Found {
        let mut f = Found::default();
        f.load(text.as_bytes(), &host_port(host, port), 0);
        f
    }

    fn status(text: &str, host: &str, port: u16, k: &str) -> Status {
        found(text, host, port).check(Offer::Plain(&key(k)))
    }

    fn lines(text: &[u8], host: &str, port: u16) -> Vec<usize> {
        let mut f = Found::default();
        f.load(text, &host_port(host, port), 0);
        f.entries.iter().map(|e| e.line).collect()
    }

    #[test]
    fn plain_and_bracketed_entries_match_their_port_only() {
        let text = format!("example.com {ED1}\n[127.0.0.1]:2222 {ED1}\n");
        assert_eq!(status(&text, "example.com", 22, ED1), Status::Ok(0));
        assert_eq!(status(&text, "EXAMPLE.com", 22, ED1), Status::Ok(0));
        assert_eq!(status(&text, "127.0.0.1", 2222, ED1), Status::Ok(0));
        assert_eq!(status(&text, "127.0.0.1", 2223, ED1), Status::New);
        assert_eq!(status(&text, "example.com", 2222, ED1), Status::New);
    }

    #[test]
    fn any_other_key_on_file_is_a_change_whatever_its_type() {
        let text = format!("# comment\n\nexample.com {ED1}\n");
        assert_eq!(status(&text, "example.com", 22, ED2), Status::Changed(0));
        assert_eq!(status(&text, "example.com", 22, EC1), Status::Changed(0));
        let both = format!("example.com {ED1}\nexample.com {EC1}\n");
        assert_eq!(status(&both, "example.com", 22, EC1), Status::Ok(1));
    }

    #[test]
    fn known_types_follow_the_plain_unrevoked_lines() {
        let ec = key(EC1).algorithm();
        let ed = key(ED1).algorithm();
        let f = found(&format!("h {EC1}\n@cert-authority h {ED1}\n"), "h", 22);
        assert!(f.knows_type(&ec) && !f.knows_type(&ed) && f.has_authority());
        let f = found(&format!("h {EC1}\n@revoked * {EC1}\n"), "h", 22);
        assert!(!f.knows_type(&ec));
        assert!(!f.has_authority());
    }

    #[test]
    fn hashed_entries_match_whole_and_are_written_so() {
        let line = entry_line("example.com", &key(ED1), true).unwrap();
        assert!(line.starts_with("|1|"), "{line}");
        assert_eq!(status(&line, "example.com", 22, ED1), Status::Ok(0));
        assert_eq!(status(&line, "example.org", 22, ED1), Status::New);
        // Never split on commas, never matched in part.
        let (hashed, rest) = line.split_once(' ').unwrap();
        let with_comma = format!("{hashed},example.com {rest}\n");
        assert_eq!(status(&with_comma, "example.com", 22, ED1), Status::New);
        // A salt of another length makes the line unparseable.
        let salt16 = data_encoding::BASE64.encode(&[7u8; 16]);
        let short = format!("|1|{salt16}|AAAA {ED1}\n");
        assert_eq!(
            lines(short.as_bytes(), "example.com", 22),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn wildcards_and_negation() {
        let text = format!("*.example.com,!bad.example.com {ED1}\n");
        assert_eq!(status(&text, "a.example.com", 22, ED1), Status::Ok(0));
        assert_eq!(status(&text, "bad.example.com", 22, ED1), Status::New);
        assert!(pattern_list_matches(b"host-7", b"h?st*"));
        assert!(!pattern_list_matches(b"hst", b"h?st"));
        assert!(pattern_list_matches(b"[10.0.0.7]:2222", b"[10.0.0.*]:2222"));
        // A sub-pattern too long for OpenSSH's buffer fails the whole list.
        let long = format!("h,{}", "x".repeat(1100));
        assert!(!pattern_list_matches(b"h", long.as_bytes()));
    }

    #[test]
    fn revoked_wins_over_a_trusting_line() {
        let text = format!("example.com {ED1}\n@revoked * {ED1}\n");
        assert_eq!(status(&text, "example.com", 22, ED1), Status::Revoked(1));
    }

    #[test]
    fn lines_that_do_not_parse_are_skipped_and_the_rest_count() {
        let mut text = b"garbage\nexample.com ssh-ed25519 notbase64\n".to_vec();
        text.extend_from_slice(b"# caf\xe9 latin-1 comment\n");
        text.extend_from_slice(format!("example.com {ED1} café").as_bytes());
        text.extend_from_slice(b" \xe9\xff\r\n@bogus example.com ");
        text.extend_from_slice(ED2.as_bytes());
        text.extend_from_slice(b"\n\xff\xfe example.com\n");
        assert_eq!(lines(&text, "example.com", 22), vec![4]);
        let mut f = Found::default();
        assert!(f.load(&text, "example.com", 0));
        assert!(!Found::default().load(b"# only\n\n  \t\n", "h", 0));
    }

    /// A small deterministic generator (xorshift64*), so that a divergence
    /// can be replayed from its seed.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Rng(seed.max(1))
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
        pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    /// A random known_hosts line over `names`, `keys` and every kind of
    /// junk and syntax OpenSSH reads.
    fn random_line(rng: &mut Rng, names: &[&str], keys: &[&str]) -> Vec<u8> {
        let name = *rng.pick(names);
        let pattern = |rng: &mut Rng| -> String {
            let n = *rng.pick(names);
            match rng.below(12) {
                0 => n.to_ascii_uppercase(),
                1 => format!("!{n}"),
                2 => n.replacen('o', "?", 1),
                3 => format!("*{}", &n[n.len().min(3)..]),
                4 => "*".into(),
                5 => format!("{}*", &n[..n.len().min(4)]),
                6 => String::new(),
                _ => n.to_owned(),
            }
        };
        let hosts = match rng.below(10) {
            0 => entry_line(name, &key(ED1), true)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_owned(),
            1 => {
                let hashed = entry_line(name, &key(ED1), true).unwrap();
                format!("{},{}", hashed.split(' ').next().unwrap(), pattern(rng))
            }
            2 => format!(
                "|1|{}|{}",
                data_encoding::BASE64.encode(&[9u8; 16]),
                data_encoding::BASE64.encode(&[1u8; 20])
            ),
            _ => (0..=rng.below(3))
                .map(|_| pattern(rng))
                .collect::<Vec<_>>()
                .join(","),
        };
        let marker = *rng.pick(&["", "", "", "", "@revoked ", "@cert-authority ", "@bogus "]);
        let key = match rng.below(10) {
            0 => "ssh-ed25519 AAAAnotakey".to_owned(),
            1 => "ssh-ed25519".to_owned(),
            2 => "ssh-unknown AAAAC3NzaC1lZDI1NTE5AAAAILg4".to_owned(),
            _ => (*rng.pick(keys)).to_owned(),
        };
        let sep = *rng.pick(&[" ", " ", "\t", "  "]);
        let mut line =
            format!("{}{marker}{hosts}{sep}{key}", rng.pick(&["", "", " "])).into_bytes();
        match rng.below(8) {
            0 => line.extend_from_slice(b" caf\xe9 comment"),
            1 => line.extend_from_slice(b"\r"),
            2 => line = b"# a comment \xff".to_vec(),
            3 => line = b"\xfe\xff junk".to_vec(),
            _ => {}
        }
        line
    }

    /// Whether an OpenSSH program is here; without it the test says so and
    /// passes, unless `CI` is set, where it must be.
    pub(crate) fn have_program(name: &str) -> bool {
        let found = std::process::Command::new(name)
            .arg("-?")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "{name} is required in CI (apt-get install -y openssh-client)"
            );
            // Past the test harness's capture, so that it shows on a passing run.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {name} not found (apt-get install -y openssh-client)"
            );
        }
        found
    }

    /// The lines `ssh-keygen -l -F lookup -f path` finds, with their markers.
    fn ssh_keygen_finds(path: &Path, lookup: &str) -> Vec<(usize, Marker)> {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-l", "-F", lookup, "-f"])
            .arg(path)
            .output()
            .expect("ssh-keygen runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("# Host ")?;
                let (_, found) = rest.rsplit_once(" found: line ")?;
                let mut words = found.split_whitespace();
                let line = words.next()?.parse().ok()?;
                let marker = match words.next() {
                    Some("REVOKED") => Marker::Revoked,
                    Some("CA") => Marker::CertAuthority,
                    _ => Marker::None,
                };
                Some((line, marker))
            })
            .collect()
    }

    /// Differential: which lines name a host, for a few hundred generated
    /// files, against OpenSSH's own reader (`ssh-keygen -F`).
    #[test]
    fn the_lines_that_name_a_host_are_those_ssh_keygen_finds() {
        if !have_program("ssh-keygen") {
            return;
        }
        let seed = std::env::var("SSH_DIAL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_0008);
        let mut rng = Rng::new(seed);
        let names = [
            "foo.example",
            "[foo.example]:2222",
            "10.0.0.1",
            "[10.0.0.1]:2222",
            "bar.example",
        ];
        let keys = [ED1, ED2, EC1];
        let dir = tempfile::tempdir().unwrap();
        let mut divergences = Vec::new();
        let files = 300;
        for n in 0..files {
            let mut text = Vec::new();
            for _ in 0..rng.below(8) + 1 {
                text.extend_from_slice(&random_line(&mut rng, &names, &keys));
                text.push(b'\n');
            }
            let path = dir.path().join(format!("kh{n}"));
            std::fs::write(&path, &text).unwrap();
            for lookup in names {
                let theirs = ssh_keygen_finds(&path, lookup);
                let mut found = Found::default();
                found.load(&text, lookup, 0);
                let ours: Vec<(usize, Marker)> =
                    found.entries.iter().map(|e| (e.line, e.marker)).collect();
                if ours != theirs {
                    divergences.push(format!(
                        "file {n}, {lookup}: ours {ours:?}, ssh-keygen {theirs:?}\n{}",
                        String::from_utf8_lossy(&text)
                    ));
                }
            }
        }
        assert!(
            divergences.is_empty(),
            "{} divergences (seed {seed}):\n{}",
            divergences.len(),
            divergences.join("\n")
        );
    }

    /// The cache never serves a file's old contents: not after a rewrite
    /// in the same second (racily clean), nor after one that keeps the
    /// size and puts the modification time back (the change time differs).
    #[test]
    fn the_cache_sees_every_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let names = |p: &std::path::Path| {
            let file = cache::load(p).unwrap().unwrap();
            let mut found = Found::default();
            found.load_indexed(&file, "a.example", 0);
            found.load_indexed(&file, "b.example", 0);
            found.entries.len()
        };
        std::fs::write(&path, format!("a.example {ED1}\n")).unwrap();
        assert_eq!(names(&path), 1);
        std::fs::write(&path, format!("c.example {ED1}\n")).unwrap();
        assert_eq!(names(&path), 0, "a rewrite within the racy window");

        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::write(&path, format!("a.example {ED1}\n")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(names(&path), 1);
        assert_eq!(names(&path), 1, "served from the cache");
        std::fs::write(&path, format!("b.example {ED1}\n")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(names(&path), 1);
        let file = cache::load(&path).unwrap().unwrap();
        let mut found = Found::default();
        found.load_indexed(&file, "b.example", 0);
        assert_eq!(
            found.entries.len(),
            1,
            "the same size and mtime, but rewritten"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(cache::load(&path).unwrap().is_none());
    }

    #[test]
    fn a_lock_never_released_fails_learning_in_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let holder = std::fs::File::create(&path).unwrap();
        holder.lock().unwrap();
        let other = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        let start = std::time::Instant::now();
        let err =
            lock_within(&other, std::time::Duration::from_millis(100), &|| false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // A dial that ended stops waiting at once.
        let start = std::time::Instant::now();
        let err = lock_within(&other, std::time::Duration::from_secs(5), &|| true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() < std::time::Duration::from_millis(100));
        holder.unlock().unwrap();
        lock_within(&other, std::time::Duration::from_millis(100), &|| false).unwrap();
    }

    #[test]
    fn learning_appends_once_and_refuses_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("known_hosts");
        assert_eq!(
            learn(&path, "[h]:2", &key(ED1), false, &|| false).unwrap(),
            Learned::Added
        );
        assert_eq!(
            learn(&path, "[h]:2", &key(ED1), false, &|| false).unwrap(),
            Learned::AlreadyKnown
        );
        for other in [ED2, EC1] {
            assert_eq!(
                learn(&path, "[h]:2", &key(other), false, &|| false).unwrap(),
                Learned::Refused {
                    line: 1,
                    revoked: false
                }
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("[h]:2 {ED1}\n"));
    }
}
