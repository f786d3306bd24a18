//! One line of a known_hosts file, as OpenSSH's `hostfile.c` reads it:
//! bytes, fields split at spaces and tabs, at most one marker, and the
//! hosts field matched as a hash or as a pattern list.

use russh::keys::PublicKey;

use super::hashed::hashed_matches;
use super::Marker;

/// One line that is not blank or a comment: `[@marker] hosts keytype
/// base64 [comment]`, as bytes.
pub(super) struct Line<'a> {
    pub(super) marker: Marker,
    pub(super) hosts: &'a [u8],
    key_type: &'a [u8],
    base64: &'a [u8],
}

fn is_blank(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

/// Splits off the next field: up to a space or tab, then skips those.
fn field(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(is_blank).unwrap_or(s.len());
    let (f, rest) = s.split_at(end);
    let skip = rest.iter().take_while(|b| is_blank(b)).count();
    (f, &rest[skip..])
}

impl<'a> Line<'a> {
    /// `None` for blank and comment lines, `Some(Err)` for lines that are
    /// entries but do not parse.
    pub(super) fn parse(line: &'a [u8]) -> Option<Result<Line<'a>, ()>> {
        let skip = line.iter().take_while(|b| is_blank(b)).count();
        let line = &line[skip..];
        if line.is_empty() || line[0] == b'#' {
            return None;
        }
        Some(Line::fields(line))
    }

    fn fields(mut line: &'a [u8]) -> Result<Line<'a>, ()> {
        let mut marker = Marker::None;
        // OpenSSH's check_markers: at most one, ended by the first space
        // (or, failing that, the first tab) on the line.
        while line.first() == Some(&b'@') {
            if marker != Marker::None {
                return Err(());
            }
            let end = line
                .iter()
                .position(|&b| b == b' ')
                .or_else(|| line.iter().position(|&b| b == b'\t'))
                .ok_or(())?;
            marker = match &line[..end] {
                b"@cert-authority" => Marker::CertAuthority,
                b"@revoked" => Marker::Revoked,
                _ => return Err(()),
            };
            let rest = &line[end..];
            line = &rest[rest.iter().take_while(|b| is_blank(b)).count()..];
        }
        let (hosts, rest) = field(line);
        if rest.is_empty() || rest[0] == b'#' {
            return Err(());
        }
        let (key_type, rest) = field(rest);
        let (base64, _comment) = field(rest);
        // A CRLF file leaves '\r' on the last field; OpenSSH's base64
        // decoder skips it.
        let base64 = base64.strip_suffix(b"\r").unwrap_or(base64);
        if hosts.is_empty() || key_type.is_empty() || base64.is_empty() {
            return Err(());
        }
        Ok(Line {
            marker,
            hosts,
            key_type,
            base64,
        })
    }

    /// OpenSSH's `match_maybe_hashed`: a hosts field starting with `|` is
    /// one hash, compared whole; otherwise a pattern list.
    pub(super) fn names(&self, lookup: &str) -> bool {
        if self.hosts[0] == b'|' {
            hashed_matches(lookup, self.hosts)
        } else {
            pattern_list_matches(lookup.as_bytes(), self.hosts)
        }
    }

    pub(super) fn key(&self) -> Option<PublicKey> {
        let key_type = std::str::from_utf8(self.key_type).ok()?;
        let base64 = std::str::from_utf8(self.base64).ok()?;
        PublicKey::from_openssh(&format!("{key_type} {base64}")).ok()
    }
}

/// OpenSSH's `match_hostname`: `match_pattern_list` with the patterns
/// lowercased; a matching negated pattern rejects, else any matching
/// pattern accepts. `host` is already lowercase.
pub(super) fn pattern_list_matches(host: &[u8], patterns: &[u8]) -> bool {
    crate::pattern::list(host, patterns, true) == crate::pattern::Listed::Yes
}
