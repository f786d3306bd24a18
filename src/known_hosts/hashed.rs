//! Hashed host names (`|1|salt|hash`, as `ssh-keygen -H` writes them):
//! HMAC-SHA1 of the name keyed with the salt.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The length of an HMAC-SHA1 key and digest.
pub(super) const SHA1_LEN: usize = 20;

fn hmac_sha1(salt: &[u8], host_port: &str) -> Option<Hmac<Sha1>> {
    let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).ok()?;
    Some(mac.chain_update(host_port.as_bytes()))
}

/// `|1|base64(salt)|base64(hmac)`, as OpenSSH's `host_hash` writes it.
pub(super) fn hashed_name(salt: &[u8], host_port: &str) -> Option<String> {
    use data_encoding::BASE64;
    let mac = hmac_sha1(salt, host_port)?.finalize().into_bytes();
    Some(format!(
        "|1|{}|{}",
        BASE64.encode(salt),
        BASE64.encode(&mac)
    ))
}

/// OpenSSH's hashed-name match: the salt (which must decode to 20 bytes)
/// is taken from the field, the name hashed with it, and the whole field
/// compared with the result. A field that is not exactly that, commas and
/// all, names no host.
pub(super) fn hashed_matches(host_port: &str, field: &[u8]) -> bool {
    let Some(rest) = field.strip_prefix(b"|1|") else {
        return false;
    };
    let Some(end) = rest.iter().position(|&b| b == b'|') else {
        return false;
    };
    let Ok(salt) = data_encoding::BASE64.decode(&rest[..end]) else {
        return false;
    };
    if salt.len() != SHA1_LEN {
        return false;
    }
    hashed_name(&salt, host_port).is_some_and(|name| name.as_bytes() == field)
}

/// The salt and digest of a `|1|salt|hash` field, if the field is exactly
/// what OpenSSH would write for them (else it names no host).
pub(super) fn decode_hashed(field: &[u8]) -> Option<([u8; SHA1_LEN], [u8; SHA1_LEN])> {
    use data_encoding::BASE64;
    let rest = field.strip_prefix(b"|1|")?;
    let end = rest.iter().position(|&b| b == b'|')?;
    let salt: [u8; SHA1_LEN] = BASE64.decode(&rest[..end]).ok()?.try_into().ok()?;
    let digest: [u8; SHA1_LEN] = BASE64.decode(&rest[end + 1..]).ok()?.try_into().ok()?;
    let canonical = format!("|1|{}|{}", BASE64.encode(&salt), BASE64.encode(&digest));
    (canonical.as_bytes() == field).then_some((salt, digest))
}
