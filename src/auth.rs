//! Credentials, and user authentication over an established session.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use russh::client::{AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::MethodKind;
use zeroize::Zeroizing;

use crate::error::Kind;
use crate::handshake::ClientHandler;

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

pub(crate) enum Method {
    Password(Secret),
    KeyFile {
        path: PathBuf,
        passphrase: Option<Secret>,
    },
    Key(Arc<PrivateKey>),
    /// The agent at this socket, or at `SSH_AUTH_SOCK` when `None`.
    Agent(Option<PathBuf>),
}

/// A string kept out of `Debug` and `Display`, and zeroed when dropped.
pub(crate) struct Secret(Zeroizing<String>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Password(p) => f.debug_tuple("Password").field(p).finish(),
            Method::KeyFile { path, passphrase } => f
                .debug_struct("KeyFile")
                .field("path", path)
                .field("passphrase", passphrase)
                .finish(),
            Method::Key(k) => f
                .debug_struct("Key")
                .field("algorithm", &k.algorithm().as_str())
                .finish_non_exhaustive(),
            Method::Agent(path) => f.debug_tuple("Agent").field(path).finish(),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Auth").field(&self.methods).finish()
    }
}

impl Auth {
    fn one(method: Method) -> Self {
        Auth {
            methods: Arc::new(vec![method]),
        }
    }

    /// Password authentication. If the server does not take `password` but
    /// offers `keyboard-interactive`, as PAM-backed servers often do, the
    /// password answers its prompts instead.
    pub fn password(password: impl Into<String>) -> Self {
        Auth::one(Method::Password(Secret(Zeroizing::new(password.into()))))
    }

    /// Public key authentication with an OpenSSH or PEM private key file
    /// (Ed25519, ECDSA or RSA), decrypted with `passphrase` if it is encrypted.
    ///
    /// The file is read at the start of each dial, before any network
    /// traffic, so an unreadable key or a wrong passphrase fails fast. To
    /// read it once for many dials, load it yourself and use [`Auth::key`].
    pub fn key_file(path: impl Into<PathBuf>, passphrase: Option<&str>) -> Self {
        Auth::one(Method::KeyFile {
            path: path.into(),
            passphrase: passphrase.map(|p| Secret(Zeroizing::new(p.to_owned()))),
        })
    }

    /// Public key authentication with a key already in memory. RSA keys
    /// sign with the strongest of `rsa-sha2-512`, `rsa-sha2-256` and
    /// `ssh-rsa` that the server accepts.
    pub fn key(key: PrivateKey) -> Self {
        Auth::one(Method::Key(Arc::new(key)))
    }

    /// Every key held by the ssh-agent at `SSH_AUTH_SOCK`, tried in the
    /// order the agent lists them. The variable is read at each dial.
    pub fn agent() -> Self {
        Auth::one(Method::Agent(None))
    }

    /// Every key held by the ssh-agent listening on this socket.
    pub fn agent_at(socket: impl Into<PathBuf>) -> Self {
        Auth::one(Method::Agent(Some(socket.into())))
    }

    /// `self`'s methods, then `other`'s, all within the dial's one deadline.
    /// The first the server accepts wins; a server asking for more (partial
    /// success) gets the next.
    pub fn or(self, other: Auth) -> Self {
        let mut methods = Arc::unwrap_or_clone(self.methods);
        match Arc::try_unwrap(other.methods) {
            Ok(more) => methods.extend(more),
            Err(shared) => methods.extend(shared.iter().map(Method::share)),
        }
        Auth {
            methods: Arc::new(methods),
        }
    }

    /// Readies the credentials: reads and decrypts key files, on the
    /// blocking pool, since decrypting an OpenSSH key is deliberately slow.
    pub(crate) async fn load(&self) -> Result<Vec<Credential>, Kind> {
        let mut ready = Vec::with_capacity(self.methods.len());
        for (index, method) in self.methods.iter().enumerate() {
            ready.push(match method {
                Method::Password(_) => Credential::Password {
                    auth: self.clone(),
                    index,
                },
                Method::Key(k) => Credential::Key(k.clone(), None),
                Method::Agent(path) => Credential::Agent(path.clone()),
                Method::KeyFile { path, .. } => {
                    let auth = self.clone();
                    let loaded = tokio::task::spawn_blocking(move || {
                        let Method::KeyFile { path, passphrase } = &auth.methods[index] else {
                            unreachable!("index names a key file")
                        };
                        russh::keys::load_secret_key(
                            path,
                            passphrase.as_ref().map(|p| p.0.as_str()),
                        )
                    })
                    .await;
                    match loaded {
                        Ok(Ok(key)) => Credential::Key(Arc::new(key), Some(path.clone())),
                        Ok(Err(source)) => {
                            return Err(Kind::Key {
                                path: path.display().to_string(),
                                source,
                            })
                        }
                        Err(join) => return Err(Kind::Io(std::io::Error::other(join))),
                    }
                }
            });
        }
        Ok(ready)
    }
}

impl Method {
    /// A copy for another [`Auth`]; secrets are copied into fresh
    /// zeroizing buffers.
    fn share(&self) -> Method {
        match self {
            Method::Password(p) => Method::Password(Secret(p.0.clone())),
            Method::KeyFile { path, passphrase } => Method::KeyFile {
                path: path.clone(),
                passphrase: passphrase.as_ref().map(|p| Secret(p.0.clone())),
            },
            Method::Key(k) => Method::Key(k.clone()),
            Method::Agent(p) => Method::Agent(p.clone()),
        }
    }
}

impl Clone for Method {
    fn clone(&self) -> Self {
        self.share()
    }
}

/// A credential ready to send.
pub(crate) enum Credential {
    /// The password stays in its `Auth`, at `index`, so it is not copied.
    Password {
        auth: Auth,
        index: usize,
    },
    /// A key, and the file it came from.
    Key(Arc<PrivateKey>, Option<PathBuf>),
    Agent(Option<PathBuf>),
}

/// How authentication ended, short of success.
pub(crate) enum AuthFailure {
    /// Every method was tried and none accepted.
    Rejected { tried: String, allowed: String },
    /// Nothing could be offered (e.g. no agent running).
    NothingToOffer(String),
    /// The session died under us.
    Transport(Option<russh::Error>),
}

/// Tries each credential in order. A `Failure` with the session gone is a
/// dead transport, not a rejection: russh reports both the same way.
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
        allowed: None,
    };
    for credential in credentials {
        if session.try_one(credential).await? {
            return Ok(());
        }
    }
    if session.tried.is_empty() {
        return Err(AuthFailure::NothingToOffer(session.notes.join("; ")));
    }
    let mut tried = session.tried.join(", ");
    if !session.notes.is_empty() {
        tried = format!("{tried}; {}", session.notes.join("; "));
    }
    Err(AuthFailure::Rejected {
        tried,
        allowed: session.allowed.unwrap_or_else(|| "none".into()),
    })
}

struct Session<'a> {
    handle: &'a mut Handle<ClientHandler>,
    user: &'a str,
    /// Methods tried, for the error: `publickey (id_ed25519)`, `password`, ...
    tried: Vec<String>,
    /// Methods that could not be tried, and why.
    notes: Vec<String>,
    /// What the server last said it would accept.
    allowed: Option<String>,
}

impl Session<'_> {
    /// Ok(true) when accepted, Ok(false) to go on with the next credential.
    async fn try_one(&mut self, credential: &Credential) -> Result<bool, AuthFailure> {
        match credential {
            Credential::Password { auth, index } => {
                let Method::Password(secret) = &auth.methods[*index] else {
                    unreachable!("index names a password")
                };
                self.tried.push("password".into());
                let result = self
                    .handle
                    .authenticate_password(self.user, secret.0.as_str())
                    .await;
                if self.outcome(result)? {
                    return Ok(true);
                }
                if self.allows(MethodKind::KeyboardInteractive) {
                    return self.keyboard_interactive(secret.0.as_str()).await;
                }
                Ok(false)
            }
            Credential::Key(key, path) => {
                let hash = self.rsa_hash(key.public_key()).await?;
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
            Credential::Agent(path) => self.agent(path.as_ref()).await,
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
                let allowed: Vec<&str> = remaining_methods.iter().map(<&str>::from).collect();
                self.allowed = Some(if allowed.is_empty() {
                    "none".into()
                } else {
                    allowed.join(",")
                });
                Ok(false)
            }
            Err(e) => Err(AuthFailure::Transport(Some(e))),
        }
    }

    fn allows(&self, method: MethodKind) -> bool {
        let name: &str = (&method).into();
        self.allowed
            .as_deref()
            .is_some_and(|a| a.split(',').any(|m| m == name))
    }

    async fn rsa_hash(&mut self, key: &PublicKey) -> Result<Option<HashAlg>, AuthFailure> {
        if !key.algorithm().is_rsa() {
            return Ok(None);
        }
        self.handle
            .best_supported_rsa_hash()
            .await
            .map(Option::flatten)
            .map_err(|e| AuthFailure::Transport(Some(e)))
    }

    /// Answers every hidden prompt with the password, at most a few rounds.
    async fn keyboard_interactive(&mut self, password: &str) -> Result<bool, AuthFailure> {
        self.tried.push("keyboard-interactive".into());
        let mut reply = self
            .handle
            .authenticate_keyboard_interactive_start(self.user, None)
            .await;
        for _ in 0..5 {
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
                Ok(KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. }) => {
                    let answers = prompts
                        .iter()
                        .map(|p| {
                            if p.echo {
                                String::new()
                            } else {
                                password.to_owned()
                            }
                        })
                        .collect();
                    reply = self
                        .handle
                        .authenticate_keyboard_interactive_respond(answers)
                        .await;
                }
                Err(e) => return Err(AuthFailure::Transport(Some(e))),
            }
        }
        self.notes
            .push("keyboard-interactive: too many prompts".into());
        Ok(false)
    }

    async fn agent(&mut self, path: Option<&PathBuf>) -> Result<bool, AuthFailure> {
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
                        format!("{}: {}", p.display(), crate::error::fmt_io(&io))
                    }
                    (russh::keys::Error::IO(io), None) => crate::error::fmt_io(&io),
                    (other, _) => other.to_string(),
                };
                self.notes.push(format!("agent unavailable: {why}"));
                return Ok(false);
            }
        };
        let identities = match agent.request_identities().await {
            Ok(ids) => ids,
            Err(e) => {
                self.notes.push(format!("agent unavailable: {e}"));
                return Ok(false);
            }
        };
        let keys: Vec<PublicKey> = identities
            .into_iter()
            .filter_map(|id| match id {
                AgentIdentity::PublicKey { key, .. } => Some(key),
                AgentIdentity::Certificate { .. } => None,
            })
            .collect();
        if keys.is_empty() {
            self.notes.push("agent holds no keys".into());
            return Ok(false);
        }
        self.tried.push(format!("agent ({} keys)", keys.len()));
        for key in keys {
            let hash = self.rsa_hash(&key).await?;
            match self
                .handle
                .authenticate_publickey_with(self.user, key, hash, &mut agent)
                .await
            {
                Ok(result) => {
                    if self.outcome(Ok(result))? {
                        return Ok(true);
                    }
                }
                // The agent would not sign with this key; try the next.
                Err(e) => tracing::debug!(error = %e, "agent did not sign"),
            }
            if self.handle.is_closed() {
                return Err(AuthFailure::Transport(None));
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let a = Auth::password("s3cret-pw");
        let b = Auth::key_file("/k", Some("s3cret-pp"))
            .or(Auth::agent())
            .or(a.clone());
        let shown = format!("{a:?} {b:?} {a:#?} {b:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("/k") && shown.contains("redacted") && shown.contains("Agent"),
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
                Method::Key(_) => "key",
            })
            .collect();
        assert_eq!(kinds, ["password", "agent", "keyfile"]);
    }
}
