//! Credentials, and user authentication over an established session.
//!
//! Like OpenSSH, a dial first asks the server which methods it takes (a
//! `none` request) and offers only those, so that a password never reaches
//! a server that does not ask for one and a long list of keys does not run
//! into `MaxAuthTries` or a lockout counter on a method the server refuses.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{Algorithm, Certificate, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{MethodKind, MethodSet};
use zeroize::Zeroizing;

use crate::certificate::{self, KeySigner, Validity};
use crate::error::Kind;
use crate::handshake::ClientHandler;
use crate::text::PeerText;

/// How to authenticate: one method, or several tried in order.
///
/// Cheap to clone. `Debug` shows the methods and key paths, never a
/// password or a passphrase; neither appears in logs or errors, and both are
/// wiped from memory when the last clone is dropped (copies russh makes
/// while sending a password are its own).
///
/// # Examples
///
/// ```
/// use ssh_dial::Auth;
///
/// // Like ssh with an IdentityFile, an agent and a password, in that order.
/// let auth = Auth::key_file("/home/deploy/.ssh/id_ed25519", None)
///     .or(Auth::agent())
///     .or(Auth::password("hunter2"));
/// assert!(!format!("{auth:?}").contains("hunter2"));
/// ```
#[derive(Clone)]
pub struct Auth {
    methods: Arc<Vec<Method>>,
}

#[derive(Clone)]
pub(crate) enum Method {
    Password(Arc<Secret>),
    /// A key file, and the certificate beside it (`<path>-cert.pub`) if
    /// there is one and `beside`.
    KeyFile {
        path: PathBuf,
        passphrase: Option<Arc<Secret>>,
        beside: bool,
    },
    /// ssh_config's `CertificateFile`: a certificate signed for by the key
    /// file or agent key of the same `Auth` that it certifies.
    CertificateFile(PathBuf),
    /// A certificate file and the key file it certifies.
    Certificate {
        key: PathBuf,
        cert: PathBuf,
        passphrase: Option<Arc<Secret>>,
    },
    Key(Arc<PrivateKey>),
    /// An OpenSSH private key, as the text of its file.
    KeyText {
        text: Arc<Secret>,
        passphrase: Option<Arc<Secret>>,
    },
    /// The agent at this socket, or at `SSH_AUTH_SOCK` when `None`.
    Agent(Option<PathBuf>),
    KeyboardInteractive(Responder),
}

/// A string kept out of `Debug` and `Display`, and zeroed when dropped.
pub(crate) struct Secret(Zeroizing<String>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

type RespondFn = dyn Fn(&Challenge) -> Option<Vec<String>> + Send + Sync;

/// The caller's answers to keyboard-interactive prompts.
#[derive(Clone)]
pub(crate) struct Responder(Arc<RespondFn>);

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Password(p) => f.debug_tuple("Password").field(p).finish(),
            Method::KeyFile {
                path,
                passphrase,
                beside,
            } => f
                .debug_struct("KeyFile")
                .field("path", path)
                .field("passphrase", passphrase)
                .field("beside", beside)
                .finish(),
            Method::CertificateFile(path) => f.debug_tuple("CertificateFile").field(path).finish(),
            Method::Certificate {
                key,
                cert,
                passphrase,
            } => f
                .debug_struct("Certificate")
                .field("key", key)
                .field("cert", cert)
                .field("passphrase", passphrase)
                .finish(),
            Method::KeyText { passphrase, .. } => f
                .debug_struct("KeyText")
                .field("text", &"<redacted>")
                .field("passphrase", passphrase)
                .finish(),
            Method::Key(k) => f
                .debug_struct("Key")
                .field("algorithm", &k.algorithm().as_str())
                .finish_non_exhaustive(),
            Method::Agent(path) => f.debug_tuple("Agent").field(path).finish(),
            Method::KeyboardInteractive(_) => f.write_str("KeyboardInteractive"),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Auth").field(&self.methods).finish()
    }
}

/// One round of keyboard-interactive prompts (RFC 4256), as the server sent
/// them. Its text comes from the server: escape it before showing it.
#[derive(Debug)]
pub struct Challenge {
    name: String,
    instructions: String,
    prompts: Vec<Prompt>,
}

/// One prompt of a [`Challenge`].
#[derive(Debug)]
pub struct Prompt {
    text: String,
    echo: bool,
}

impl Challenge {
    /// The challenge's name, often empty.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Instructions for the user, often empty.
    pub fn instructions(&self) -> &str {
        &self.instructions
    }

    /// The prompts to answer, in order; may be empty (a round that only
    /// shows instructions).
    pub fn prompts(&self) -> &[Prompt] {
        &self.prompts
    }
}

impl Prompt {
    /// The prompt, e.g. `"Password: "` or `"Verification code: "`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the answer may be shown as it is typed (false for secrets).
    pub fn echo(&self) -> bool {
        self.echo
    }
}

/// The most keyboard-interactive rounds answered in one attempt.
const MAX_ROUNDS: usize = 10;

impl Auth {
    fn one(method: Method) -> Self {
        Auth {
            methods: Arc::new(vec![method]),
        }
    }

    /// Password authentication. If the server does not take `password` but
    /// offers `keyboard-interactive`, as PAM-backed servers often do, the
    /// password answers a round that asks for exactly one hidden answer
    /// and whose prompt contains the word "password" (any case), such as
    /// PAM's `Password: `; rounds with no prompts are acknowledged. Any
    /// other prompt (a one-time code, a second factor, a prompt in another
    /// language) is not answered with the password: the attempt ends and the
    /// auth error names the prompt. Use
    /// [`keyboard_interactive`](Self::keyboard_interactive) to answer those.
    pub fn password(password: impl Into<String>) -> Self {
        Auth::one(Method::Password(Arc::new(Secret(Zeroizing::new(
            password.into(),
        )))))
    }

    /// Keyboard-interactive authentication (RFC 4256) answered by
    /// `respond`: it is handed each [`Challenge`] and returns one answer
    /// per prompt, or `None` to give up on the method. At most ten rounds
    /// are answered. The answers are wiped once sent (russh's copy while
    /// encoding them is its own). `respond` runs on the async runtime
    /// within the dial's deadline: it must not block.
    ///
    /// # Examples
    ///
    /// ```
    /// use ssh_dial::Auth;
    ///
    /// let auth = Auth::keyboard_interactive(|challenge| {
    ///     challenge
    ///         .prompts()
    ///         .iter()
    ///         .map(|p| match p.text() {
    ///             t if t.contains("Password") => Some("hunter2".to_owned()),
    ///             t if t.contains("Verification code") => Some("123456".to_owned()),
    ///             _ => None,
    ///         })
    ///         .collect()
    /// });
    /// # let _ = auth;
    /// ```
    pub fn keyboard_interactive<F>(respond: F) -> Self
    where
        F: Fn(&Challenge) -> Option<Vec<String>> + Send + Sync + 'static,
    {
        Auth::one(Method::KeyboardInteractive(Responder(Arc::new(respond))))
    }

    /// Public key authentication with an OpenSSH or PEM private key file
    /// (Ed25519, ECDSA or RSA), decrypted with `passphrase` if it is encrypted.
    ///
    /// Like `ssh -i`, if a certificate for the key is beside it, as
    /// `<path>-cert.pub`, that is offered too, after the plain key (the
    /// order `ssh` offers them in). A certificate there that cannot be used
    /// (unreadable, a host certificate, for another key, a type ssh-dial
    /// cannot sign for) is skipped, and the auth error says why if no
    /// method gets in. An expired or not yet valid certificate is offered
    /// all the same, as `ssh` does: the server's clock decides.
    ///
    /// The files are read at the start of each dial, before any network
    /// traffic, so an unreadable key or a wrong passphrase fails fast. To
    /// read it once for many dials, load it yourself and use [`Auth::key`].
    pub fn key_file(path: impl Into<PathBuf>, passphrase: Option<&str>) -> Self {
        Auth::one(Method::KeyFile {
            path: path.into(),
            passphrase: passphrase.map(|p| Arc::new(Secret(Zeroizing::new(p.to_owned())))),
            beside: true,
        })
    }

    /// [`key_file`](Self::key_file) without looking for a certificate
    /// beside the key: what an `IdentityFile` is to `ssh` once any
    /// `CertificateFile` is set.
    pub(crate) fn key_file_alone(path: impl Into<PathBuf>, passphrase: Option<&str>) -> Self {
        Auth::one(Method::KeyFile {
            path: path.into(),
            passphrase: passphrase.map(|p| Arc::new(Secret(Zeroizing::new(p.to_owned())))),
            beside: false,
        })
    }

    /// ssh_config's `CertificateFile`: the certificate in `path`, signed
    /// for, as `ssh` does, by whichever private key of this `Auth`'s other
    /// methods it certifies: a key file or key first, else a key the agent
    /// holds. A file that does not exist is passed over in silence, as by
    /// `ssh`; one that cannot be used, or whose key is nowhere, is skipped
    /// with a note in the auth error.
    pub(crate) fn certificate_file(path: impl Into<PathBuf>) -> Self {
        Auth::one(Method::CertificateFile(path.into()))
    }

    /// Public key authentication with the OpenSSH user certificate in
    /// `cert` (a `-cert.pub` file from `ssh-keygen -s`, Vault, step-ca or
    /// Teleport), signed for with the private key file `key`, decrypted with
    /// `passphrase` if it is encrypted; what ssh_config's `CertificateFile`
    /// sets. Only the certificate is offered: add
    /// [`key_file`](Self::key_file) to offer the plain key as well.
    ///
    /// Both files are read at the start of each dial, before any network
    /// traffic. The dial fails in the auth phase, as invalid input, if the
    /// key cannot be loaded, or if the certificate cannot be read, is not a
    /// user certificate, does not certify this key, or is of a type ssh-dial
    /// cannot sign for (Ed25519, ECDSA and RSA are; RSA signs with
    /// `rsa-sha2-512` or `rsa-sha2-256` as the server allows). An expired or
    /// not yet valid certificate is offered all the same, as `ssh` does, and
    /// said so in a debug log line; when the server turns a certificate
    /// down, the auth error names it: key id, principals, validity.
    ///
    /// # Examples
    ///
    /// ```
    /// use ssh_dial::Auth;
    ///
    /// let auth = Auth::certificate(
    ///     "/home/deploy/.ssh/id_ed25519",
    ///     "/run/vault/id_ed25519-cert.pub",
    ///     None,
    /// );
    /// # let _ = auth;
    /// ```
    pub fn certificate(
        key: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        passphrase: Option<&str>,
    ) -> Self {
        Auth::one(Method::Certificate {
            key: key.into(),
            cert: cert.into(),
            passphrase: passphrase.map(|p| Arc::new(Secret(Zeroizing::new(p.to_owned())))),
        })
    }

    /// Public key authentication with a private key given as the text of an
    /// OpenSSH key file (`-----BEGIN OPENSSH PRIVATE KEY-----`, or PEM), as a
    /// secrets manager hands it out, decrypted with `passphrase` if it is
    /// encrypted. Like [`key_file`](Self::key_file) it is decoded at each
    /// dial, within the deadline; a key that does not decode fails the dial
    /// in the auth phase. The text and the passphrase are zeroed when the
    /// last clone of this `Auth` is dropped, and never shown.
    pub fn key_openssh(text: impl Into<String>, passphrase: Option<&str>) -> Self {
        Auth::one(Method::KeyText {
            text: Arc::new(Secret(Zeroizing::new(text.into()))),
            passphrase: passphrase.map(|p| Arc::new(Secret(Zeroizing::new(p.to_owned())))),
        })
    }

    /// Public key authentication with a key already in memory. RSA keys
    /// sign with the strongest of `rsa-sha2-512`, `rsa-sha2-256` and
    /// `ssh-rsa` that the server accepts.
    pub fn key(key: PrivateKey) -> Self {
        Auth::one(Method::Key(Arc::new(key)))
    }

    /// Every key and certificate held by the ssh-agent at `SSH_AUTH_SOCK`,
    /// tried in the order the agent lists them (`ssh-add` adds a key's
    /// certificate after it, and `ssh` offers them in that order). The
    /// variable is read at each dial.
    pub fn agent() -> Self {
        Auth::one(Method::Agent(None))
    }

    /// Every key and certificate held by the ssh-agent listening on this
    /// socket, as [`agent`](Self::agent).
    pub fn agent_at(socket: impl Into<PathBuf>) -> Self {
        Auth::one(Method::Agent(Some(socket.into())))
    }

    /// `self`'s methods, then `other`'s, all within the dial's one deadline.
    /// Methods the server does not offer are skipped. The first the server
    /// accepts wins; a server asking for more (partial success) gets the next.
    pub fn or(self, other: Auth) -> Self {
        let mut methods = Arc::unwrap_or_clone(self.methods);
        methods.extend(other.methods.iter().cloned());
        Auth {
            methods: Arc::new(methods),
        }
    }

    /// Readies the credentials: reads and decrypts key files and reads
    /// certificates, on the blocking pool, since decrypting an OpenSSH key
    /// is deliberately slow.
    pub(crate) async fn load(&self) -> Result<Vec<Credential>, Kind> {
        let mut ready = Vec::with_capacity(self.methods.len());
        let mut unbound = Vec::new();
        for method in self.methods.iter() {
            match method {
                Method::Password(p) => ready.push(Credential::Password(p.clone())),
                Method::Key(k) => ready.push(Credential::Key(k.clone(), None)),
                Method::Agent(path) => ready.push(Credential::Agent(path.clone())),
                Method::KeyboardInteractive(r) => {
                    ready.push(Credential::KeyboardInteractive(r.clone()))
                }
                Method::KeyText { text, passphrase } => {
                    let (text, passphrase) = (text.clone(), passphrase.clone());
                    let decoded = blocking(move || {
                        russh::keys::decode_secret_key(
                            &text.0,
                            passphrase.as_ref().map(|p| p.0.as_str()),
                        )
                    })
                    .await?;
                    match decoded {
                        Ok(key) => ready.push(Credential::Key(Arc::new(key), None)),
                        Err(cause) => {
                            return Err(Kind::Key {
                                path: "(given as text)".into(),
                                cause,
                            })
                        }
                    }
                }
                Method::KeyFile {
                    path,
                    passphrase,
                    beside: look,
                } => {
                    let (file, passphrase, look) = (path.clone(), passphrase.clone(), *look);
                    let (loaded, found) = blocking(move || {
                        let key = load_key(&file, passphrase.as_deref());
                        let cert_path = beside(&file);
                        // As ssh: a missing certificate is no matter.
                        let cert = (look && cert_path.is_file())
                            .then(|| (certificate::read(&cert_path), cert_path));
                        (key, cert)
                    })
                    .await?;
                    let key = Arc::new(loaded.map_err(|cause| Kind::Key {
                        path: path.display().to_string(),
                        cause,
                    })?);
                    ready.push(Credential::Key(key.clone(), Some(path.clone())));
                    if let Some((cert, cert_path)) = found {
                        ready.push(match cert.and_then(|c| fits(c, &key, path)) {
                            Ok(cert) => Credential::Certificate {
                                cert: Arc::new(cert),
                                key,
                                file: cert_path,
                            },
                            Err(why) => Credential::Unusable(format!(
                                "certificate {} skipped: {why}",
                                file_name(&cert_path)
                            )),
                        });
                    }
                }
                Method::Certificate {
                    key,
                    cert,
                    passphrase,
                } => {
                    let (key_file, cert_file) = (key.clone(), cert.clone());
                    let passphrase = passphrase.clone();
                    let (loaded, read) = blocking(move || {
                        (
                            load_key(&key_file, passphrase.as_deref()),
                            certificate::read(&cert_file),
                        )
                    })
                    .await?;
                    let loaded = Arc::new(loaded.map_err(|cause| Kind::Key {
                        path: key.display().to_string(),
                        cause,
                    })?);
                    let read = read.and_then(|c| fits(c, &loaded, key)).map_err(|why| {
                        Kind::Certificate {
                            path: cert.display().to_string(),
                            why,
                        }
                    })?;
                    ready.push(Credential::Certificate {
                        cert: Arc::new(read),
                        key: loaded,
                        file: cert.clone(),
                    });
                }
                Method::CertificateFile(path) => {
                    let file = path.clone();
                    let read = blocking(move || match std::fs::metadata(&file) {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        _ => Some(certificate::read(&file)),
                    })
                    .await?;
                    let name = file_name(path);
                    match read {
                        None => tracing::debug!(file = %path.display(), "no certificate file"),
                        Some(Err(why)) => ready.push(Credential::Unusable(format!(
                            "certificate {name} skipped: {why}"
                        ))),
                        Some(Ok(cert)) => match certificate::unusable(&cert, true) {
                            Some(why) => ready.push(Credential::Unusable(format!(
                                "certificate {name} skipped: {why}"
                            ))),
                            // Bound to its key once every method is loaded.
                            None => {
                                unbound.push((ready.len(), cert, path.clone()));
                                ready.push(Credential::Unusable(String::new()));
                            }
                        },
                    }
                }
            }
        }
        for (at, cert, file) in unbound {
            ready[at] = bind(cert, file, &ready);
        }
        Ok(ready)
    }
}

/// A `CertificateFile`'s certificate with the first key file or key of the
/// same `Auth` that it certifies, else with the first agent (which must
/// hold its key), as `ssh` pairs them.
fn bind(cert: Certificate, file: PathBuf, ready: &[Credential]) -> Credential {
    let key = ready.iter().find_map(|c| match c {
        Credential::Key(key, _) if key.public_key().key_data() == cert.public_key() => {
            Some(key.clone())
        }
        _ => None,
    });
    if let Some(key) = key {
        if certificate::unusable(&cert, false).is_none() {
            return Credential::Certificate {
                cert: Arc::new(cert),
                key,
                file,
            };
        }
    }
    let agent = ready.iter().find_map(|c| match c {
        Credential::Agent(path) => Some(path.clone()),
        _ => None,
    });
    match agent {
        Some(agent) => Credential::AgentCertificate {
            cert: Arc::new(cert),
            file,
            agent,
        },
        None => Credential::Unusable(format!(
            "certificate {} skipped: no key file or agent to sign for it",
            file_name(&file)
        )),
    }
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Kind> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| Kind::Io(std::io::Error::other(join)))
}

fn load_key(path: &Path, passphrase: Option<&Secret>) -> Result<PrivateKey, russh::keys::Error> {
    russh::keys::load_secret_key(path, passphrase.map(|p| p.0.as_str()))
}

/// Where `ssh` looks for an identity's certificate: `<path>-cert.pub`.
fn beside(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push("-cert.pub");
    PathBuf::from(name)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// The certificate if ssh-dial can offer it signed by `key` (from the
/// file `key_path`), or why not.
fn fits(cert: Certificate, key: &PrivateKey, key_path: &Path) -> Result<Certificate, String> {
    if let Some(why) = certificate::unusable(&cert, false) {
        return Err(why);
    }
    if cert.public_key() != key.public_key().key_data() {
        return Err(format!(
            "it certifies another key ({}), not the one in {}",
            cert.public_key().fingerprint(HashAlg::Sha256),
            key_path.display()
        ));
    }
    Ok(cert)
}

/// A credential ready to send.
#[derive(Clone)]
pub(crate) enum Credential {
    Password(Arc<Secret>),
    /// A key, and the file it came from.
    Key(Arc<PrivateKey>, Option<PathBuf>),
    /// A user certificate, the key that signs for it, and its file.
    Certificate {
        cert: Arc<Certificate>,
        key: Arc<PrivateKey>,
        file: PathBuf,
    },
    /// A certificate (from a `CertificateFile`) whose key the agent at
    /// this socket (or `SSH_AUTH_SOCK`) should hold.
    AgentCertificate {
        cert: Arc<Certificate>,
        file: PathBuf,
        agent: Option<PathBuf>,
    },
    Agent(Option<PathBuf>),
    KeyboardInteractive(Responder),
    /// A certificate that cannot be offered, and why: a note for the error.
    Unusable(String),
}

impl Credential {
    /// Whether this is a secret the user typed for one host (a password,
    /// keyboard-interactive answers), not a key: never offered to a jump
    /// host unless given for it.
    pub(crate) fn is_secret(&self) -> bool {
        matches!(
            self,
            Credential::Password(_) | Credential::KeyboardInteractive(_)
        )
    }

    /// The methods that can carry this credential.
    fn methods(&self) -> &'static [MethodKind] {
        match self {
            Credential::Password(_) => &[MethodKind::Password, MethodKind::KeyboardInteractive],
            Credential::Key(..)
            | Credential::Certificate { .. }
            | Credential::AgentCertificate { .. }
            | Credential::Agent(_)
            | Credential::Unusable(_) => &[MethodKind::PublicKey],
            Credential::KeyboardInteractive(_) => &[MethodKind::KeyboardInteractive],
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Credential::Password(_) => "password",
            Credential::Key(..) => "publickey",
            Credential::Certificate { .. }
            | Credential::AgentCertificate { .. }
            | Credential::Unusable(_) => "certificate",
            Credential::Agent(_) => "agent",
            Credential::KeyboardInteractive(_) => "keyboard-interactive",
        }
    }
}

/// Which methods ssh_config allows, and in what order
/// (`PreferredAuthentications`, `PubkeyAuthentication`,
/// `PasswordAuthentication`).
#[derive(Debug, Clone, Default)]
pub(crate) struct MethodPolicy {
    pub(crate) preferred: Option<Vec<String>>,
    pub(crate) no_pubkey: bool,
    pub(crate) no_password: bool,
}

impl MethodPolicy {
    /// Drops the credentials whose methods are not allowed and orders the
    /// rest by the preferred methods (keeping the caller's order within
    /// one method).
    pub(crate) fn apply(&self, mut credentials: Vec<Credential>) -> Vec<Credential> {
        credentials.retain(|c| match c {
            Credential::Key(..)
            | Credential::Certificate { .. }
            | Credential::AgentCertificate { .. }
            | Credential::Agent(_)
            | Credential::Unusable(_) => !self.no_pubkey,
            Credential::Password(_) => !self.no_password,
            Credential::KeyboardInteractive(_) => true,
        });
        if let Some(preferred) = &self.preferred {
            let rank = |c: &Credential| {
                c.methods()
                    .iter()
                    .filter_map(|m| {
                        let name: &str = m.into();
                        preferred.iter().position(|p| p == name)
                    })
                    .min()
            };
            credentials.retain(|c| rank(c).is_some());
            credentials.sort_by_key(|c| rank(c));
        }
        credentials
    }
}

/// How authentication ended, short of success.
pub(crate) enum AuthFailure {
    /// Every method the server offers was tried and none accepted.
    Rejected { tried: String, allowed: String },
    /// Nothing could be offered (e.g. no agent running).
    NothingToOffer(String),
    /// The session died under us.
    Transport(Option<russh::Error>),
}

/// Asks the server which methods it takes, then tries each credential it
/// offers in order. A `Failure` with the session gone is a dead transport,
/// not a rejection: russh reports both the same way.
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    credentials: &[Credential],
) -> Result<(), AuthFailure> {
    let mut session = Session {
        handle,
        user,
        tried: Vec::new(),
        notes: Vec::new(),
        skipped: false,
        allowed: None,
    };
    let none = session.handle.authenticate_none(user).await;
    if session.outcome(none)? {
        return Ok(());
    }
    for credential in credentials {
        if let Credential::Unusable(note) = credential {
            session.notes.push(note.clone());
            continue;
        }
        if !session.offers(credential.methods()) {
            session.skipped = true;
            session
                .notes
                .push(format!("{} not offered by the server", credential.name()));
            continue;
        }
        if session.try_one(credential).await? {
            return Ok(());
        }
    }
    if session.tried.is_empty() && !session.skipped {
        return Err(AuthFailure::NothingToOffer(session.notes.join("; ")));
    }
    let mut tried = if session.tried.is_empty() {
        "nothing".to_owned()
    } else {
        session.tried.join(", ")
    };
    if !session.notes.is_empty() {
        tried = format!("{tried}; {}", session.notes.join("; "));
    }
    Err(AuthFailure::Rejected {
        tried,
        allowed: session.allowed_names(),
    })
}

struct Session<'a> {
    handle: &'a mut Handle<ClientHandler>,
    user: &'a str,
    /// Methods tried, for the error: `publickey (id_ed25519)`, `password`, ...
    tried: Vec<String>,
    /// Methods that could not be tried, and why.
    notes: Vec<String>,
    /// Whether a credential was skipped because the server does not offer
    /// its method.
    skipped: bool,
    /// What the server last said it would accept.
    allowed: Option<MethodSet>,
}

impl Session<'_> {
    /// Ok(true) when accepted, Ok(false) to go on with the next credential.
    async fn try_one(&mut self, credential: &Credential) -> Result<bool, AuthFailure> {
        match credential {
            Credential::Password(secret) => {
                if self.offers(&[MethodKind::Password]) {
                    self.tried.push("password".into());
                    let result = self
                        .handle
                        .authenticate_password(self.user, secret.0.as_str())
                        .await;
                    if self.outcome(result)? {
                        return Ok(true);
                    }
                }
                if self.offers(&[MethodKind::KeyboardInteractive]) {
                    return self.keyboard_interactive(&Answer::Password(secret)).await;
                }
                Ok(false)
            }
            Credential::KeyboardInteractive(responder) => {
                self.keyboard_interactive(&Answer::Caller(responder)).await
            }
            Credential::Key(key, path) => {
                let hash = self.rsa_hash(key.algorithm()).await?;
                self.tried
                    .push(match path.as_ref().and_then(|p| p.file_name()) {
                        Some(name) => format!("publickey ({})", name.to_string_lossy()),
                        None => "publickey".into(),
                    });
                let result = self
                    .handle
                    .authenticate_publickey(
                        self.user,
                        PrivateKeyWithHashAlg::new(key.clone(), hash),
                    )
                    .await;
                self.outcome(result)
            }
            Credential::Certificate { cert, key, file } => {
                let mut signer = KeySigner(key.clone());
                self.certificate(cert, &file_name(file), &mut signer).await
            }
            Credential::AgentCertificate { cert, file, agent } => {
                self.agent_certificate(cert, file, agent.as_ref()).await
            }
            Credential::Agent(path) => self.agent(path.as_ref()).await,
            // Noted by `authenticate`, never offered.
            Credential::Unusable(_) => Ok(false),
        }
    }

    /// Offers a user certificate, signed for by `signer`. One that is
    /// expired or not yet valid by this machine's clock is offered all the
    /// same, as `ssh` does: the server's clock is the one that counts.
    async fn certificate<S>(
        &mut self,
        cert: &Certificate,
        origin: &str,
        signer: &mut S,
    ) -> Result<bool, AuthFailure>
    where
        S: russh::Signer,
        S::Error: fmt::Display,
    {
        let validity = Validity::of(cert);
        if validity != Validity::Valid {
            tracing::debug!(
                certificate = %crate::text::Escaped(origin),
                key_id = %PeerText::new(cert.key_id()),
                "offering a certificate that is {} by this machine's clock, as ssh does",
                validity.as_str()
            );
        }
        let hash = self.rsa_hash(cert.algorithm()).await?;
        self.tried.push(format!(
            "certificate ({origin}: {})",
            certificate::describe(cert)
        ));
        match self
            .handle
            .authenticate_certificate_with(self.user, cert.clone(), hash, signer)
            .await
        {
            Ok(result) => self.outcome(Ok(result)),
            Err(e) => {
                if self.handle.is_closed() {
                    return Err(AuthFailure::Transport(None));
                }
                self.notes.push(format!(
                    "certificate ({origin}) not signed: {}",
                    PeerText::new(&e.to_string())
                ));
                Ok(false)
            }
        }
    }

    /// Reads an auth result: accepted, rejected, or the transport is gone.
    fn outcome(&mut self, result: Result<AuthResult, russh::Error>) -> Result<bool, AuthFailure> {
        match result {
            Ok(AuthResult::Success) => Ok(true),
            Ok(AuthResult::Failure { .. }) if self.handle.is_closed() => {
                Err(AuthFailure::Transport(None))
            }
            Ok(AuthResult::Failure {
                remaining_methods, ..
            }) => {
                self.allowed = Some(remaining_methods);
                Ok(false)
            }
            Err(e) => Err(AuthFailure::Transport(Some(e))),
        }
    }

    /// Whether the server's last list has any of `methods` (before any
    /// list came, everything is offered).
    fn offers(&self, methods: &[MethodKind]) -> bool {
        self.allowed
            .as_ref()
            .is_none_or(|allowed| methods.iter().any(|m| allowed.contains(m)))
    }

    fn allowed_names(&self) -> String {
        match &self.allowed {
            Some(a) if !a.is_empty() => a.iter().map(<&str>::from).collect::<Vec<_>>().join(","),
            _ => "none".into(),
        }
    }

    async fn rsa_hash(&mut self, algorithm: Algorithm) -> Result<Option<HashAlg>, AuthFailure> {
        if !algorithm.is_rsa() {
            return Ok(None);
        }
        self.handle
            .best_supported_rsa_hash()
            .await
            .map(Option::flatten)
            .map_err(|e| AuthFailure::Transport(Some(e)))
    }

    /// Runs keyboard-interactive rounds, each answered by `answer`, at most
    /// [`MAX_ROUNDS`]. A round it cannot answer ends the attempt; the next
    /// method, if any, starts a fresh request (RFC 4256 §3.3 lets a client
    /// abandon the exchange that way).
    async fn keyboard_interactive(&mut self, answer: &Answer<'_>) -> Result<bool, AuthFailure> {
        self.tried
            .push(format!("keyboard-interactive{}", answer.label()));
        let mut reply = self
            .handle
            .authenticate_keyboard_interactive_start(self.user, None)
            .await;
        for _ in 0..MAX_ROUNDS {
            match reply {
                Ok(KeyboardInteractiveAuthResponse::Success) => return Ok(true),
                Ok(KeyboardInteractiveAuthResponse::Failure {
                    remaining_methods,
                    partial_success,
                }) => {
                    return self.outcome(Ok(AuthResult::Failure {
                        remaining_methods,
                        partial_success,
                    }))
                }
                Ok(KeyboardInteractiveAuthResponse::InfoRequest {
                    name,
                    instructions,
                    prompts,
                }) => {
                    let challenge = Challenge {
                        name,
                        instructions,
                        prompts: prompts
                            .into_iter()
                            .map(|p| Prompt {
                                text: p.prompt,
                                echo: p.echo,
                            })
                            .collect(),
                    };
                    let answers = match answer.answer(&challenge) {
                        Ok(a) => a,
                        Err(why) => {
                            self.notes.push(why);
                            return Ok(false);
                        }
                    };
                    // russh takes the answers by value; ours are wiped here.
                    let sent = answers.iter().map(|a| String::clone(a)).collect();
                    drop(answers);
                    reply = self
                        .handle
                        .authenticate_keyboard_interactive_respond(sent)
                        .await;
                }
                Err(e) => return Err(AuthFailure::Transport(Some(e))),
            }
        }
        self.notes.push(format!(
            "keyboard-interactive: more than {MAX_ROUNDS} rounds of prompts"
        ));
        Ok(false)
    }

    /// The agent at `path` (or `SSH_AUTH_SOCK`) and what it holds; `None`
    /// (noted) if it cannot be asked.
    async fn open_agent(
        &mut self,
        path: Option<&PathBuf>,
    ) -> Option<(AgentClient<AgentStream>, Vec<AgentIdentity>)> {
        let connected = match path {
            Some(p) => AgentClient::connect_uds(p).await,
            None => AgentClient::connect_env().await,
        };
        let mut agent = match connected {
            Ok(a) => a,
            Err(e) => {
                let why = match (e, path) {
                    (russh::keys::Error::EnvVar(_), _) => "SSH_AUTH_SOCK is not set".to_owned(),
                    (russh::keys::Error::IO(io), Some(p)) => {
                        format!("{}: {}", p.display(), crate::text::fmt_io(&io))
                    }
                    (russh::keys::Error::IO(io), None) => crate::text::fmt_io(&io),
                    (other, _) => other.to_string(),
                };
                self.notes.push(format!("agent unavailable: {why}"));
                return None;
            }
        };
        match agent.request_identities().await {
            Ok(ids) => Some((agent, ids)),
            Err(e) => {
                self.notes.push(format!("agent unavailable: {e}"));
                None
            }
        }
    }

    /// A `CertificateFile`'s certificate, signed for by the agent with the
    /// plain key it certifies, as `ssh` does when the key is in the agent.
    async fn agent_certificate(
        &mut self,
        cert: &Certificate,
        file: &Path,
        path: Option<&PathBuf>,
    ) -> Result<bool, AuthFailure> {
        let Some((agent, identities)) = self.open_agent(path).await else {
            return Ok(false);
        };
        let key = identities.into_iter().find_map(|id| match id {
            AgentIdentity::PublicKey { key, .. } if key.key_data() == cert.public_key() => {
                Some(key)
            }
            _ => None,
        });
        let Some(key) = key else {
            self.notes.push(format!(
                "certificate {} skipped: no key file or agent key to sign for it",
                file_name(file)
            ));
            return Ok(false);
        };
        let mut signer = AgentKeySigner { agent, key };
        self.certificate(cert, &file_name(file), &mut signer).await
    }

    async fn agent(&mut self, path: Option<&PathBuf>) -> Result<bool, AuthFailure> {
        let Some((mut agent, identities)) = self.open_agent(path).await else {
            return Ok(false);
        };
        if identities.is_empty() {
            self.notes.push("agent holds no keys".into());
            return Ok(false);
        }
        let certs = identities
            .iter()
            .filter(|id| matches!(id, AgentIdentity::Certificate { .. }))
            .count();
        let keys = identities.len() - certs;
        self.tried.push(match certs {
            0 => format!("agent ({keys} keys)"),
            _ => format!("agent ({keys} keys, {certs} certificates)"),
        });
        // In the agent's order, certificates among the keys, as ssh does.
        for identity in identities {
            if !self.offers(&[MethodKind::PublicKey]) {
                break;
            }
            match identity {
                AgentIdentity::PublicKey { key, .. } => {
                    if self.agent_key(key, &mut agent).await? {
                        return Ok(true);
                    }
                }
                AgentIdentity::Certificate { certificate, .. } => {
                    if let Some(why) = certificate::unusable(&certificate, true) {
                        self.notes.push(format!("agent certificate skipped: {why}"));
                        continue;
                    }
                    if self.certificate(&certificate, "agent", &mut agent).await? {
                        return Ok(true);
                    }
                }
            }
            if self.handle.is_closed() {
                return Err(AuthFailure::Transport(None));
            }
        }
        Ok(false)
    }

    async fn agent_key(
        &mut self,
        key: PublicKey,
        agent: &mut AgentClient<AgentStream>,
    ) -> Result<bool, AuthFailure> {
        let hash = self.rsa_hash(key.algorithm()).await?;
        match self
            .handle
            .authenticate_publickey_with(self.user, key, hash, agent)
            .await
        {
            Ok(result) => self.outcome(Ok(result)),
            // The agent would not sign with this key; try the next.
            Err(e) => {
                tracing::debug!(error = %crate::text::Escaped(&e), "agent did not sign");
                Ok(false)
            }
        }
    }
}

/// The agent's connection.
type AgentStream = tokio::net::UnixStream;

/// Signs for a certificate with the agent's plain key that it certifies
/// (the agent signs only for certificates it holds itself).
struct AgentKeySigner {
    agent: AgentClient<AgentStream>,
    key: PublicKey,
}

impl russh::Signer for AgentKeySigner {
    type Error = russh::AgentAuthError;

    async fn auth_sign(
        &mut self,
        _cert: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, Self::Error> {
        let plain = AgentIdentity::PublicKey {
            key: self.key.clone(),
            comment: String::new(),
        };
        Ok(self.agent.sign_request(&plain, hash_alg, to_sign).await?)
    }
}

/// Who answers keyboard-interactive prompts.
enum Answer<'a> {
    /// The password, to a password prompt only.
    Password(&'a Secret),
    Caller(&'a Responder),
}

impl Answer<'_> {
    fn label(&self) -> &'static str {
        match self {
            Answer::Password(_) => " (password)",
            Answer::Caller(_) => "",
        }
    }

    /// One wiped answer per prompt, or why the round cannot be answered
    /// (naming the prompt, never an answer).
    fn answer(&self, challenge: &Challenge) -> Result<Vec<Zeroizing<String>>, String> {
        let prompts = challenge.prompts();
        match self {
            Answer::Password(_) if prompts.is_empty() => Ok(Vec::new()),
            Answer::Password(secret) => match prompts {
                [only] if is_password_prompt(only) => Ok(vec![secret.0.clone()]),
                _ => Err(format!(
                    "keyboard-interactive: not a password prompt: {}",
                    crate::text::PeerText::new(
                        &prompts
                            .iter()
                            .map(|p| p.text())
                            .collect::<Vec<_>>()
                            .join(" | ")
                    )
                )),
            },
            Answer::Caller(responder) => match (responder.0)(challenge) {
                Some(answers) if answers.len() == prompts.len() => {
                    Ok(answers.into_iter().map(Zeroizing::new).collect())
                }
                Some(answers) => {
                    let count = answers.len();
                    drop(answers.into_iter().map(Zeroizing::new).collect::<Vec<_>>());
                    Err(format!(
                        "keyboard-interactive: {count} answers to {} prompts",
                        prompts.len()
                    ))
                }
                None => Err("keyboard-interactive: the caller gave up".into()),
            },
        }
    }
}

/// One hidden prompt that asks for a password (PAM's `Password: `,
/// OpenSSH's `user@host's password: `), in any case.
fn is_password_prompt(prompt: &Prompt) -> bool {
    !prompt.echo() && prompt.text().to_ascii_lowercase().contains("password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let a = Auth::password("s3cret-pw");
        let b = Auth::key_file("/k", Some("s3cret-pp"))
            .or(Auth::certificate("/k2", "/k2-cert.pub", Some("s3cret-pp2")))
            .or(Auth::agent())
            .or(a.clone())
            .or(Auth::keyboard_interactive(|_| {
                Some(vec!["s3cret-otp".into()])
            }));
        let shown = format!("{a:?} {b:?} {a:#?} {b:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("/k")
                && shown.contains("/k2-cert.pub")
                && shown.contains("redacted")
                && shown.contains("Agent"),
            "{shown}"
        );
    }

    #[test]
    fn or_keeps_the_order() {
        let a = Auth::password("1")
            .or(Auth::agent_at("/a"))
            .or(Auth::key_file("/k", None));
        let kinds: Vec<&str> = a
            .methods
            .iter()
            .map(|m| match m {
                Method::Password(_) => "password",
                Method::Agent(_) => "agent",
                Method::KeyFile { .. } => "keyfile",
                Method::CertificateFile(_) => "certificatefile",
                Method::Certificate { .. } => "certificate",
                Method::KeyText { .. } => "keytext",
                Method::Key(_) => "key",
                Method::KeyboardInteractive(_) => "kbd",
            })
            .collect();
        assert_eq!(kinds, ["password", "agent", "keyfile"]);
    }

    fn challenge(prompts: &[(&str, bool)]) -> Challenge {
        Challenge {
            name: String::new(),
            instructions: String::new(),
            prompts: prompts
                .iter()
                .map(|&(text, echo)| Prompt {
                    text: text.into(),
                    echo,
                })
                .collect(),
        }
    }

    #[test]
    fn a_password_answers_only_a_password_prompt() {
        let secret = Secret(Zeroizing::new("pw-77".into()));
        let answer = Answer::Password(&secret);
        for ok in ["Password: ", "alice@h's password: ", "PASSWORD for alice:"] {
            let a = answer.answer(&challenge(&[(ok, false)])).unwrap();
            assert_eq!(a.len(), 1, "{ok}");
            assert_eq!(a[0].as_str(), "pw-77");
        }
        assert!(answer.answer(&challenge(&[])).unwrap().is_empty());
        for refused in [
            vec![("Verification code: ", false)],
            vec![("Duo passcode: ", false)],
            vec![("Password: ", true)],
            vec![("Passwort: ", false)],
            vec![("Password: ", false), ("Verification code: ", false)],
        ] {
            let why = answer.answer(&challenge(&refused)).unwrap_err();
            assert!(why.contains(refused[0].0.trim()), "{why}");
            assert!(!why.contains("pw-77"), "{why}");
        }
    }

    #[test]
    fn the_caller_answers_every_prompt_or_none() {
        let responder = Responder(Arc::new(|c: &Challenge| {
            Some(
                c.prompts()
                    .iter()
                    .map(|p| format!("a:{}", p.text()))
                    .collect(),
            )
        }));
        let a = Answer::Caller(&responder)
            .answer(&challenge(&[("x", true), ("y", false)]))
            .unwrap();
        assert_eq!(
            a.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["a:x", "a:y"]
        );
        let short = Responder(Arc::new(|_: &Challenge| Some(vec![])));
        assert!(Answer::Caller(&short)
            .answer(&challenge(&[("x", true)]))
            .is_err());
    }
}

/// ssh_config's `CertificateFile`, which ssh_config's side will map onto
/// [`Auth::certificate_file`] and [`Auth::key_file_alone`]: the same
/// verdicts as `ssh -o CertificateFile=` against a certificate-only sshd.
#[cfg(test)]
mod certificate_file_tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::Auth;
    use crate::testing::{find_program, ssh_keygen, ssh_keygen_certify, SshAgent, Sshd};
    use crate::{Dialer, HostKeys};

    fn have_openssh() -> bool {
        let ok = ["ssh", "ssh-add", "ssh-agent", "ssh-keygen", "sshd"]
            .iter()
            .all(|p| find_program(p).is_ok());
        assert!(
            ok || std::env::var_os("CI").is_none(),
            "OpenSSH required in CI"
        );
        ok
    }

    /// Whether the real ssh gets in with these arguments (and this agent).
    fn ssh(sshd: &Sshd, known: &Path, args: &[String], agent: Option<&Path>) -> bool {
        let mut command = std::process::Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "KexAlgorithms=curve25519-sha256"])
            .args(args)
            .args(["-p", &sshd.addr().port().to_string()])
            .arg(format!("{}@127.0.0.1", sshd.user()))
            .arg("true")
            .stdin(std::process::Stdio::null());
        match agent {
            Some(socket) => command.env("SSH_AUTH_SOCK", socket),
            None => command.env_remove("SSH_AUTH_SOCK"),
        };
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("Permission denied"),
            "{stderr}"
        );
        out.status.success()
    }

    #[tokio::test]
    async fn certificate_files_pair_with_keys_as_ssh_does() {
        if !have_openssh() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = |name: &str| dir.path().join(name);
        ssh_keygen(&d("ca"), "ed25519", "").unwrap();
        let sshd = Sshd::builder()
            .trusted_user_ca_keys(&d("ca.pub"))
            .config_line("AuthorizedKeysFile none")
            .start()
            .unwrap();
        let known = sshd
            .write_file("known_hosts", &sshd.known_hosts_line())
            .unwrap();
        let user = sshd.user().to_owned();
        let certify = |key: &Path| {
            ssh_keygen_certify(&d("ca"), &key.with_extension("pub"), "cf", &user, "-5m:+1h")
                .unwrap()
        };
        // `key`'s certificate lives elsewhere; `key2`'s is beside it.
        for name in ["key", "key2", "other"] {
            ssh_keygen(&d(name), "ed25519", "").unwrap();
        }
        let cert = d("elsewhere-cert.pub");
        std::fs::rename(certify(&d("key")), &cert).unwrap();
        certify(&d("key2"));
        let with_key = SshAgent::start().unwrap();
        with_key.add(&d("key")).unwrap();
        let with_other = SshAgent::start().unwrap();
        with_other.add(&d("other")).unwrap();

        let s = |p: PathBuf| p.display().to_string();
        let only = |key: &str| {
            vec![
                "-o".to_owned(),
                "IdentitiesOnly=yes".into(),
                "-i".into(),
                s(d(key)),
            ]
        };
        let no_file = vec!["-o".to_owned(), format!("IdentityFile={}", s(d("none")))];
        struct Case<'a> {
            name: &'a str,
            args: Vec<String>,
            agent: Option<&'a SshAgent>,
            cert: PathBuf,
            auth: Auth,
            note: &'a str,
        }
        let cases = [
            Case {
                name: "signed by the key file",
                args: only("key"),
                agent: None,
                cert: cert.clone(),
                auth: Auth::certificate_file(&cert).or(Auth::key_file_alone(d("key"), None)),
                note: "",
            },
            Case {
                name: "signed by the agent",
                args: no_file.clone(),
                agent: Some(&with_key),
                cert: cert.clone(),
                auth: Auth::certificate_file(&cert).or(Auth::agent_at(with_key.socket())),
                note: "",
            },
            Case {
                name: "no key for it",
                args: only("other"),
                agent: None,
                cert: cert.clone(),
                auth: Auth::certificate_file(&cert).or(Auth::key_file_alone(d("other"), None)),
                note: "certificate elsewhere-cert.pub skipped: no key file or agent to sign for it",
            },
            Case {
                name: "the agent lacks its key",
                args: no_file.clone(),
                agent: Some(&with_other),
                cert: cert.clone(),
                auth: Auth::certificate_file(&cert).or(Auth::agent_at(with_other.socket())),
                note: "certificate elsewhere-cert.pub skipped: no key file or agent key to sign for it",
            },
            Case {
                name: "a missing CertificateFile still hides the one beside the key",
                args: only("key2"),
                agent: None,
                cert: d("missing-cert.pub"),
                auth: Auth::certificate_file(d("missing-cert.pub"))
                    .or(Auth::key_file_alone(d("key2"), None)),
                note: "tried publickey (key2); server allows",
            },
        ];
        for Case {
            name,
            mut args,
            agent,
            cert,
            auth,
            note,
        } in cases
        {
            args.extend(["-o".into(), format!("CertificateFile={}", s(cert))]);
            let theirs = ssh(&sshd, &known, &args, agent.map(SshAgent::socket));
            let ours = Dialer::builder()
                .timeout(Duration::from_secs(10))
                .host_keys(HostKeys::known_hosts(&known))
                .build()
                .dial(sshd.addr(), sshd.user(), auth)
                .await;
            match &ours {
                Ok(_) => {}
                Err(e) => assert!(
                    e.is_auth_rejected() && e.to_string().contains(note),
                    "{name}: {e}"
                ),
            }
            assert_eq!(theirs, ours.is_ok(), "{name}: ssh and ssh-dial differ");
        }
    }
}
