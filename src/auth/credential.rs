//! A credential ready to send, and the methods ssh_config allows.

use std::path::PathBuf;
use std::sync::Arc;

use russh::keys::{Certificate, PrivateKey};
use russh::MethodKind;

use super::{Responder, Secret};

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
    pub(super) fn methods(&self) -> &'static [MethodKind] {
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

    pub(super) fn name(&self) -> &'static str {
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
