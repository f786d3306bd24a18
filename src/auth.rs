//! Credentials, and user authentication over an established session.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};

use crate::error::Kind;
use crate::handshake::ClientHandler;

/// How to authenticate. Cheap to clone.
///
/// `Debug` shows the method and the key path, never a password or a
/// passphrase; neither appears in logs or errors.
///
/// # Examples
///
/// ```
/// use ssh_dial::Auth;
///
/// let by_key = Auth::key_file("/home/deploy/.ssh/id_ed25519", None);
/// let by_password = Auth::password("hunter2");
/// assert!(!format!("{by_password:?}").contains("hunter2"));
/// # let _ = by_key;
/// ```
#[derive(Clone)]
pub struct Auth {
    method: Arc<Method>,
}

pub(crate) enum Method {
    Password(Secret),
    KeyFile {
        path: PathBuf,
        passphrase: Option<Secret>,
    },
    Key(Arc<PrivateKey>),
}

/// A string kept out of `Debug` and `Display`.
pub(crate) struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.method {
            Method::Password(p) => f.debug_tuple("Auth::Password").field(p).finish(),
            Method::KeyFile { path, passphrase } => f
                .debug_struct("Auth::KeyFile")
                .field("path", path)
                .field("passphrase", passphrase)
                .finish(),
            Method::Key(k) => f
                .debug_struct("Auth::Key")
                .field("algorithm", &k.algorithm().as_str())
                .finish_non_exhaustive(),
        }
    }
}

impl Auth {
    fn new(method: Method) -> Self {
        Auth {
            method: Arc::new(method),
        }
    }

    /// Password authentication.
    pub fn password(password: impl Into<String>) -> Self {
        Auth::new(Method::Password(Secret(password.into())))
    }

    /// Public key authentication with an OpenSSH or PEM private key file,
    /// decrypted with `passphrase` if it is encrypted.
    ///
    /// The file is read at the start of each dial, before any network
    /// traffic, so an unreadable key fails fast. To read it once for many
    /// dials, load it yourself and use [`Auth::key`].
    pub fn key_file(path: impl Into<PathBuf>, passphrase: Option<&str>) -> Self {
        Auth::new(Method::KeyFile {
            path: path.into(),
            passphrase: passphrase.map(|p| Secret(p.to_owned())),
        })
    }

    /// Public key authentication with a key already in memory. RSA keys
    /// sign with the strongest of `rsa-sha2-512`, `rsa-sha2-256` and
    /// `ssh-rsa` that the server accepts.
    pub fn key(key: PrivateKey) -> Self {
        Auth::new(Method::Key(Arc::new(key)))
    }

    /// Readies the credentials: reads and decrypts a key file. Runs on the
    /// blocking pool, since decrypting an OpenSSH key is deliberately slow.
    pub(crate) async fn load(&self) -> Result<Credentials, Kind> {
        match &*self.method {
            Method::Password(_) => Ok(Credentials::Password(self.method.clone())),
            Method::Key(k) => Ok(Credentials::Key(k.clone())),
            Method::KeyFile { path, .. } => {
                let method = self.method.clone();
                let loaded = tokio::task::spawn_blocking(move || {
                    let Method::KeyFile { path, passphrase } = &*method else {
                        unreachable!("matched above")
                    };
                    russh::keys::load_secret_key(path, passphrase.as_ref().map(|p| p.0.as_str()))
                })
                .await;
                match loaded {
                    Ok(Ok(key)) => Ok(Credentials::Key(Arc::new(key))),
                    Ok(Err(source)) => Err(Kind::Key {
                        path: path.display().to_string(),
                        source,
                    }),
                    Err(join) => Err(Kind::Io(std::io::Error::other(join))),
                }
            }
        }
    }
}

/// Credentials ready to send.
pub(crate) enum Credentials {
    /// Holds the `Method::Password` it came from, so the secret is not copied.
    Password(Arc<Method>),
    Key(Arc<PrivateKey>),
}

impl Credentials {
    fn method_name(&self) -> &'static str {
        match self {
            Credentials::Password(_) => "password",
            Credentials::Key(_) => "publickey",
        }
    }
}

/// How authentication ended, short of success.
pub(crate) enum AuthFailure {
    /// The server said no.
    Rejected { tried: String, allowed: String },
    /// The session died under us.
    Transport(Option<russh::Error>),
}

/// Authenticates `user`. A `Failure` with the session gone is a dead
/// transport, not a rejection: russh reports both the same way.
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    credentials: &Credentials,
) -> Result<(), AuthFailure> {
    let result = match credentials {
        Credentials::Password(method) => {
            let Method::Password(secret) = &**method else {
                unreachable!("Credentials::Password holds a password")
            };
            handle.authenticate_password(user, secret.0.as_str()).await
        }
        Credentials::Key(key) => {
            let hash = if key.algorithm().is_rsa() {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| AuthFailure::Transport(Some(e)))?
                    .flatten()
            } else {
                None
            };
            handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
        }
    };
    match result {
        Ok(AuthResult::Success) => Ok(()),
        Ok(AuthResult::Failure { .. }) if handle.is_closed() => Err(AuthFailure::Transport(None)),
        Ok(AuthResult::Failure {
            remaining_methods, ..
        }) => {
            let allowed: Vec<&str> = remaining_methods.iter().map(<&str>::from).collect();
            Err(AuthFailure::Rejected {
                tried: credentials.method_name().to_owned(),
                allowed: if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(",")
                },
            })
        }
        Err(e) => Err(AuthFailure::Transport(Some(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let a = Auth::password("s3cret-pw");
        let b = Auth::key_file("/k", Some("s3cret-pp"));
        let shown = format!("{a:?} {b:?} {a:#?} {b:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("/k") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
