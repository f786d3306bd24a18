//! Credentials, and user authentication over an established session.
//!
//! Like OpenSSH, a dial first asks the server which methods it takes (a
//! `none` request) and offers only those, so that a password never reaches
//! a server that does not ask for one and a long list of keys does not run
//! into `MaxAuthTries` or a lockout counter on a method the server refuses.
//!
//! `mod.rs` holds [`Auth`], what a caller builds; `load.rs` readies its
//! credentials (key files read and decrypted, certificates paired with
//! their keys); `credential.rs` is a credential ready to send and the
//! methods ssh_config allows; `session.rs` offers them to the server.

mod credential;
mod load;
mod session;
#[cfg(test)]
mod tests;

pub(crate) use credential::{Credential, MethodPolicy};
pub(crate) use session::{authenticate, AuthFailure};

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use russh::keys::PrivateKey;
use zeroize::Zeroizing;

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
    #[must_use]
    pub fn or(self, other: Auth) -> Self {
        let mut methods = Arc::unwrap_or_clone(self.methods);
        methods.extend(other.methods.iter().cloned());
        Auth {
            methods: Arc::new(methods),
        }
    }
}
