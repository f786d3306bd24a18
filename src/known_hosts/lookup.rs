//! Lookups: the lines that name a host, and what they say about the key
//! it offered (OpenSSH's `check_key_in_hostkeys`), certificates included.

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};

use super::index::Indexed;
use super::line::Line;
use super::{Entry, Found, Marker, Offer, Status};

impl Found {
    /// Reads `text` (one file, `file` being its index) for the lines that
    /// name `lookup` (already in [`host_port`] spelling) and appends them.
    /// Returns whether the file has any line that is not blank or a comment.
    #[cfg(test)]
    pub(super) fn load(&mut self, text: &[u8], lookup: &str, file: usize) -> bool {
        let indexed = Indexed::new(text.to_vec());
        self.load_indexed(&indexed, lookup, file)
    }

    /// As [`load`](Self::load), from a file indexed once: only the lines
    /// that can name `lookup` are looked at.
    pub(crate) fn load_indexed(&mut self, file_lines: &Indexed, lookup: &str, file: usize) -> bool {
        for index in file_lines.candidates(lookup) {
            let (number, line) = file_lines.line(index);
            let Some(Ok(parsed)) = Line::parse(line) else {
                continue;
            };
            if !parsed.names(lookup) {
                continue;
            }
            match parsed.key() {
                Some(key) => self.entries.push(Entry {
                    file,
                    line: number,
                    marker: parsed.marker,
                    key,
                }),
                None => tracing::debug!(
                    line = number,
                    "skipping known_hosts line with an unreadable key"
                ),
            }
        }
        file_lines.any
    }

    /// OpenSSH's `check_key_in_hostkeys`: plain keys are looked up among
    /// plain lines, certificates among `@cert-authority` lines, and either
    /// is revoked by an `@revoked` line for its key (or its authority).
    pub(crate) fn check(&self, offer: Offer<'_>) -> Status {
        let want = match offer {
            Offer::Plain(_) => Marker::None,
            Offer::Certificate(_) => Marker::CertAuthority,
        };
        let mut status = Status::New;
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.marker != want {
                continue;
            }
            match offer {
                Offer::Certificate(cert) => {
                    if entry.key.key_data() == cert.signature_key() {
                        status = Status::Ok(i);
                        break;
                    }
                }
                Offer::Plain(key) => {
                    if entry.key.key_data() == key.key_data() {
                        status = Status::Ok(i);
                        break;
                    }
                    status = Status::Changed(i);
                }
            }
        }
        let revoked = match offer {
            Offer::Plain(key) => self.revoked(key.key_data(), None),
            Offer::Certificate(cert) => self.revoked(cert.public_key(), Some(cert.signature_key())),
        };
        match revoked {
            Some(i) => Status::Revoked(i),
            None => status,
        }
    }

    fn revoked(
        &self,
        key: &russh::keys::ssh_key::public::KeyData,
        authority: Option<&russh::keys::ssh_key::public::KeyData>,
    ) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.marker == Marker::Revoked
                && (e.key.key_data() == key || Some(e.key.key_data()) == authority)
        })
    }

    /// OpenSSH's `lookup_key_in_hostkeys_by_type`: whether a plain line
    /// lists a key of this algorithm's type (for ECDSA, of its curve) for
    /// the host, and that key is not revoked.
    pub(crate) fn knows_type(&self, algorithm: &Algorithm) -> bool {
        self.entries
            .iter()
            .find(|e| e.marker == Marker::None && same_type(&e.key.algorithm(), algorithm))
            .is_some_and(|e| self.revoked(e.key.key_data(), None).is_none())
    }

    /// Whether an `@cert-authority` line names the host.
    pub(crate) fn has_authority(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.marker == Marker::CertAuthority)
    }
}

/// Whether two algorithms have the same key type: every RSA signature
/// algorithm uses an RSA key.
pub(crate) fn same_type(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}

/// Why a host certificate that a trusted authority signed is still not
/// good for `host` (as dialed, lowercased) at `now`, if it is not
/// (OpenSSH's `sshkey_cert_check_host`).
pub(crate) fn certificate_problem(
    cert: &Certificate,
    authority: &PublicKey,
    host: &str,
    now_unix: u64,
) -> Option<&'static str> {
    let ca = authority.fingerprint(HashAlg::Sha256);
    if cert.validate_at(now_unix, [&ca]).is_err() {
        Some("bad signature or outside its validity period")
    } else if cert.cert_type() != CertType::Host {
        Some("not a host certificate")
    } else if !cert.valid_principals().is_empty()
        && !cert.valid_principals().iter().any(|p| p == host)
    {
        Some("not valid for this host name")
    } else if !cert.critical_options().is_empty() {
        Some("has critical options")
    } else if cert.signature().algorithm() == (Algorithm::Rsa { hash: None }) {
        Some("is signed with ssh-rsa (SHA-1), which OpenSSH no longer accepts")
    } else {
        None
    }
}
