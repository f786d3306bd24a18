//! Host key policy: which server keys a dial trusts.
//!
//! The known_hosts files are read once per dial, before key exchange, for
//! two things, as OpenSSH does: to put the key types already on file for
//! the host first in the negotiation (`order_hostkeyalgs` in
//! `sshconnect2.c`), and to judge the key the server then presents
//! (`check_host_key` in `sshconnect.c`), inside russh's `check_server_key`
//! callback, so that a key that does not verify fails the dial before any
//! credential is sent. The `known_hosts` format itself is in
//! `known_hosts/`.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use russh::keys::ssh_key::Fingerprint;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};
use russh::Preferred;

use crate::known_hosts::{self, Found, Learned, Offer, Status};

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

    fn certificate(&self) -> Option<&Certificate> {
        match self {
            ServerKey::Plain(_) => None,
            ServerKey::Certificate(c) => Some(c),
        }
    }
}

/// Which server host keys to trust.
///
/// Cheap to clone. The default is OpenSSH's: the user's
/// `~/.ssh/known_hosts` and `~/.ssh/known_hosts2` and the global
/// `/etc/ssh/ssh_known_hosts` and `/etc/ssh/ssh_known_hosts2`, read at each
/// dial, unknown hosts refused.
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
    KnownHosts(Files),
    Pinned(Vec<Pin>),
    InsecureAcceptAny,
}

/// The known_hosts files of a policy, like OpenSSH's `UserKnownHostsFile`
/// and `GlobalKnownHostsFile`.
#[derive(Clone, Debug)]
struct Files {
    /// `None`: `~/.ssh/known_hosts` and `~/.ssh/known_hosts2`, located at
    /// each dial.
    user: Option<Vec<PathBuf>>,
    /// `None`: OpenSSH's global files.
    global: Option<Vec<PathBuf>>,
    /// Where unknown hosts are learned (accept-new), if anywhere.
    learn: Option<PathBuf>,
    hash: bool,
}

#[derive(Clone)]
enum Pin {
    Fingerprint(Fingerprint),
    Key(PublicKey),
}

/// The global files OpenSSH reads by default.
const GLOBAL_KNOWN_HOSTS: [&str; 2] = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

impl Default for HostKeys {
    fn default() -> Self {
        HostKeys::new(Policy::KnownHosts(Files {
            user: None,
            global: None,
            learn: None,
            hash: false,
        }))
    }
}

impl fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.policy {
            Policy::KnownHosts(files) => f
                .debug_struct("HostKeys::KnownHosts")
                .field("user_files", &files.user)
                .field("global_files", &files.global)
                .field("accept_new", &files.learn)
                .field("hash_new_entries", &files.hash)
                .finish(),
            Policy::Pinned(pins) => write!(f, "HostKeys::Pinned({} keys)", pins.len()),
            Policy::InsecureAcceptAny => f.write_str("HostKeys::InsecureAcceptAny"),
        }
    }
}

/// A pinned host key that is neither a `SHA256:` fingerprint nor an OpenSSH
/// public key.
#[derive(Debug, thiserror::Error)]
#[error("invalid pinned host key {input:?}: {why}")]
pub struct InvalidHostKey {
    input: String,
    why: &'static str,
}

impl HostKeys {
    fn new(policy: Policy) -> Self {
        HostKeys {
            policy: Arc::new(policy),
        }
    }

    /// Trusts the keys listed for the host in an OpenSSH `known_hosts` file
    /// (OpenSSH's `StrictHostKeyChecking yes` with this file as
    /// `UserKnownHostsFile` and no global file; see
    /// [`global_files`](Self::global_files)).
    ///
    /// Reads the file as `ssh` does: plain and hashed (`|1|salt|hash`) host
    /// names, `[host]:port` for ports other than 22 (and, failing those,
    /// the plain `host` line with the very key offered), comma-separated
    /// patterns with `*`, `?` and `!` negation, several key types per host,
    /// `@revoked` lines (a revoked key fails even if another line lists
    /// it), and `@cert-authority` lines, which take effect when the dialer
    /// asks servers for host certificates
    /// ([`DialerBuilder::host_certificates`](crate::DialerBuilder::host_certificates)).
    /// A host with a key of any type on file that presents another key has
    /// *changed* ([`DialError::is_host_key_mismatch`](crate::DialError::is_host_key_mismatch)).
    /// The key types on file for the host are asked for first in key
    /// exchange. The host is matched as given to the dial (a name, or a
    /// canonical address literal), like OpenSSH with `CheckHostIP no`. Lines
    /// that do not parse are skipped. A missing file knows no hosts; a file
    /// that exists but cannot be read fails the dial. The file is read at
    /// each dial.
    pub fn known_hosts(path: impl Into<PathBuf>) -> Self {
        HostKeys::known_hosts_files([path.into()])
    }

    /// Like [`known_hosts`](Self::known_hosts), over several files at once:
    /// a key listed in any of them is trusted, unless one of them revokes it.
    pub fn known_hosts_files(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        HostKeys::new(Policy::KnownHosts(Files {
            user: Some(paths.into_iter().map(Into::into).collect()),
            global: Some(Vec::new()),
            learn: None,
            hash: false,
        }))
    }

    /// Trust on first use, like OpenSSH's `StrictHostKeyChecking
    /// accept-new` with `path` as `UserKnownHostsFile`: a host that no file
    /// knows is added to `path` and the dial goes on; a known host
    /// presenting another key is refused and nothing is written.
    ///
    /// The host is checked against `path` and OpenSSH's global files
    /// (`/etc/ssh/ssh_known_hosts` and `/etc/ssh/ssh_known_hosts2`; see
    /// [`global_files`](Self::global_files)), so their `@revoked` and
    /// `@cert-authority` lines count. Appends take an exclusive lock on
    /// the file, so concurrent dials, from this process or others, each add
    /// their line whole and once.
    pub fn accept_new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        HostKeys::new(Policy::KnownHosts(Files {
            user: Some(vec![path.clone()]),
            global: None,
            learn: Some(path),
            hash: false,
        }))
    }

    /// OpenSSH's settings: these user files, these global files, unknown
    /// hosts learned into `learn` (accept-new) if given.
    pub(crate) fn files(
        user: Vec<PathBuf>,
        global: Vec<PathBuf>,
        learn: Option<PathBuf>,
        hash: bool,
    ) -> Self {
        HostKeys::new(Policy::KnownHosts(Files {
            user: Some(user),
            global: Some(global),
            learn,
            hash,
        }))
    }

    /// Replaces the global known_hosts files read beside the user's, like
    /// OpenSSH's `GlobalKnownHostsFile`; an empty list reads none.
    ///
    /// Default is `/etc/ssh/ssh_known_hosts` and `/etc/ssh/ssh_known_hosts2`
    /// for [`HostKeys::default`] and [`accept_new`](Self::accept_new), and
    /// none for [`known_hosts`](Self::known_hosts) and
    /// [`known_hosts_files`](Self::known_hosts_files). Has no effect on
    /// pinned keys.
    #[must_use]
    pub fn global_files(self, paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        let mut policy = (*self.policy).clone();
        if let Policy::KnownHosts(files) = &mut policy {
            files.global = Some(paths.into_iter().map(Into::into).collect());
        }
        HostKeys::new(policy)
    }

    /// Whether lines added by [`accept_new`](Self::accept_new) hash the host
    /// name, like OpenSSH's `HashKnownHosts yes`. Default is `false`. Has no
    /// effect on other policies.
    #[must_use]
    pub fn hash_new_entries(self, hash: bool) -> Self {
        let mut policy = (*self.policy).clone();
        if let Policy::KnownHosts(files) = &mut policy {
            files.hash = hash;
        }
        HostKeys::new(policy)
    }

    /// Trusts exactly these keys, each a `SHA256:` fingerprint as printed by
    /// `ssh-keygen -lf` (with or without base64 padding) or a public key
    /// line such as `ssh-ed25519 AAAA... comment`.
    ///
    /// # Errors
    ///
    /// [`InvalidHostKey`] naming the first entry that is neither, and why.
    pub fn pinned<I, S>(keys: I) -> Result<Self, InvalidHostKey>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let pins = keys
            .into_iter()
            .map(|s| parse_pin(s.as_ref().trim()))
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

    /// Reads what the policy needs to know about `host` (as dialed) on
    /// `port`, before key exchange.
    pub(crate) async fn prepare(&self, host: &str, port: u16) -> Result<Prepared, HostKeyFailure> {
        let host = host.to_ascii_lowercase();
        let known = match &*self.policy {
            Policy::KnownHosts(files) => Some(Known::read(files, &host, port).await?),
            _ => None,
        };
        Ok(Prepared {
            policy: self.policy.clone(),
            host,
            port,
            known,
        })
    }
}

fn parse_pin(s: &str) -> Result<Pin, InvalidHostKey> {
    let invalid = |why| InvalidHostKey {
        input: s.chars().take(80).collect(),
        why,
    };
    if let Some(b64) = s.strip_prefix("SHA256:") {
        // ssh-keygen prints the hash unpadded; a padded copy is the same hash.
        let unpadded = b64.trim_end_matches('=');
        if unpadded.len() != 43 {
            return Err(invalid(
                "a SHA256 fingerprint has 43 base64 characters after \"SHA256:\"",
            ));
        }
        return format!("SHA256:{unpadded}")
            .parse()
            .map(Pin::Fingerprint)
            .map_err(|_| invalid("the fingerprint is not valid base64"));
    }
    if s.contains(':') && !s.contains(' ') {
        return Err(invalid(
            "only SHA256 fingerprints are accepted (as `ssh-keygen -lf` prints them)",
        ));
    }
    PublicKey::from_openssh(s).map(Pin::Key).map_err(|_| {
        invalid("expected \"SHA256:...\" or a public key line \"ssh-ed25519 AAAA...\"")
    })
}

/// The user's known_hosts files, in `~/.ssh` of `$HOME` or, when that is
/// unset, of the passwd entry's home directory.
fn default_user_files() -> Vec<PathBuf> {
    match std::env::home_dir().filter(|h| !h.as_os_str().is_empty()) {
        Some(home) => {
            let ssh = home.join(".ssh");
            vec![ssh.join("known_hosts"), ssh.join("known_hosts2")]
        }
        None => Vec::new(),
    }
}

/// What the files say about one host: the lines for `[host]:port` and, on
/// a port other than 22, those for the plain `host`.
struct Known {
    files: Vec<PathBuf>,
    any_entries: bool,
    with_port: Found,
    without_port: Option<Found>,
}

impl Known {
    async fn read(policy: &Files, host: &str, port: u16) -> Result<Known, HostKeyFailure> {
        let mut files = policy.user.clone().unwrap_or_else(default_user_files);
        match &policy.global {
            Some(global) => files.extend(global.iter().cloned()),
            None => files.extend(GLOBAL_KNOWN_HOSTS.iter().map(PathBuf::from)),
        }
        let lookup = known_hosts::host_port(host, port);
        let mut known = Known {
            files: Vec::new(),
            any_entries: false,
            with_port: Found::default(),
            without_port: (port != 22).then(Found::default),
        };
        // One trip off the runtime for all the files: each is looked at
        // and, unless it is unchanged since it was last indexed, read.
        let paths = files.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|p| known_hosts::cache::load(p))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| HostKeyFailure::Unreadable {
            path: PathBuf::new(),
            error: io::Error::other(e),
        })?;
        for (index, (path, file)) in files.iter().zip(loaded).enumerate() {
            let file = match file {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(error) => {
                    return Err(HostKeyFailure::Unreadable {
                        path: path.clone(),
                        error,
                    })
                }
            };
            known.any_entries |= known.with_port.load_indexed(&file, &lookup, index);
            if let Some(plain) = &mut known.without_port {
                plain.load_indexed(&file, host, index);
            }
        }
        known.files = files;
        Ok(known)
    }
}

/// A policy ready for one dial's key exchange.
pub(crate) struct Prepared {
    policy: Arc<Policy>,
    /// The host as dialed, lowercased, as OpenSSH compares it.
    host: String,
    port: u16,
    known: Option<Known>,
}

/// How the files judged a key (OpenSSH's `check_host_key`, with its
/// outcomes).
enum Judged {
    Trusted,
    /// No file knows the host; the certificate's problem, if it was one.
    New(Option<(usize, &'static str)>),
    Changed(usize),
    Revoked(usize),
}

impl Prepared {
    /// The algorithm preferences for this host, if they differ from
    /// `preferred`: OpenSSH's `order_hostkeyalgs`.
    ///
    /// If the first algorithm is of a key type on file for `[host]:port`,
    /// the list is used as it is; otherwise the algorithms whose key type
    /// is on file move to the front, in their order. Certificates are
    /// asked for only when an `@cert-authority` line names the host: with
    /// no authority to check it against, a certificate is judged by its
    /// plain key, and asking for one could only pass over a key type on
    /// file. Pinned keys (not fingerprints) count as on file.
    pub(crate) fn preferred(&self, preferred: &Preferred) -> Option<Preferred> {
        if matches!(*self.policy, Policy::InsecureAcceptAny) {
            return None;
        }
        let knows = |a: &Algorithm| self.knows_type(a);
        let key = &preferred.key;
        let ordered: Vec<Algorithm> = if key.first().is_none_or(knows) {
            key.to_vec()
        } else {
            let (first, last): (Vec<_>, Vec<_>) = key.iter().cloned().partition(|a| knows(a));
            first.into_iter().chain(last).collect()
        };
        let authority = self
            .known
            .as_ref()
            .is_some_and(|k| k.with_port.has_authority());
        let certificates: &[Algorithm] = if authority {
            &preferred.host_key_certificates
        } else {
            &[]
        };
        if ordered[..] == key[..] && certificates[..] == preferred.host_key_certificates[..] {
            return None;
        }
        let mut new = preferred.clone();
        new.key = Cow::Owned(ordered);
        new.host_key_certificates = Cow::Owned(certificates.to_vec());
        Some(new)
    }

    /// Whether a key of this algorithm's type is on file for the host (or
    /// pinned, as a key).
    fn knows_type(&self, algorithm: &Algorithm) -> bool {
        match (&*self.policy, &self.known) {
            (Policy::KnownHosts(_), Some(known)) => known.with_port.knows_type(algorithm),
            (Policy::Pinned(pins), _) => pins.iter().any(
                |p| matches!(p, Pin::Key(k) if known_hosts::same_type(&k.algorithm(), algorithm)),
            ),
            _ => false,
        }
    }

    /// Checks the key the server presented. Learning a new host gives up
    /// waiting for the file's lock once `abandoned` says the dial is over.
    pub(crate) async fn check(
        &self,
        server: &ServerKey,
        abandoned: impl Fn() -> bool + Send + 'static,
    ) -> Result<(), HostKeyFailure> {
        let key = server.key();
        let offered = Offered::new(&self.host, self.port, &key);
        match (&*self.policy, &self.known) {
            (Policy::InsecureAcceptAny, _) => Ok(()),
            (Policy::Pinned(pins), _) => {
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
            (Policy::KnownHosts(files), Some(known)) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let judged = self.judge(
                    &known.with_port,
                    known.without_port.as_ref(),
                    server.certificate(),
                    &key,
                    now,
                );
                self.verdict(judged, known, files, offered, &key, abandoned)
                    .await
            }
            (Policy::KnownHosts(_), None) => Err(HostKeyFailure::NotPinned { offered }),
        }
    }

    /// OpenSSH's `check_host_key` over the lines for `[host]:port`
    /// (`found`), falling back, for a host they do not know, on the lines
    /// for the plain host (`fallback`) when those list the very key. A
    /// certificate that no authority on file vouches for, or that is not
    /// good for this host, is judged again as its plain key, unless it is
    /// revoked.
    fn judge(
        &self,
        found: &Found,
        fallback: Option<&Found>,
        mut cert: Option<&Certificate>,
        key: &PublicKey,
        now: u64,
    ) -> Judged {
        let mut cert_problem = None;
        loop {
            let offer = match cert {
                Some(c) => Offer::Certificate(c),
                None => Offer::Plain(key),
            };
            match found.check(offer) {
                Status::Ok(i) => match cert {
                    None => return Judged::Trusted,
                    Some(c) => {
                        match known_hosts::certificate_problem(
                            c,
                            &found.entries[i].key,
                            &self.host,
                            now,
                        ) {
                            None => return Judged::Trusted,
                            Some(why) => cert_problem = Some((i, why)),
                        }
                    }
                },
                Status::New => {
                    if let Some(plain) = fallback {
                        if matches!(self.judge(plain, None, cert, key, now), Judged::Trusted) {
                            return Judged::Trusted;
                        }
                    }
                    if cert.is_none() {
                        return Judged::New(cert_problem);
                    }
                }
                Status::Revoked(i) => return Judged::Revoked(i),
                Status::Changed(i) if cert.is_none() => return Judged::Changed(i),
                Status::Changed(_) => {}
            }
            // A certificate that did not pass: judge its key.
            cert = None;
        }
    }

    async fn verdict(
        &self,
        judged: Judged,
        known: &Known,
        files: &Files,
        offered: Offered,
        key: &PublicKey,
        abandoned: impl Fn() -> bool + Send + 'static,
    ) -> Result<(), HostKeyFailure> {
        let entry_at = |found: &Found, i: usize| {
            let e = &found.entries[i];
            (known.files[e.file].clone(), e.line, e.key.clone())
        };
        let cert_problem = match judged {
            Judged::Trusted => return Ok(()),
            Judged::Revoked(i) => {
                let (path, line, _) = entry_at(&known.with_port, i);
                return Err(HostKeyFailure::Revoked {
                    offered,
                    path,
                    line,
                });
            }
            Judged::Changed(i) => {
                let (path, line, listed) = entry_at(&known.with_port, i);
                return Err(HostKeyFailure::Changed {
                    offered,
                    path,
                    line,
                    listed: Listed::new(&listed),
                });
            }
            Judged::New(problem) => problem,
        };
        let Some(learn) = &files.learn else {
            if let Some((i, why)) = cert_problem {
                let (path, line, _) = entry_at(&known.with_port, i);
                return Err(HostKeyFailure::BadCertificate {
                    offered,
                    path,
                    line,
                    why,
                });
            }
            return Err(HostKeyFailure::Unknown {
                offered,
                files: known.files.clone(),
                why: if known.any_entries {
                    ""
                } else {
                    " (no entries)"
                },
            });
        };
        let (path, host_port, key) = (learn.clone(), offered.host_port.clone(), key.clone());
        let hash = files.hash;
        let learned = tokio::task::spawn_blocking(move || {
            let learned = known_hosts::learn(&path, &host_port, &key, hash, &abandoned);
            known_hosts::cache::forget(&path);
            learned
        })
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)));
        match learned {
            Ok(Learned::Added) => {
                tracing::info!(host = %offered.host_port, key = %offered.fingerprint, file = %learn.display(), "permanently added host key");
                Ok(())
            }
            Ok(Learned::AlreadyKnown) => Ok(()),
            Ok(Learned::Refused {
                line,
                revoked: true,
            }) => Err(HostKeyFailure::Revoked {
                offered,
                path: learn.clone(),
                line,
            }),
            Ok(Learned::Refused { line, .. }) => Err(HostKeyFailure::Changed {
                offered,
                path: learn.clone(),
                line,
                listed: Listed::default(),
            }),
            Err(error) => Err(HostKeyFailure::Unwritable {
                path: learn.clone(),
                error,
            }),
        }
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

/// The key on file that an offered key contradicts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listed(Option<(String, String)>);

impl Listed {
    fn new(key: &PublicKey) -> Self {
        Listed(Some((
            key.algorithm().to_string(),
            key.fingerprint(HashAlg::Sha256).to_string(),
        )))
    }
}

impl fmt::Display for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some((algorithm, fingerprint)) => write!(f, "{algorithm} {fingerprint}"),
            None => f.write_str("another key"),
        }
    }
}

struct Paths<'a>(&'a [PathBuf]);

impl fmt::Display for Paths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no known_hosts file");
        }
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
    #[error("host key for {} has changed: server offered {} {}, but {}:{} lists {} for this host", .offered.host_port, .offered.algorithm, .offered.fingerprint, .path.display(), .line, .listed)]
    Changed {
        offered: Offered,
        path: PathBuf,
        line: usize,
        listed: Listed,
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
    #[error("cannot read known_hosts file {}: {}", .path.display(), crate::text::fmt_io(.error))]
    Unreadable {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    #[error("cannot add the host key to {}: {}", .path.display(), crate::text::fmt_io(.error))]
    Unwritable {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
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

    use crate::known_hosts::tests::{EC1, ED1, ED2};

    async fn check(
        policy: &HostKeys,
        host: &str,
        port: u16,
        key: &str,
    ) -> Result<(), HostKeyFailure> {
        policy
            .prepare(host, port)
            .await?
            .check(
                &ServerKey::Plain(PublicKey::from_openssh(key).unwrap()),
                || false,
            )
            .await
    }

    #[tokio::test]
    async fn changed_key_names_file_line_and_both_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "other.example ssh-ed25519 AAAA\n").unwrap();
        std::fs::write(&b, format!("# x\nexample.com {ED1}\n")).unwrap();
        let policy = HostKeys::known_hosts_files([&a, &b]);
        for other in [ED2, EC1] {
            let err = check(&policy, "example.com", 22, other).await.unwrap_err();
            assert!(err.is_mismatch());
            let msg = err.to_string();
            let listed = PublicKey::from_openssh(ED1)
                .unwrap()
                .fingerprint(HashAlg::Sha256)
                .to_string();
            assert!(
                msg.contains(&format!("{}:2", b.display()))
                    && msg.contains(&listed)
                    && msg.matches("SHA256:").count() == 2,
                "{msg}"
            );
        }
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
    async fn accept_new_learns_then_refuses_any_other_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let tofu = HostKeys::accept_new(&path).global_files(Vec::<PathBuf>::new());
        check(&tofu, "h.example", 2222, ED1).await.unwrap();
        check(&tofu, "h.example", 2222, ED1).await.unwrap();
        for other in [ED2, EC1] {
            let err = check(&tofu, "h.example", 2222, other).await.unwrap_err();
            assert!(err.is_mismatch(), "{err}");
        }
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
    async fn accept_new_honours_revocations_in_the_global_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let global = dir.path().join("global");
        std::fs::write(&global, format!("@revoked * {ED1}\n")).unwrap();
        let tofu = HostKeys::accept_new(&path).global_files([&global]);
        let err = check(&tofu, "h.example", 22, ED1).await.unwrap_err();
        assert!(err.is_revoked(), "{err}");
        assert!(!path.exists(), "nothing learned");
        check(&tofu, "h.example", 22, ED2).await.unwrap();
    }

    #[tokio::test]
    async fn a_plain_entry_serves_other_ports_only_for_its_very_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, format!("h.example {ED1}\n")).unwrap();
        let strict = HostKeys::known_hosts(&path);
        check(&strict, "h.example", 2222, ED1).await.unwrap();
        let err = check(&strict, "h.example", 2222, ED2).await.unwrap_err();
        assert!(!err.is_mismatch() && !err.is_revoked(), "{err}");
        assert!(err.to_string().contains("is not in"), "{err}");
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

    #[tokio::test]
    async fn an_unreadable_file_fails_with_its_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = check(&HostKeys::known_hosts(dir.path()), "h", 22, ED1)
            .await
            .unwrap_err();
        let source = std::error::Error::source(&err).expect("io error kept");
        assert!(source.downcast_ref::<io::Error>().is_some(), "{err}");
    }

    #[test]
    fn pins_parse_or_fail_clearly() {
        let fp = PublicKey::from_openssh(ED1)
            .unwrap()
            .fingerprint(HashAlg::Sha256)
            .to_string();
        assert!(HostKeys::pinned([fp.as_str(), ED2]).is_ok());
        assert!(HostKeys::pinned([format!("{fp}=")]).is_ok(), "padded");
        for (bad, says) in [
            ("SHA256:nope!", "43 base64"),
            ("SHA256:", "43 base64"),
            ("MD5:aa:bb", "only SHA256"),
            ("ssh-ed25519 AAAA", "public key line"),
        ] {
            let err = HostKeys::pinned([bad]).unwrap_err().to_string();
            assert!(
                err.contains("invalid pinned host key") && err.contains(says),
                "{bad}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn known_types_go_first_unless_the_first_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, format!("[h]:2222 {EC1}\n")).unwrap();
        let policy = HostKeys::known_hosts(&path);
        let default = Preferred::default();
        let prepared = policy.prepare("h", 2222).await.unwrap();
        let ordered = prepared.preferred(&default).expect("reordered");
        assert_eq!(
            ordered.key[0],
            PublicKey::from_openssh(EC1).unwrap().algorithm()
        );
        assert_eq!(ordered.key.len(), default.key.len());
        // The plain entry does not order another port (as in OpenSSH).
        assert!(policy
            .prepare("h", 2223)
            .await
            .unwrap()
            .preferred(&default)
            .is_none());
        std::fs::write(&path, format!("[h]:2222 {EC1}\n[h]:2222 {ED1}\n")).unwrap();
        let prepared = policy.prepare("h", 2222).await.unwrap();
        assert!(
            prepared.preferred(&default).is_none(),
            "first is known: verbatim"
        );
    }
}
