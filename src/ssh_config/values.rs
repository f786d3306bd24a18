//! Values as OpenSSH reads them: ports, flags, numbers, times, each key's
//! words, and the values that must be text.

use super::{shown, StrictHostKeyChecking};
use crate::tcp::AddressFamily;

/// A value that must be text, or why it is not.
pub(super) fn utf8(value: Vec<u8>, what: &str) -> Result<String, String> {
    String::from_utf8(value)
        .map_err(|e| format!("{what} {} is not valid UTF-8", shown(e.as_bytes())))
}

/// A value that must be ASCII to mean anything (a number, a flag), as text.
fn ascii(s: &[u8]) -> &str {
    std::str::from_utf8(s).unwrap_or("\u{fffd}")
}

pub(super) fn parse_port(s: &[u8]) -> Result<u16, String> {
    let t = ascii(s);
    match t.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) && s.iter().all(u8::is_ascii_digit) => Ok(p as u16),
        _ => Err(format!("bad port {}", shown(s))),
    }
}

pub(super) fn parse_flag(s: &[u8]) -> Result<bool, String> {
    match ascii(s).to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("unsupported option {}", shown(s))),
    }
}

pub(super) fn parse_strict(s: &[u8]) -> Result<StrictHostKeyChecking, String> {
    Ok(match ascii(s).to_ascii_lowercase().as_str() {
        "yes" | "true" => StrictHostKeyChecking::Yes,
        "no" | "false" | "off" => StrictHostKeyChecking::No,
        "ask" => StrictHostKeyChecking::Ask,
        "accept-new" => StrictHostKeyChecking::AcceptNew,
        _ => return Err(format!("unsupported option {}", shown(s))),
    })
}

pub(super) fn parse_family(s: &[u8]) -> Result<AddressFamily, String> {
    Ok(match ascii(s).to_ascii_lowercase().as_str() {
        "inet" => AddressFamily::Inet,
        "inet6" => AddressFamily::Inet6,
        "any" => AddressFamily::Any,
        _ => return Err(format!("unsupported option {}", shown(s))),
    })
}

pub(super) fn parse_pubkey(s: &[u8]) -> Result<String, String> {
    Ok(match ascii(s).to_ascii_lowercase().as_str() {
        "yes" | "true" => "true",
        "no" | "false" => "false",
        "unbound" => "unbound",
        "host-bound" => "host-bound",
        _ => return Err(format!("unsupported option {}", shown(s))),
    }
    .to_owned())
}

/// `strtonum(s, 0, INT_MAX)`.
pub(super) fn parse_int(s: &[u8]) -> Result<u32, String> {
    let t = ascii(s).trim_start();
    let digits = t.strip_prefix('+').unwrap_or(t);
    match digits.parse::<u64>() {
        Ok(v) if v <= i32::MAX as u64 && !digits.is_empty() => Ok(v as u32),
        Ok(_) => Err(format!("integer value {} too large", shown(s))),
        Err(_) => Err(format!("integer value {} invalid", shown(s))),
    }
}

/// `none` or `convtime`: seconds, or a sum of numbers with `s`, `m`, `h`,
/// `d`, `w` suffixes.
pub(super) fn parse_time(s: &[u8]) -> Result<Option<u32>, String> {
    if s == b"none" {
        return Ok(None);
    }
    let bad = || format!("invalid time value {}", shown(s));
    if s.is_empty() {
        return Err(bad());
    }
    let bytes = s;
    let mut total: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') && i == start {
            i += 1;
        }
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            if bytes[i] == b'-' {
                return Err(bad());
            }
            i += 1;
        }
        let digits = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits {
            return Err(bad());
        }
        let n: u64 = ascii(&s[digits..i]).parse().map_err(|_| bad())?;
        let multiplier = match bytes.get(i) {
            None => 1,
            Some(c) => {
                i += 1;
                match c.to_ascii_lowercase() {
                    b's' => 1,
                    b'm' => 60,
                    b'h' => 3600,
                    b'd' => 86400,
                    b'w' => 604800,
                    _ => return Err(bad()),
                }
            }
        };
        total = n
            .checked_mul(multiplier)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= i32::MAX as u64)
            .ok_or_else(bad)?;
    }
    Ok(Some(total as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_convtime_reads_them() {
        assert_eq!(parse_time(b"90"), Ok(Some(90)));
        assert_eq!(parse_time(b"1m30s"), Ok(Some(90)));
        assert_eq!(parse_time(b"1h"), Ok(Some(3600)));
        assert_eq!(parse_time(b"none"), Ok(None));
        assert!(parse_time(b"-1").is_err());
        assert!(parse_time(b"1x").is_err());
    }
}
