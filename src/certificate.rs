//! OpenSSH user certificates: reading a `-cert.pub` file, telling whether
//! ssh-dial can use one, naming one in an error, and signing for one with
//! a key in memory.
//!
//! Why a module of its own: a certificate carries text its issuer chose
//! (the key id, the principals), shown only escaped, and validity times
//! that the client does not enforce. OpenSSH's `ssh` offers an expired or
//! not yet valid certificate all the same and leaves the verdict to the
//! server, whose clock is the one that counts; ssh-dial does as `ssh` does
//! and says so in a debug line (the level at which `ssh -v` lists what it
//! offers), and in the error when the server turns it down. And russh
//! signs a certificate from a key file only as `ssh-rsa` (SHA-1) for RSA,
//! which OpenSSH servers refuse since 8.8, so certificates are signed here,
//! with the hash the server asks for.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use russh::keys::ssh_key::private::KeypairData;
use russh::keys::ssh_key::Certificate;
use russh::keys::{Algorithm, HashAlg, PrivateKey};

use crate::text::PeerText;

/// The largest certificate file read, so that a wrong path (a log, a
/// device) fails fast: a 16,384-bit RSA certificate with a thousand
/// principals is still well under 100 KiB.
const MAX_FILE: u64 = 1 << 20;

/// A certificate may certify a key that is itself a certificate only this
/// deep; ssh-key decodes the chain recursively.
const MAX_NESTING: usize = 8;

/// Reads the OpenSSH certificate in `path` (`ssh-ed25519-cert-v01@openssh.com
/// AAAA... comment`). The error says why, in a phrase.
pub(crate) fn read(path: &Path) -> Result<Certificate, String> {
    let meta = std::fs::metadata(path).map_err(|e| crate::text::fmt_io(&e))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE + 1).read_to_string(&mut text))
        .map_err(|e| crate::text::fmt_io(&e))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    parse(&text)
}

/// Parses a certificate given as the text of its file.
pub(crate) fn parse(text: &str) -> Result<Certificate, String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("empty")?;
    let mut fields = line.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    if !kind.ends_with("-cert-v01@openssh.com") {
        return Err(format!("not a certificate (type {})", PeerText::new(kind)));
    }
    let blob = fields
        .next()
        .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
        .ok_or("not base64")?;
    let marker = b"-cert-v01@";
    if blob.windows(marker.len()).filter(|w| w == marker).count() > MAX_NESTING {
        return Err("certificates nested too deep".into());
    }
    let cert = Certificate::from_bytes(&blob).map_err(|e| {
        format!(
            "cannot decode a {} certificate: {}",
            PeerText::new(kind),
            PeerText::new(&e.to_string())
        )
    })?;
    if cert.algorithm().to_certificate_type() != kind {
        return Err(format!(
            "its type {} does not match its contents",
            PeerText::new(kind)
        ));
    }
    Ok(cert)
}

/// Why ssh-dial cannot offer this certificate, if it cannot: not a user
/// certificate (`ssh` ignores those too), or a type it cannot sign for.
/// `agent`: the agent signs, so security-key types are fine.
pub(crate) fn unusable(cert: &Certificate, agent: bool) -> Option<String> {
    if !cert.cert_type().is_user() {
        return Some("a host certificate, not a user certificate".into());
    }
    match cert.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } | Algorithm::Rsa { .. } => None,
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 if agent => None,
        other => Some(format!(
            "type {} is not supported",
            PeerText::new(&other.to_certificate_type())
        )),
    }
}

/// Whether a certificate is within its validity period now, by this
/// machine's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validity {
    Valid,
    Expired,
    NotYetValid,
}

impl Validity {
    pub(crate) fn of(cert: &Certificate) -> Validity {
        Validity::at(cert, now())
    }

    /// As OpenSSH's `sshkey_cert_check_authority`: valid from `valid_after`
    /// up to, not including, `valid_before`.
    fn at(cert: &Certificate, now: u64) -> Validity {
        if now < cert.valid_after() {
            Validity::NotYetValid
        } else if now >= cert.valid_before() {
            Validity::Expired
        } else {
            Validity::Valid
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Expired => "expired",
            Validity::NotYetValid => "not yet valid",
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A certificate as an error names it: `key id "ci-7", principals
/// deploy,root, valid 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z`, and
/// `(expired)` or `(not yet valid)` by this machine's clock. The key id
/// and principals are escaped.
pub(crate) fn describe(cert: &Certificate) -> String {
    describe_at(cert, now())
}

fn describe_at(cert: &Certificate, now: u64) -> String {
    let principals = if cert.valid_principals().is_empty() {
        "(none)".to_owned()
    } else {
        PeerText::new(&cert.valid_principals().join(",")).to_string()
    };
    let (after, before) = (cert.valid_after(), cert.valid_before());
    let validity = match (after, before) {
        (0, u64::MAX) => "valid forever".to_owned(),
        (0, b) => format!("valid before {}", fmt_time(b)),
        (a, u64::MAX) => format!("valid after {}", fmt_time(a)),
        (a, b) => format!("valid {} to {}", fmt_time(a), fmt_time(b)),
    };
    let mut shown = format!(
        "key id \"{}\", principals {principals}, {validity}",
        PeerText::new(cert.key_id())
    );
    match Validity::at(cert, now) {
        Validity::Valid => {}
        other => shown.push_str(&format!(" ({})", other.as_str())),
    }
    shown
}

/// Seconds since the epoch as `2026-01-02T03:04:05Z` (UTC; `ssh-keygen -L`
/// shows local time without a zone).
fn fmt_time(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i128 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Signs for a certificate with its private key in memory: RSA with the
/// hash russh asks for (the server's choice), others as their type does.
pub(crate) struct KeySigner(pub(crate) Arc<PrivateKey>);

/// Why a certificate could not be signed for.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    #[error("the session is gone")]
    Gone(#[from] russh::SendError),
    #[error("cannot sign with this key: {0}")]
    Key(String),
}

impl russh::Signer for KeySigner {
    type Error = SignError;

    async fn auth_sign(
        &mut self,
        _cert: &russh::keys::agent::AgentIdentity,
        hash_alg: Option<HashAlg>,
        mut to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, SignError> {
        use russh::keys::signature::Signer;
        use russh::keys::ssh_encoding::Encode;
        let signature = match self.0.key_data() {
            KeypairData::Rsa(rsa) => (rsa, hash_alg).try_sign(&to_sign),
            other => other.try_sign(&to_sign),
        }
        .map_err(|e| SignError::Key(e.to_string()))?;
        let encoded = signature
            .encode_vec()
            .map_err(|e| SignError::Key(e.to_string()))?;
        encoded
            .as_slice()
            .encode(&mut to_sign)
            .map_err(|e| SignError::Key(e.to_string()))?;
        Ok(to_sign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(fmt_time(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(fmt_time(253_402_300_799), "9999-12-31T23:59:59Z");
        // The largest time a certificate can hold does not overflow.
        assert!(fmt_time(u64::MAX - 1).ends_with('Z'));
    }

    fn cert(key_id: &str, principals: &[&str], after: u64, before: u64) -> Certificate {
        use russh::keys::ssh_key::certificate::{Builder, CertType};
        use russh::keys::ssh_key::private::Ed25519Keypair;
        let ca = PrivateKey::from(Ed25519Keypair::from_seed(&[1; 32]));
        let user = PrivateKey::from(Ed25519Keypair::from_seed(&[2; 32]));
        let mut builder = Builder::new([7; 16], user.public_key(), after, before).unwrap();
        builder.key_id(key_id).unwrap();
        builder.cert_type(CertType::User).unwrap();
        if principals.is_empty() {
            builder.all_principals_valid().unwrap();
        }
        for p in principals {
            builder.valid_principal(*p).unwrap();
        }
        builder.sign(&ca).unwrap()
    }

    #[test]
    fn validity_is_from_after_up_to_before() {
        let c = cert("k", &["a"], 100, 200);
        assert_eq!(Validity::at(&c, 99), Validity::NotYetValid);
        assert_eq!(Validity::at(&c, 100), Validity::Valid);
        assert_eq!(Validity::at(&c, 199), Validity::Valid);
        assert_eq!(Validity::at(&c, 200), Validity::Expired);
    }

    #[test]
    fn a_certificate_is_named_escaped() {
        let c = cert("ci\x1b[31m\nfake", &["alice", "bob\u{202e}"], 0, 86_400);
        assert_eq!(
            describe_at(&c, 100),
            "key id \"ci\\u{1b}[31m\\nfake\", principals alice,bob\\u{202e}, \
             valid before 1970-01-02T00:00:00Z"
        );
        assert!(describe_at(&c, 86_400).ends_with(" (expired)"));
        let forever = cert("f", &[], 0, u64::MAX);
        assert_eq!(
            describe_at(&forever, 5),
            "key id \"f\", principals (none), valid forever"
        );
        let later = cert("l", &["a"], 86_400, u64::MAX);
        assert_eq!(
            describe_at(&later, 5),
            "key id \"l\", principals a, valid after 1970-01-02T00:00:00Z (not yet valid)"
        );
    }

    #[test]
    fn bad_text_is_an_error_not_a_panic() {
        for text in [
            "",
            "# only a comment\n",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILg4zKcoTwbt5lqhVGjk64meBdTzYRuV14vdclMQCvs6",
            "ssh-ed25519-cert-v01@openssh.com",
            "ssh-ed25519-cert-v01@openssh.com !!!",
            "ssh-ed25519-cert-v01@openssh.com AAAA",
            "x\x1b[31m-cert-v01@openssh.com AAAA",
        ] {
            let why = parse(text).unwrap_err();
            assert!(!why.contains('\x1b'), "{why}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_before_decoding() {
        let mut blob = Vec::new();
        for _ in 0..1000 {
            blob.extend_from_slice(b"\0\0\0\x1cssh-ed25519-cert-v01@openssh.com");
        }
        let text = format!(
            "ssh-ed25519-cert-v01@openssh.com {}",
            data_encoding::BASE64.encode(&blob)
        );
        assert_eq!(parse(&text).unwrap_err(), "certificates nested too deep");
    }
}
