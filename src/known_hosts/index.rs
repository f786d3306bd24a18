//! A known_hosts file parsed once and indexed by the names its lines list,
//! so that a lookup reads only the lines that can name the host.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use super::hashed::{decode_hashed, SHA1_LEN};
use super::line::Line;

/// One known_hosts file, parsed once for every lookup: its entry lines, an
/// index from the plain names they list to those lines, the hashed names
/// decoded, and the lines with wildcards or negations, which every lookup
/// still matches in full. A lookup then costs the lines that can name the
/// host, one HMAC per hashed line, and one match per pattern line, instead
/// of parsing the whole file.
#[derive(Debug, Default)]
pub(crate) struct Indexed {
    text: Vec<u8>,
    /// Whether any line is more than blank or a comment.
    pub(super) any: bool,
    /// The entry lines: 1-based number, start and end in `text`.
    lines: Vec<(usize, usize, usize)>,
    /// Lowercased plain name to the entry lines that list it.
    plain: std::collections::HashMap<Vec<u8>, Vec<u32>>,
    /// Entry lines with a `|1|salt|hash` name: the HMAC keyed with the
    /// salt (its key schedule done once), and the digest.
    hashed: Vec<(u32, Hmac<Sha1>, [u8; SHA1_LEN])>,
    /// Entry lines with wildcards or negations.
    patterns: Vec<u32>,
}

impl Indexed {
    pub(crate) fn new(text: Vec<u8>) -> Indexed {
        let mut indexed = Indexed::default();
        let mut start = 0;
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let end = start + raw.len();
            // C strings end at a NUL; so does OpenSSH's view of the line.
            let cut = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            let line = &raw[..cut];
            let line_start = start;
            start = end + 1;
            let Some(parsed) = Line::parse(line) else {
                continue;
            };
            indexed.any = true;
            let Ok(parsed) = parsed else {
                continue;
            };
            let id = indexed.lines.len() as u32;
            indexed.lines.push((i + 1, line_start, line_start + cut));
            let hosts = parsed.hosts;
            if hosts[0] == b'|' {
                if let Some((salt, digest)) = decode_hashed(hosts) {
                    if let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) {
                        indexed.hashed.push((id, mac, digest));
                    }
                }
            } else if hosts.iter().any(|b| matches!(b, b'*' | b'?' | b'!')) {
                indexed.patterns.push(id);
            } else {
                for name in hosts.split(|&b| b == b',') {
                    // Too long a sub-pattern fails the whole list in OpenSSH.
                    if name.len() >= 1023 {
                        indexed.patterns.push(id);
                        break;
                    }
                    let list = indexed.plain.entry(name.to_ascii_lowercase()).or_default();
                    if list.last() != Some(&id) {
                        list.push(id);
                    }
                }
            }
        }
        indexed.text = text;
        indexed
    }

    /// The entry lines that may name `lookup`, in file order.
    pub(super) fn candidates(&self, lookup: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .plain
            .get(lookup.as_bytes())
            .cloned()
            .unwrap_or_default();
        ids.extend(self.patterns.iter().copied());
        for (id, keyed, digest) in &self.hashed {
            let mac = keyed
                .clone()
                .chain_update(lookup.as_bytes())
                .finalize()
                .into_bytes();
            if mac[..] == digest[..] {
                ids.push(*id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// An entry line's number and bytes.
    pub(super) fn line(&self, id: u32) -> (usize, &[u8]) {
        let (number, start, end) = self.lines[id as usize];
        (number, &self.text[start..end])
    }
}
