//! The OpenSSH `known_hosts` format: matching a host against the file's
//! lines, and appending a line safely when several dials (or processes)
//! learn hosts at once.
//!
//! russh has a reader (`russh::keys::known_hosts`), but it knows neither
//! markers (`@revoked`), wildcards nor negation, and gives up on the whole
//! file at the first key it cannot parse; OpenSSH skips such lines. So the
//! format is read here; key parsing is ssh-key's.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Certificate, HashAlg, PublicKey};
use sha1::Sha1;

/// The spelling a host has in `known_hosts`: `host` on port 22,
/// `[host]:port` on any other, lowercased.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// What one file says about a host and the key it offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A plain line lists this key for the host.
    Trusted,
    /// An `@revoked` line lists this key (for this host, or a pattern
    /// matching it); this wins over any line that trusts it.
    Revoked { line: usize },
    /// The host is listed with another key of the same type, first on `line`.
    Changed { line: usize },
    /// Nothing for this host and key type. `entries` is false if the file
    /// has no entries at all.
    Unknown { entries: bool },
}

/// Reads `text` for `host_port` and the offered `key`.
pub(crate) fn check(text: &str, host_port: &str, key: &PublicKey) -> Verdict {
    let mut trusted = false;
    let mut changed = None;
    let mut entries = false;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let Some(entry) = Entry::parse(line) else {
            continue;
        };
        entries = true;
        if !host_matches(host_port, entry.patterns) {
            continue;
        }
        let Ok(listed) = PublicKey::from_openssh(&format!("{} {}", entry.algorithm, entry.base64))
        else {
            tracing::debug!(
                line = line_no,
                "skipping known_hosts line with an unreadable key"
            );
            continue;
        };
        let same = listed.key_data() == key.key_data();
        match entry.marker {
            Some("@revoked") if same => return Verdict::Revoked { line: line_no },
            Some(_) => {}
            None if same => trusted = true,
            None if listed.algorithm() == key.algorithm() => {
                changed.get_or_insert(line_no);
            }
            None => {}
        }
    }
    match (trusted, changed) {
        (true, _) => Verdict::Trusted,
        (false, Some(line)) => Verdict::Changed { line },
        (false, None) => Verdict::Unknown { entries },
    }
}

/// What one file says about a host certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertVerdict {
    /// An `@cert-authority` line for the host lists the CA that signed it,
    /// and the certificate is valid for this host now.
    Trusted,
    /// The certified key or its CA is `@revoked`.
    Revoked { line: usize },
    /// A trusted CA signed it, but it is not valid for this host now.
    Invalid { line: usize, why: &'static str },
    /// No `@cert-authority` line for this host lists its CA.
    NoAuthority,
}

/// Checks a host certificate presented by `host` (as dialed; the principal
/// it must name) against the `@cert-authority` and `@revoked` lines.
pub(crate) fn check_certificate(
    text: &str,
    host_port: &str,
    host: &str,
    cert: &Certificate,
    now_unix: u64,
) -> CertVerdict {
    let mut verdict = CertVerdict::NoAuthority;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let Some(entry) = Entry::parse(line) else {
            continue;
        };
        if entry.marker.is_none() || !host_matches(host_port, entry.patterns) {
            continue;
        }
        let Ok(listed) = PublicKey::from_openssh(&format!("{} {}", entry.algorithm, entry.base64))
        else {
            continue;
        };
        match entry.marker {
            Some("@revoked")
                if listed.key_data() == cert.public_key()
                    || listed.key_data() == cert.signature_key() =>
            {
                return CertVerdict::Revoked { line: line_no };
            }
            Some("@cert-authority") if listed.key_data() == cert.signature_key() => {
                let ca = listed.fingerprint(HashAlg::Sha256);
                let why = if cert.validate_at(now_unix, [&ca]).is_err() {
                    Some("bad signature or outside its validity period")
                } else if cert.cert_type() != CertType::Host {
                    Some("not a host certificate")
                } else if !cert.valid_principals().is_empty()
                    && !cert.valid_principals().iter().any(|p| p == host)
                {
                    Some("not valid for this host name")
                } else if !cert.critical_options().is_empty() {
                    Some("has critical options")
                } else {
                    None
                };
                match why {
                    None => verdict = CertVerdict::Trusted,
                    Some(why) if verdict != CertVerdict::Trusted => {
                        verdict = CertVerdict::Invalid { line: line_no, why }
                    }
                    Some(_) => {}
                }
            }
            _ => {}
        }
    }
    verdict
}

/// One non-comment line: `[@marker] patterns algorithm base64 [comment]`.
struct Entry<'a> {
    marker: Option<&'a str>,
    patterns: &'a str,
    algorithm: &'a str,
    base64: &'a str,
}

impl<'a> Entry<'a> {
    fn parse(line: &'a str) -> Option<Entry<'a>> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next()?;
        let marker = if first.starts_with('@') {
            let m = first;
            first = fields.next()?;
            Some(m)
        } else {
            None
        };
        Some(Entry {
            marker,
            patterns: first,
            algorithm: fields.next()?,
            base64: fields.next()?,
        })
    }
}

/// OpenSSH's `match_hostname`: a matching negated pattern rejects; else any
/// matching pattern accepts. Hashed entries (`|1|salt|hash`) match by HMAC-SHA1.
pub(crate) fn host_matches(host_port: &str, patterns: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            matched |= hashed_matches(host_port, hashed);
            continue;
        }
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if wildcard_match(
            pattern.to_ascii_lowercase().as_bytes(),
            host_port.as_bytes(),
        ) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

fn hmac_sha1(salt: &[u8], host_port: &str) -> Option<Hmac<Sha1>> {
    let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).ok()?;
    Some(mac.chain_update(host_port.as_bytes()))
}

fn hashed_matches(host_port: &str, salt_and_hash: &str) -> bool {
    use data_encoding::BASE64;
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    hmac_sha1(&salt, host_port).is_some_and(|mac| mac.verify_slice(&hash).is_ok())
}

/// `*` matches any run, `?` any one byte.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The line `ssh` writes for a new host: `host_port` (hashed as
/// `ssh-keygen -H` does, if asked), the key type and the key.
pub(crate) fn entry_line(host_port: &str, key: &PublicKey, hashed: bool) -> io::Result<String> {
    let key = key.to_openssh().map_err(io::Error::other)?;
    let host = if hashed {
        use data_encoding::BASE64;
        let mut salt = [0u8; 20];
        getrandom::fill(&mut salt).map_err(io::Error::other)?;
        let mac = hmac_sha1(&salt, host_port).ok_or_else(|| io::Error::other("hmac key"))?;
        format!(
            "|1|{}|{}",
            BASE64.encode(&salt),
            BASE64.encode(&mac.finalize().into_bytes())
        )
    } else {
        host_port.to_owned()
    };
    Ok(format!("{host} {key}"))
}

/// How long [`learn`] waits for another writer's lock on the file.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes an exclusive lock, polling, so that a lock someone never lets go
/// of fails the learning instead of blocking a thread for ever.
fn lock_within(file: &std::fs::File, wait: std::time::Duration) -> io::Result<()> {
    let end = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
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
    /// Another writer had meanwhile recorded another key (or revoked this
    /// one); the file's verdict.
    Refused(Verdict),
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
    lock_within(&file, LOCK_WAIT)?;
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    let learned = match check(&text, host_port, key) {
        Verdict::Trusted => Learned::AlreadyKnown,
        verdict @ (Verdict::Revoked { .. } | Verdict::Changed { .. }) => Learned::Refused(verdict),
        Verdict::Unknown { .. } => {
            let mut line = String::new();
            if !text.is_empty() && !text.ends_with('\n') {
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

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn verdict(text: &str, host: &str, port: u16, k: &str) -> Verdict {
        check(text, &host_port(host, port), &key(k))
    }

    #[test]
    fn plain_and_bracketed_entries_match_their_port_only() {
        let text = format!("example.com {ED1}\n[127.0.0.1]:2222 {ED1}\n");
        assert_eq!(verdict(&text, "example.com", 22, ED1), Verdict::Trusted);
        assert_eq!(verdict(&text, "EXAMPLE.com", 22, ED1), Verdict::Trusted);
        assert_eq!(verdict(&text, "127.0.0.1", 2222, ED1), Verdict::Trusted);
        assert!(matches!(
            verdict(&text, "127.0.0.1", 2223, ED1),
            Verdict::Unknown { entries: true }
        ));
        assert!(matches!(
            verdict(&text, "example.com", 2222, ED1),
            Verdict::Unknown { .. }
        ));
    }

    #[test]
    fn a_different_key_of_the_same_type_is_a_change_on_its_line() {
        let text = format!("# comment\n\nexample.com {ED1}\n");
        assert_eq!(
            verdict(&text, "example.com", 22, ED2),
            Verdict::Changed { line: 3 }
        );
    }

    #[test]
    fn hashed_entries_match_and_are_written_so() {
        let line = entry_line("example.com", &key(ED1), true).unwrap();
        assert!(line.starts_with("|1|"), "{line}");
        assert_eq!(verdict(&line, "example.com", 22, ED1), Verdict::Trusted);
        assert!(matches!(
            verdict(&line, "example.org", 22, ED1),
            Verdict::Unknown { .. }
        ));
    }

    #[test]
    fn wildcards_and_negation() {
        let text = format!("*.example.com,!bad.example.com {ED1}\n");
        assert_eq!(verdict(&text, "a.example.com", 22, ED1), Verdict::Trusted);
        assert!(matches!(
            verdict(&text, "bad.example.com", 22, ED1),
            Verdict::Unknown { .. }
        ));
        assert!(wildcard_match(b"h?st*", b"host-7"));
        assert!(!wildcard_match(b"h?st", b"hst"));
        assert!(wildcard_match(b"[10.0.0.*]:2222", b"[10.0.0.7]:2222"));
    }

    #[test]
    fn revoked_wins_over_a_trusting_line() {
        let text = format!("example.com {ED1}\n@revoked * {ED1}\n");
        assert_eq!(
            verdict(&text, "example.com", 22, ED1),
            Verdict::Revoked { line: 2 }
        );
    }

    #[test]
    fn empty_files_and_garbage_lines_know_nothing() {
        assert_eq!(
            verdict("", "example.com", 22, ED1),
            Verdict::Unknown { entries: false }
        );
        let text = "garbage\nexample.com ssh-ed25519 notbase64\n";
        assert!(matches!(
            verdict(text, "example.com", 22, ED1),
            Verdict::Unknown { .. }
        ));
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
        let err = lock_within(&other, std::time::Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        holder.unlock().unwrap();
        lock_within(&other, std::time::Duration::from_millis(100)).unwrap();
    }

    #[test]
    fn learning_appends_once_and_refuses_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("known_hosts");
        assert_eq!(
            learn(&path, "[h]:2", &key(ED1), false).unwrap(),
            Learned::Added
        );
        assert_eq!(
            learn(&path, "[h]:2", &key(ED1), false).unwrap(),
            Learned::AlreadyKnown
        );
        assert_eq!(
            learn(&path, "[h]:2", &key(ED2), false).unwrap(),
            Learned::Refused(Verdict::Changed { line: 1 })
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("[h]:2 {ED1}\n"));
    }
}
