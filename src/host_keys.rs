//! Host key policy: which server keys a dial trusts.
//!
//! Checked inside key exchange, in russh's `check_server_key` callback, so a
//! key that does not verify fails the dial before any credential is sent.
//! The `known_hosts` format itself is in `known_hosts.rs`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::ssh_key::Fingerprint;
use russh::keys::{Certificate, HashAlg, PublicKey};

use crate::known_hosts::{self, CertVerdict, Learned, Verdict};

/// What a server presented in key exchange.
#[derive(Debug)]
pub(crate) enum ServerKey {
    Plain(PublicKey),
    /// A host certificate, offered only when the dialer asks for them
    /// ([`DialerBuilder::host_certificates`](crate::DialerBuilder::host_certificates)).
    Certificate(Box<Certificate>),
}

impl ServerKey {
    /// The key that signed the exchange: the plain key, or the certified one.
    fn key(&self) -> PublicKey {
        match self {
            ServerKey::Plain(k) => k.clone(),
            ServerKey::Certificate(c) => PublicKey::from(c.public_key().clone()),
        }
    }
}

/// Which server host keys to trust.
///
/// Cheap to clone. The default is OpenSSH's: `~/.ssh/known_hosts` and
/// `/etc/ssh/ssh_known_hosts`, read at each dial, unknown hosts refused.
///
/// # Examples
///
/// ```
/// use ssh_dial::HostKeys;
///
/// // Like `ssh -o StrictHostKeyChecking=accept-new -o HashKnownHosts=yes`.
/// let tofu = HostKeys::accept_new("/var/lib/fleet/known_hosts").hash_new_entries(true);
/// // Exactly one key, by fingerprint.
/// let pinned = HostKeys::pinned(["SHA256:aM9HJ3Qe9b1cLRd4tTkVjS1M4Zr7oKPuN6h3sS2mXyE"]);
/// # let _ = (tofu, pinned);
/// ```
#[derive(Clone)]
pub struct HostKeys {
    policy: Arc<Policy>,
}

#[derive(Clone)]
enum Policy {
    KnownHosts {
        /// `None`: OpenSSH's default files, located at check time.
        files: Option<Vec<PathBuf>>,
        /// Where unknown hosts are learned (accept-new), if anywhere.
        learn: Option<PathBuf>,
        hash: bool,
    },
    Pinned(Vec<Pin>),
    InsecureAcceptAny,
}

#[derive(Clone)]
enum Pin {
    Fingerprint(Fingerprint),
    Key(PublicKey),
}

/// The global file OpenSSH reads by default.
const GLOBAL_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

impl Default for HostKeys {
    fn default() -> Self {
        HostKeys::new(Policy::KnownHosts {
            files: None,
            learn: None,
            hash: false,
        })
    }
}

impl fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.policy {
            Policy::KnownHosts { files, learn, hash } => f
                .debug_struct("HostKeys::KnownHosts")
                .field("files", files)
                .field("accept_new", learn)
                .field("hash_new_entries", hash)
                .finish(),
            Policy::Pinned(pins) => write!(f, "HostKeys::Pinned({} keys)", pins.len()),
            Policy::InsecureAcceptAny => f.write_str("HostKeys::InsecureAcceptAny"),
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

    /// Trusts the keys listed for the host in an OpenSSH `known_hosts` file
    /// (OpenSSH's `StrictHostKeyChecking yes`).
    ///
    /// Understands what `ssh`, `ssh-keyscan` and `ssh-keygen` write: plain
    /// and hashed (`|1|salt|hash`) host names, `[host]:port` for ports other
    /// than 22, comma-separated patterns with `*`, `?` and `!` negation,
    /// several key types per host, `@revoked` lines (a revoked key fails
    /// even if another line lists it), and `@cert-authority` lines, which
    /// take effect when the dialer asks servers for host certificates
    /// ([`DialerBuilder::host_certificates`](crate::DialerBuilder::host_certificates)).
    /// The host is matched as given to
    /// the dial (a name or an address literal), like OpenSSH with
    /// `CheckHostIP no`. A missing or empty file knows no hosts. The file is
    /// read at each dial.
    pub fn known_hosts(path: impl Into<PathBuf>) -> Self {
        HostKeys::known_hosts_files([path.into()])
    }

    /// Like [`known_hosts`](Self::known_hosts), over several files at once,
    /// like OpenSSH's `UserKnownHostsFile` plus `GlobalKnownHostsFile`: a key
    /// listed in any of them is trusted, unless one of them revokes it.
    pub fn known_hosts_files(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        HostKeys::new(Policy::KnownHosts {
            files: Some(paths.into_iter().map(Into::into).collect()),
            learn: None,
            hash: false,
        })
    }

    /// Trust on first use, like OpenSSH's `StrictHostKeyChecking
    /// accept-new`: a host that `path` does not know is added to it and the
    /// dial goes on; a known host presenting a different key of the same
    /// type is refused. Appends take an exclusive lock on the file, so
    /// concurrent dials, from this process or others, each add their line
    /// whole and once.
    pub fn accept_new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        HostKeys::new(Policy::KnownHosts {
            files: Some(vec![path.clone()]),
            learn: Some(path),
            hash: false,
        })
    }

    /// Whether lines added by [`accept_new`](Self::accept_new) hash the host
    /// name, like OpenSSH's `HashKnownHosts yes`. Default is `false`. Has no
    /// effect on other policies.
    pub fn hash_new_entries(self, hash: bool) -> Self {
        let mut policy = (*self.policy).clone();
        if let Policy::KnownHosts { hash: h, .. } = &mut policy {
            *h = hash;
        }
        HostKeys::new(policy)
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
        server: &ServerKey,
    ) -> Result<(), HostKeyFailure> {
        let key = &server.key();
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
            Policy::KnownHosts { files, learn, hash } => {
                let files = match files {
                    Some(f) => f.clone(),
                    None => default_files(),
                };
                let cert = match server {
                    ServerKey::Certificate(c) => Some((host, &**c)),
                    ServerKey::Plain(_) => None,
                };
                check_files(&files, key, cert, offered, learn.as_deref(), *hash).await
            }
        }
    }
}

fn default_files() -> Vec<PathBuf> {
    let mut files = Vec::with_capacity(2);
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        files.push(Path::new(&home).join(".ssh").join("known_hosts"));
    }
    files.push(PathBuf::from(GLOBAL_KNOWN_HOSTS));
    files
}

/// Checks the files. A certificate is trusted through an `@cert-authority`
/// line; failing that, like OpenSSH, its certified key is judged as a plain
/// key, and only if that fails too does an invalid certificate say why.
async fn check_files(
    files: &[PathBuf],
    key: &PublicKey,
    cert: Option<(&str, &Certificate)>,
    offered: Offered,
    learn: Option<&Path>,
    hash: bool,
) -> Result<(), HostKeyFailure> {
    let mut trusted = false;
    let mut changed = None;
    let mut entries = false;
    let mut cert_invalid = None;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for path in files {
        let text = match tokio::fs::read_to_string(path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(HostKeyFailure::Unreadable {
                    path: path.clone(),
                    error: e.to_string(),
                })
            }
        };
        if let Some((host, cert)) = cert {
            match known_hosts::check_certificate(&text, &offered.host_port, host, cert, now) {
                CertVerdict::Revoked { line } => {
                    return Err(HostKeyFailure::Revoked {
                        offered,
                        path: path.clone(),
                        line,
                    })
                }
                CertVerdict::Trusted => trusted = true,
                CertVerdict::Invalid { line, why } => {
                    cert_invalid.get_or_insert((path.clone(), line, why));
                }
                CertVerdict::NoAuthority => {}
            }
        }
        match known_hosts::check(&text, &offered.host_port, key) {
            Verdict::Revoked { line } => {
                return Err(HostKeyFailure::Revoked {
                    offered,
                    path: path.clone(),
                    line,
                })
            }
            Verdict::Trusted => trusted = true,
            Verdict::Changed { line } => {
                changed.get_or_insert((path.clone(), line));
            }
            Verdict::Unknown { entries: e } => entries |= e,
        }
    }
    if trusted {
        return Ok(());
    }
    if let Some((path, line, why)) = cert_invalid {
        return Err(HostKeyFailure::BadCertificate {
            offered,
            path,
            line,
            why,
        });
    }
    if let Some((path, line)) = changed {
        return Err(HostKeyFailure::Changed {
            offered,
            path,
            line,
        });
    }
    let Some(path) = learn else {
        return Err(HostKeyFailure::Unknown {
            offered,
            files: files.to_vec(),
            why: if entries { "" } else { " (no entries)" },
        });
    };
    let (path, host_port, key_owned) = (path.to_owned(), offered.host_port.clone(), key.clone());
    let learned = tokio::task::spawn_blocking(move || {
        known_hosts::learn(&path, &host_port, &key_owned, hash).map(|l| (l, path))
    })
    .await;
    match learned {
        Ok(Ok((Learned::Added, path))) => {
            tracing::info!(host = %offered.host_port, key = %offered.fingerprint, file = %path.display(), "permanently added host key");
            Ok(())
        }
        Ok(Ok((Learned::AlreadyKnown, _))) => Ok(()),
        Ok(Ok((Learned::Refused(Verdict::Revoked { line }), path))) => {
            Err(HostKeyFailure::Revoked {
                offered,
                path,
                line,
            })
        }
        Ok(Ok((Learned::Refused(verdict), path))) => Err(HostKeyFailure::Changed {
            offered,
            path,
            line: match verdict {
                Verdict::Changed { line } => line,
                _ => 0,
            },
        }),
        Ok(Err(e)) => Err(HostKeyFailure::Unreadable {
            path: learn.map(Path::to_owned).unwrap_or_default(),
            error: format!("cannot add the host: {e}"),
        }),
        Err(join) => Err(HostKeyFailure::Unreadable {
            path: learn.map(Path::to_owned).unwrap_or_default(),
            error: join.to_string(),
        }),
    }
}

/// The key a server offered, and where.
#[derive(Debug, Clone)]
pub(crate) struct Offered {
    /// The known_hosts spelling of the host.
    host_port: String,
    algorithm: String,
    fingerprint: String,
}

impl Offered {
    fn new(host: &str, port: u16, key: &PublicKey) -> Self {
        Offered {
            host_port: known_hosts::host_port(host, port),
            algorithm: key.algorithm().to_string(),
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        }
    }
}

struct Paths<'a>(&'a [PathBuf]);

impl fmt::Display for Paths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", p.display())?;
        }
        Ok(())
    }
}

/// Why a host key was not trusted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostKeyFailure {
    #[error("host key for {} ({} {}) is not in {}{}", .offered.host_port, .offered.algorithm, .offered.fingerprint, Paths(.files), .why)]
    Unknown {
        offered: Offered,
        files: Vec<PathBuf>,
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
    #[error("host certificate for {} ({} {}) is signed by the authority at {}:{} but {}", .offered.host_port, .offered.algorithm, .offered.fingerprint, .path.display(), .line, .why)]
    BadCertificate {
        offered: Offered,
        path: PathBuf,
        line: usize,
        why: &'static str,
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

    pub(crate) fn is_revoked(&self) -> bool {
        matches!(self, HostKeyFailure::Revoked { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::known_hosts::tests::{ED1, ED2};

    async fn check(
        policy: &HostKeys,
        host: &str,
        port: u16,
        key: &str,
    ) -> Result<(), HostKeyFailure> {
        policy
            .check(
                host,
                port,
                &ServerKey::Plain(PublicKey::from_openssh(key).unwrap()),
            )
            .await
    }

    #[tokio::test]
    async fn changed_key_names_file_line_and_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "other.example ssh-ed25519 AAAA\n").unwrap();
        std::fs::write(&b, format!("# x\nexample.com {ED1}\n")).unwrap();
        let policy = HostKeys::known_hosts_files([&a, &b]);
        let err = check(&policy, "example.com", 22, ED2).await.unwrap_err();
        assert!(err.is_mismatch());
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{}:2", b.display())) && msg.contains("SHA256:"),
            "{msg}"
        );
        assert!(check(&policy, "example.com", 22, ED1).await.is_ok());
    }

    #[tokio::test]
    async fn a_revocation_in_one_file_beats_trust_in_another() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, format!("example.com {ED1}\n")).unwrap();
        std::fs::write(&b, format!("@revoked example.com {ED1}\n")).unwrap();
        let err = check(
            &HostKeys::known_hosts_files([&a, &b]),
            "example.com",
            22,
            ED1,
        )
        .await
        .unwrap_err();
        assert!(err.is_revoked(), "{err}");
    }

    #[tokio::test]
    async fn accept_new_learns_then_refuses_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let tofu = HostKeys::accept_new(&path);
        check(&tofu, "h.example", 2222, ED1).await.unwrap();
        check(&tofu, "h.example", 2222, ED1).await.unwrap();
        let err = check(&tofu, "h.example", 2222, ED2).await.unwrap_err();
        assert!(err.is_mismatch(), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("[h.example]:2222 {ED1}\n")
        );
        // The strict policy over the same file agrees.
        check(&HostKeys::known_hosts(&path), "h.example", 2222, ED1)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn empty_and_missing_files_know_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let err = check(
            &HostKeys::known_hosts_files([empty, dir.path().join("missing")]),
            "h",
            22,
            ED1,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no entries"), "{err}");
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
