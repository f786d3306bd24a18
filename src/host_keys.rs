//! Host key policy: which server keys a dial trusts.
//!
//! Checked inside key exchange, in russh's `check_server_key` callback, so a
//! key that does not verify fails the dial before any credential is sent.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::Fingerprint;
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// Which server host keys to trust.
///
/// Cheap to clone. The default is [`HostKeys::known_hosts`] on
/// `~/.ssh/known_hosts`, read at each dial.
#[derive(Clone)]
pub struct HostKeys {
    policy: Arc<Policy>,
}

enum Policy {
    /// `None`: `~/.ssh/known_hosts`, located at check time.
    KnownHosts(Option<PathBuf>),
    Pinned(Vec<Pin>),
    InsecureAcceptAny,
}

enum Pin {
    Fingerprint(Fingerprint),
    Key(PublicKey),
}

impl Default for HostKeys {
    fn default() -> Self {
        HostKeys::new(Policy::KnownHosts(None))
    }
}

impl fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.policy {
            Policy::KnownHosts(None) => f.write_str("HostKeys::known_hosts(~/.ssh/known_hosts)"),
            Policy::KnownHosts(Some(p)) => write!(f, "HostKeys::known_hosts({})", p.display()),
            Policy::Pinned(pins) => write!(f, "HostKeys::pinned({} keys)", pins.len()),
            Policy::InsecureAcceptAny => f.write_str("HostKeys::insecure_accept_any()"),
        }
    }
}

/// A pinned host key that is neither a `SHA256:` fingerprint nor an OpenSSH
/// public key.
#[derive(Debug, thiserror::Error)]
#[error("invalid pinned host key {0:?}: expected \"SHA256:...\" or \"ssh-ed25519 AAAA...\"")]
pub struct InvalidHostKey(String);

impl HostKeys {
    fn new(policy: Policy) -> Self {
        HostKeys {
            policy: Arc::new(policy),
        }
    }

    /// Trusts the keys listed for the host in an OpenSSH `known_hosts` file.
    ///
    /// Understands what `ssh` and `ssh-keygen` write: plain and hashed
    /// (`|1|salt|hash`) host names, `[host]:port` for ports other than 22,
    /// comma-separated patterns with `*`, `?` and `!` negation, and
    /// `@revoked` lines (a revoked key fails even if another line lists it).
    /// `@cert-authority` lines are skipped. The host is matched as given to
    /// the dial (a name or an address literal), like OpenSSH with
    /// `CheckHostIP no`.
    ///
    /// An unknown host fails the dial, as with OpenSSH's
    /// `StrictHostKeyChecking yes`; a missing or empty file knows no hosts.
    /// The file is read at each dial.
    pub fn known_hosts(path: impl Into<PathBuf>) -> Self {
        HostKeys::new(Policy::KnownHosts(Some(path.into())))
    }

    /// Trusts exactly these keys, each a `SHA256:` fingerprint as printed by
    /// `ssh-keygen -lf` or a public key line such as `ssh-ed25519 AAAA... comment`.
    ///
    /// # Errors
    ///
    /// [`InvalidHostKey`] naming the first entry that is neither.
    pub fn pinned<I, S>(keys: I) -> Result<Self, InvalidHostKey>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let pins = keys
            .into_iter()
            .map(|s| {
                let s = s.as_ref().trim();
                if s.starts_with("SHA256:") {
                    s.parse().map(Pin::Fingerprint).ok()
                } else {
                    PublicKey::from_openssh(s).ok().map(Pin::Key)
                }
                .ok_or_else(|| InvalidHostKey(s.chars().take(80).collect()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HostKeys::new(Policy::Pinned(pins)))
    }

    /// Trusts exactly these public keys.
    pub fn pinned_keys(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        HostKeys::new(Policy::Pinned(keys.into_iter().map(Pin::Key).collect()))
    }

    /// Trusts any host key. Anyone who can intercept the connection can then
    /// read and change everything in it, and receives the credentials:
    /// use only against throwaway test servers.
    pub fn insecure_accept_any() -> Self {
        HostKeys::new(Policy::InsecureAcceptAny)
    }

    /// Checks `key`, offered by `host` (as dialed) on `port`.
    pub(crate) async fn check(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
    ) -> Result<(), HostKeyFailure> {
        let offered = Offered::new(host, port, key);
        match &*self.policy {
            Policy::InsecureAcceptAny => Ok(()),
            Policy::Pinned(pins) => {
                let fp = key.fingerprint(HashAlg::Sha256);
                let ok = pins.iter().any(|p| match p {
                    Pin::Fingerprint(f) => *f == fp,
                    Pin::Key(k) => k.key_data() == key.key_data(),
                });
                if ok {
                    Ok(())
                } else {
                    Err(HostKeyFailure::NotPinned { offered })
                }
            }
            Policy::KnownHosts(path) => {
                let path = match path {
                    Some(p) => p.clone(),
                    None => default_known_hosts().ok_or_else(|| HostKeyFailure::Unreadable {
                        path: PathBuf::from("~/.ssh/known_hosts"),
                        error: "no home directory".into(),
                    })?,
                };
                let text = match tokio::fs::read_to_string(&path).await {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(e) => {
                        return Err(HostKeyFailure::Unreadable {
                            path,
                            error: e.to_string(),
                        })
                    }
                };
                check_known_hosts(&text, &path, key, offered)
            }
        }
    }
}

fn default_known_hosts() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".ssh").join("known_hosts"))
}

/// The key a server offered, and where.
#[derive(Debug, Clone)]
pub(crate) struct Offered {
    /// `host` for port 22, else `[host]:port`: the known_hosts spelling.
    host_port: String,
    algorithm: String,
    fingerprint: String,
}

impl Offered {
    fn new(host: &str, port: u16, key: &PublicKey) -> Self {
        let host = host.to_ascii_lowercase();
        Offered {
            host_port: if port == 22 {
                host
            } else {
                format!("[{host}]:{port}")
            },
            algorithm: key.algorithm().to_string(),
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        }
    }
}

/// Why a host key was not trusted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostKeyFailure {
    #[error("host key for {} ({} {}) is not in {}{}", .offered.host_port, .offered.algorithm, .offered.fingerprint, .path.display(), .why)]
    Unknown {
        offered: Offered,
        path: PathBuf,
        why: &'static str,
    },
    #[error("host key for {} has changed: server offered {} {}, but {}:{} has a different {} key for this host", .offered.host_port, .offered.algorithm, .offered.fingerprint, .path.display(), .line, .offered.algorithm)]
    Changed {
        offered: Offered,
        path: PathBuf,
        line: usize,
    },
    #[error("host key for {} ({} {}) is marked @revoked in {}:{}", .offered.host_port, .offered.algorithm, .offered.fingerprint, .path.display(), .line)]
    Revoked {
        offered: Offered,
        path: PathBuf,
        line: usize,
    },
    #[error("host key for {} ({} {}) is not among the pinned keys", .offered.host_port, .offered.algorithm, .offered.fingerprint)]
    NotPinned { offered: Offered },
    #[error("cannot read known_hosts file {}: {}", .path.display(), .error)]
    Unreadable { path: PathBuf, error: String },
}

impl HostKeyFailure {
    pub(crate) fn is_mismatch(&self) -> bool {
        matches!(self, HostKeyFailure::Changed { .. })
    }
}

fn check_known_hosts(
    text: &str,
    path: &Path,
    offered_key: &PublicKey,
    offered: Offered,
) -> Result<(), HostKeyFailure> {
    let mut trusted = false;
    let mut changed_line = None;
    let mut lines_seen = false;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        lines_seen = true;
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let marker = if first.starts_with('@') {
            let m = first;
            first = fields.next().unwrap_or_default();
            Some(m)
        } else {
            None
        };
        let (Some(alg), Some(b64)) = (fields.next(), fields.next()) else {
            tracing::debug!(path = %path.display(), line = line_no, "skipping malformed known_hosts line");
            continue;
        };
        if !host_matches(&offered.host_port, first) {
            continue;
        }
        let key = match PublicKey::from_openssh(&format!("{alg} {b64}")) {
            Ok(k) => k,
            Err(_) => {
                tracing::debug!(path = %path.display(), line = line_no, "skipping known_hosts line with an unreadable key");
                continue;
            }
        };
        let same_key = key.key_data() == offered_key.key_data();
        match marker {
            Some("@revoked") if same_key => {
                return Err(HostKeyFailure::Revoked {
                    offered,
                    path: path.to_owned(),
                    line: line_no,
                })
            }
            Some(_) => continue,
            None if same_key => trusted = true,
            None if key.algorithm() == offered_key.algorithm() => {
                changed_line.get_or_insert(line_no);
            }
            None => {}
        }
    }
    if trusted {
        return Ok(());
    }
    if let Some(line) = changed_line {
        return Err(HostKeyFailure::Changed {
            offered,
            path: path.to_owned(),
            line,
        });
    }
    Err(HostKeyFailure::Unknown {
        offered,
        path: path.to_owned(),
        why: if lines_seen {
            ""
        } else {
            " (the file is missing or has no entries)"
        },
    })
}

/// OpenSSH's `match_hostname`: any matching negated pattern rejects; else
/// any matching positive pattern accepts. Hashed entries match by HMAC-SHA1.
fn host_matches(host_port: &str, patterns: &str) -> bool {
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
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(host_port.as_bytes())
        .verify_slice(&hash)
        .is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILg4zKcoTwbt5lqhVGjk64meBdTzYRuV14vdclMQCvs6";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHykAdtuNqZDk6gGBjSaUTuyUA1cSpiZoQ3ixvz/XoWH";

    fn check(text: &str, host: &str, port: u16, key: &str) -> Result<(), HostKeyFailure> {
        let key = PublicKey::from_openssh(key).unwrap();
        let offered = Offered::new(host, port, &key);
        check_known_hosts(text, Path::new("/kh"), &key, offered)
    }

    #[test]
    fn plain_and_bracketed_entries_match_their_port_only() {
        let text = format!("example.com {ED1}\n[127.0.0.1]:2222 {ED1}\n");
        assert!(check(&text, "example.com", 22, ED1).is_ok());
        assert!(check(&text, "EXAMPLE.com", 22, ED1).is_ok());
        assert!(check(&text, "127.0.0.1", 2222, ED1).is_ok());
        assert!(matches!(
            check(&text, "127.0.0.1", 2223, ED1),
            Err(HostKeyFailure::Unknown { .. })
        ));
        assert!(matches!(
            check(&text, "example.com", 2222, ED1),
            Err(HostKeyFailure::Unknown { .. })
        ));
    }

    #[test]
    fn a_different_key_of_the_same_type_is_a_mismatch_naming_the_line() {
        let text = format!("# comment\n\nexample.com {ED1}\n");
        let err = check(&text, "example.com", 22, ED2).unwrap_err();
        assert!(err.is_mismatch());
        let msg = err.to_string();
        assert!(msg.contains("/kh:3") && msg.contains("SHA256:"), "{msg}");
    }

    #[test]
    fn hashed_entries_match() {
        // `ssh-keygen -H` form of "example.com", salt chosen for the test.
        use data_encoding::BASE64;
        let salt = [7u8; 20];
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt).unwrap();
        let hash = mac.chain_update(b"example.com").finalize().into_bytes();
        let line = format!(
            "|1|{}|{} {ED1}\n",
            BASE64.encode(&salt),
            BASE64.encode(&hash)
        );
        assert!(check(&line, "example.com", 22, ED1).is_ok());
        assert!(check(&line, "example.org", 22, ED1).is_err());
    }

    #[test]
    fn wildcards_and_negation() {
        let text = format!("*.example.com,!bad.example.com {ED1}\n");
        assert!(check(&text, "a.example.com", 22, ED1).is_ok());
        assert!(check(&text, "bad.example.com", 22, ED1).is_err());
        assert!(wildcard_match(b"h?st*", b"host-7"));
        assert!(!wildcard_match(b"h?st", b"hst"));
    }

    #[test]
    fn revoked_wins_over_a_trusting_line() {
        let text = format!("example.com {ED1}\n@revoked * {ED1}\n");
        assert!(matches!(
            check(&text, "example.com", 22, ED1),
            Err(HostKeyFailure::Revoked { line: 2, .. })
        ));
    }

    #[test]
    fn empty_file_and_garbage_lines_know_nothing() {
        let err = check("", "example.com", 22, ED1).unwrap_err();
        assert!(err.to_string().contains("no entries"), "{err}");
        let err = check(
            "garbage\nexample.com ssh-ed25519 notbase64\n",
            "example.com",
            22,
            ED1,
        )
        .unwrap_err();
        assert!(matches!(err, HostKeyFailure::Unknown { .. }));
    }

    #[test]
    fn pins_parse_or_fail_clearly() {
        let fp = PublicKey::from_openssh(ED1)
            .unwrap()
            .fingerprint(HashAlg::Sha256)
            .to_string();
        assert!(HostKeys::pinned([fp.as_str(), ED2]).is_ok());
        let err = HostKeys::pinned(["SHA256:nope!"]).unwrap_err();
        assert!(err.to_string().contains("invalid pinned host key"));
    }
}
