//! Readying an [`Auth`]'s credentials: key files read and decrypted on the
//! blocking pool, certificates read and paired with the keys that sign for
//! them, as `ssh` pairs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::{Certificate, HashAlg, PrivateKey};

use crate::certificate::{self};
use crate::error::Kind;

use super::{Auth, Credential, Method, Secret};

impl Auth {
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

pub(super) fn file_name(path: &Path) -> String {
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
