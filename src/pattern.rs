//! Glob patterns, as OpenSSH matches names with them: `*` and `?` in
//! `Host` lines, `Match` criteria, `IgnoreUnknown` and known_hosts host
//! fields (`match.c`), and `[...]` classes as well in `Include` paths
//! (`glob(3)`).
//!
//! Why one module: OpenSSH's `match_pattern` backtracks at every `*`,
//! which is exponential in the number of stars (`Host
//! *a*a*a*a*a*a*a*a*a*a*ab` against a 40-character name took 13 s here
//! before, and takes as long in `ssh`), and a config file or a known_hosts
//! line is input a service does not control. This matcher accepts exactly
//! the same names but never goes back past the last `*` it passed: a
//! `*` that matched a run is never revisited once the pattern after it has
//! matched up to the next `*`, because any later match would also have
//! been found from the earlier position (a run of `*` can absorb the
//! difference). Each name byte is then the anchor of at most one attempt
//! per star segment, so a match costs at most `|name| × |segment|` byte
//! comparisons (the segment being the longest run of the pattern between
//! two stars, cut to the name's length), plus one pass over the pattern:
//! linear in the pattern, and at most about 64,000 comparisons (253²) for
//! a host name against any pattern at all.
//!
//! Bytes, not text: OpenSSH compares C strings byte for byte, and so does
//! this, non-UTF-8 bytes included.

/// `match_pattern`: whether `name` matches `pattern`, where `*` matches any
/// run of bytes (the empty one too), `?` any one byte, and every other
/// byte itself.
pub(crate) fn matches(pattern: &[u8], name: &[u8]) -> bool {
    glob(pattern, name, Syntax::Ssh)
}

/// `fnmatch(3)` for one path component, as `glob(3)` calls it for
/// `Include`: `*` and `?` as in [`matches`], and `[abc]`, `[a-z]`,
/// `[!x]` (or `[^x]`) match one byte of a set; a `[` with no closing
/// `]` is itself.
pub(crate) fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    glob(pattern, name, Syntax::Path)
}

/// How a `match_pattern_list` came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listed {
    /// A pattern matched and no negated one did.
    Yes,
    /// A negated pattern (`!pattern`) matched: the list refuses the name,
    /// whatever else matched.
    Negated,
    /// Nothing matched.
    No,
}

/// OpenSSH copies each pattern of a list into a 1,024-byte buffer and
/// gives up on the whole list (no match) when one does not fit.
const MAX_LISTED: usize = 1023;

/// `match_pattern_list`: `patterns` is a comma-separated list, each
/// optionally negated with a leading `!`. With `lower`, the patterns'
/// ASCII letters are lowercased first (the name is taken as given), as
/// OpenSSH does for host names.
pub(crate) fn list(name: &[u8], patterns: &[u8], lower: bool) -> Listed {
    let syntax = if lower { Syntax::SshLower } else { Syntax::Ssh };
    let mut positive = false;
    let mut i = 0;
    while i < patterns.len() {
        let negated = patterns[i] == b'!';
        if negated {
            i += 1;
        }
        let rest = &patterns[i..];
        let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
        if end >= MAX_LISTED {
            return Listed::No;
        }
        if glob(&rest[..end], name, syntax) {
            if negated {
                return Listed::Negated;
            }
            positive = true;
        }
        // Past the pattern and its comma.
        i += end + 1;
    }
    if positive {
        Listed::Yes
    } else {
        Listed::No
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// `*` and `?`.
    Ssh,
    /// `*` and `?`, the pattern's ASCII letters lowercased.
    SshLower,
    /// `*`, `?` and `[...]`.
    Path,
}

/// What the pattern element at `p[i]` (not a `*`) makes of `byte`: how
/// long the element is, and whether it matches.
fn element(p: &[u8], i: usize, byte: u8, syntax: Syntax) -> (usize, bool) {
    match p[i] {
        b'?' => (1, true),
        b'[' if syntax == Syntax::Path => match class(&p[i + 1..], byte) {
            Some((len, hit)) => (len + 1, hit),
            None => (1, byte == b'['),
        },
        c if syntax == Syntax::SshLower => (1, c.to_ascii_lowercase() == byte),
        c => (1, c == byte),
    }
}

/// A bracket expression after its `[`: its length through the closing
/// `]`, and whether `byte` is in the set; `None` if it never closes.
fn class(body: &[u8], byte: u8) -> Option<(usize, bool)> {
    let (negated, skip) = match body.first() {
        Some(b'!') | Some(b'^') => (true, 1),
        _ => (false, 0),
    };
    let set_and_rest = &body[skip..];
    // A `]` first in the set is a member, not the end.
    let close = set_and_rest
        .iter()
        .skip(1)
        .position(|&b| b == b']')
        .map(|p| p + 1)?;
    let set = &set_and_rest[..close];
    let mut hit = false;
    let mut k = 0;
    while k < set.len() {
        if k + 2 < set.len() && set[k + 1] == b'-' {
            hit |= set[k] <= byte && byte <= set[k + 2];
            k += 3;
        } else {
            hit |= set[k] == byte;
            k += 1;
        }
    }
    Some((skip + close + 1, hit != negated))
}

/// The matcher: left to right, remembering only the last `*` passed and
/// where in the name it was tried from. A mismatch goes back to just after
/// that `*` with it absorbing one more byte; with no `*` behind, the name
/// does not match.
fn glob(p: &[u8], s: &[u8], syntax: Syntax) -> bool {
    let (mut pi, mut si) = (0, 0);
    // (pattern index just after the last `*`, name index it resumes from)
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p.get(pi) == Some(&b'*') {
            while p.get(pi) == Some(&b'*') {
                pi += 1;
            }
            if pi == p.len() {
                return true;
            }
            star = Some((pi, si));
            continue;
        }
        if si == s.len() {
            // Only stars could match the empty rest, and they were skipped
            // above; backing up would only leave less of the name.
            return pi == p.len();
        }
        if pi < p.len() {
            let (len, hit) = element(p, pi, s[si], syntax);
            if hit {
                pi += len;
                si += 1;
                continue;
            }
        }
        match star {
            Some((after, from)) => {
                star = Some((after, from + 1));
                pi = after;
                si = from + 1;
            }
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenSSH's `match_pattern`, transcribed (exponential): the reference.
    fn reference(s: &[u8], p: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| reference(&s[i..], rest)),
            Some((&c, rest)) => match s.split_first() {
                Some((&b, srest)) if c == b'?' || c == b => reference(srest, rest),
                _ => false,
            },
        }
    }

    #[test]
    fn stars_and_question_marks_as_openssh_matches_them() {
        for (p, s, want) in [
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*c", "abbc", true),
            ("a*c", "abbcd", false),
            ("*.example.com", "db.example.com", true),
            ("*.example.com", "example.com", false),
            ("h?st*", "host-7", true),
            ("h?st", "hst", false),
            ("**a**", "bab", true),
            ("*a*b", "aXbXa", false),
            ("*a*b", "aXbXab", true),
            ("[10.0.0.*]:2222", "[10.0.0.7]:2222", true),
        ] {
            assert_eq!(matches(p.as_bytes(), s.as_bytes()), want, "{p} {s}");
        }
    }

    /// Every pattern and name over a small alphabet, up to a few bytes:
    /// the same answers as OpenSSH's own algorithm.
    #[test]
    fn the_same_answers_as_match_pattern() {
        let alphabet = [b'a', b'b', b'*', b'?'];
        let mut patterns = vec![Vec::new()];
        for _ in 0..6 {
            let longer: Vec<Vec<u8>> = patterns
                .iter()
                .filter(|p| p.len() == patterns.last().map_or(0, Vec::len))
                .flat_map(|p| {
                    alphabet.iter().map(move |&c| {
                        let mut q = p.clone();
                        q.push(c);
                        q
                    })
                })
                .collect();
            patterns.extend(longer);
        }
        let mut names = vec![Vec::new()];
        for len in 1..=6 {
            for n in 0..1u32 << len {
                names.push((0..len).map(|i| b"ab"[(n >> i & 1) as usize]).collect());
            }
        }
        let mut compared = 0;
        for p in &patterns {
            for s in &names {
                assert_eq!(
                    matches(p, s),
                    reference(s, p),
                    "{:?} {:?}",
                    String::from_utf8_lossy(p),
                    String::from_utf8_lossy(s)
                );
                compared += 1;
            }
        }
        assert!(compared > 500_000, "{compared}");
    }

    #[test]
    fn lists_negate_lowercase_and_give_up_on_long_patterns() {
        assert_eq!(list(b"web1", b"web*,!web2", true), Listed::Yes);
        assert_eq!(list(b"web2", b"web*,!web2", true), Listed::Negated);
        assert_eq!(list(b"db", b"web*,!web2", true), Listed::No);
        assert_eq!(list(b"mixed.case", b"Mixed.Case", true), Listed::Yes);
        assert_eq!(list(b"Mixed.Case", b"Mixed.Case", true), Listed::No);
        assert_eq!(list(b"Alice", b"alice", false), Listed::No);
        // Empty patterns: only the empty name; a trailing comma adds none.
        assert_eq!(list(b"", b",a", false), Listed::Yes);
        assert_eq!(list(b"", b"a,", false), Listed::No);
        assert_eq!(list(b"", b"!", false), Listed::Negated);
        // A pattern too long for OpenSSH's buffer ends the list unmatched,
        // even after a match.
        let long = format!("h,{}", "x".repeat(1023));
        assert_eq!(list(b"h", long.as_bytes(), false), Listed::No);
        let fits = format!("h,{}", "x".repeat(1022));
        assert_eq!(list(b"h", fits.as_bytes(), false), Listed::Yes);
    }

    #[test]
    fn path_components_take_classes() {
        assert!(fnmatch(b"*.conf", b"a.conf"));
        assert!(fnmatch(b"[a-c]?", b"bz"));
        assert!(!fnmatch(b"[!a]", b"a"));
        assert!(fnmatch(b"[^a]", b"b"));
        assert!(fnmatch(b"[]]", b"]"));
        assert!(fnmatch(b"[a-", b"[a-"));
        assert!(fnmatch(b"*[0-9]", b"host9"));
        assert!(!fnmatch(b"*[0-9]", b"host"));
        // Outside paths a bracket is itself.
        assert!(!matches(b"[a-c]", b"b"));
    }

    /// The pattern that took 13 s, and worse ones, against names as long
    /// as a host name may be: well under a millisecond each.
    #[test]
    fn hostile_patterns_take_microseconds() {
        let name = "a".repeat(40);
        let worst = "*a".repeat(10) + "b";
        let long_name = "a".repeat(253);
        let many_stars = "*a".repeat(5_000) + "b";
        let long_segment = format!("*{}b", "a".repeat(252));
        for (p, s) in [
            (worst.as_str(), name.as_str()),
            (worst.as_str(), long_name.as_str()),
            (many_stars.as_str(), long_name.as_str()),
            (long_segment.as_str(), long_name.as_str()),
        ] {
            let start = std::time::Instant::now();
            assert!(!matches(p.as_bytes(), s.as_bytes()));
            assert!(!fnmatch(p.as_bytes(), s.as_bytes()));
            let took = start.elapsed();
            // Debug builds included: the old matcher needed 13 s for the
            // first of these, in a release build.
            assert!(took < std::time::Duration::from_millis(5), "{took:?}");
        }
    }
}
