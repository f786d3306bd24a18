//! Text for people: errors phrased one way, and text that came from the
//! peer made safe to show.

use std::fmt;
use std::io;

/// Text that came from the peer (or from a library quoting it), made safe to
/// show in a message, a log line or JSON: one line of printable ASCII, at
/// most [`PeerText::MAX`] characters. Anything else is escaped as Rust
/// escapes it (`\x1b`, `\n`, `\u{202e}`), backslashes included, the way
/// OpenSSH passes peer strings through `strnvis`, so that a forged line,
/// a terminal escape or a bidi override cannot reach a reader.
pub(crate) struct PeerText<'a>(&'a str);

impl<'a> PeerText<'a> {
    /// The most characters of peer text shown; the rest is cut with `...`.
    pub(crate) const MAX: usize = 256;

    pub(crate) fn new(text: &'a str) -> Self {
        PeerText(text)
    }
}

impl fmt::Display for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for (i, c) in self.0.chars().enumerate() {
            if i == Self::MAX {
                return f.write_str("...");
            }
            if c == ' ' || (c.is_ascii_graphic() && c != '\\') {
                f.write_char(c)?;
            } else {
                write!(f, "{}", c.escape_default())?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Shows `T`'s `Display` with everything that is not printable ASCII
/// escaped: the last line of defence, under every message this crate
/// writes, for peer text that reached it by a way [`PeerText`] did not
/// cover (a library quoting the peer, a path, a signal name).
pub(crate) struct Escaped<T>(pub(crate) T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        write!(Escaping(f), "{}", self.0)
    }
}

/// Writes, escaped, what `describe` writes: an error's `Display` over its
/// unescaped description.
pub(crate) fn write_escaped(
    f: &mut fmt::Formatter<'_>,
    describe: impl Fn(&mut fmt::Formatter<'_>) -> fmt::Result,
) -> fmt::Result {
    struct Describe<F>(F);
    impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for Describe<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            (self.0)(f)
        }
    }
    write!(f, "{}", Escaped(Describe(describe)))
}

/// A writer that escapes what is not printable ASCII on its way to `f`.
pub(crate) struct Escaping<'a, 'b>(pub(crate) &'a mut fmt::Formatter<'b>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            if c == ' ' || c.is_ascii_graphic() {
                self.0.write_char(c)?;
            } else {
                write!(self.0, "{}", c.escape_default())?;
            }
        }
        Ok(())
    }
}

/// An I/O error as a lowercase phrase: "connection refused" rather than the
/// OS's "Connection refused (os error 111)".
pub(crate) fn fmt_io(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match (e.raw_os_error(), s.rfind(" (os error ")) {
        (Some(_), Some(i)) => &s[..i],
        _ => &s,
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_is_one_printable_bounded_line() {
        let shown = PeerText::new("ok\x1b[32m\ndial 10.9.9.9:22: ok\u{202e}\\").to_string();
        assert_eq!(shown, "ok\\u{1b}[32m\\ndial 10.9.9.9:22: ok\\u{202e}\\\\");
        assert!(shown.chars().all(|c| c.is_ascii_graphic() || c == ' '));
        let long = "x".repeat(10_000);
        assert_eq!(PeerText::new(&long).to_string().len(), PeerText::MAX + 3);
    }
}
