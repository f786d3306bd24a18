//! Lines and arguments as OpenSSH's `readconf.c` splits them: a file's
//! lines (each cut at its first NUL), the keyword and the rest of a line
//! (`strdelim`), and its arguments (`argv_split`).

use std::borrow::Cow;

/// `s` without its leading bytes from `set`.
pub(super) fn skip<'a>(s: &'a [u8], set: &[u8]) -> &'a [u8] {
    let n = s.iter().take_while(|b| set.contains(b)).count();
    &s[n..]
}

/// OpenSSH's `WHITESPACE`.
const WHITESPACE: &[u8] = b" \t\r\n";

/// `strdelim`: the next token of `s` and what is left, as OpenSSH splits
/// the keyword and `Match` criteria: at a blank, one `=`, or a `"`-quoted
/// run (the quotes removed, no escapes). `None` is C's `NULL`: no text
/// left, or a quote that never closes.
#[allow(clippy::type_complexity)]
pub(super) fn strdelim(s: Option<&[u8]>) -> (Option<Cow<'_, [u8]>>, Option<&[u8]>) {
    let Some(s) = s else {
        return (None, None);
    };
    let Some(at) = s
        .iter()
        .position(|b| WHITESPACE.contains(b) || *b == b'"' || *b == b'=')
    else {
        return (Some(Cow::Borrowed(s)), None);
    };
    if s[at] == b'"' {
        let quoted = &s[at + 1..];
        let Some(close) = quoted.iter().position(|&b| b == b'"') else {
            return (None, None);
        };
        let token = [&s[..at], &quoted[..close]].concat();
        let rest = skip(&quoted[close + 1..], WHITESPACE);
        return (Some(Cow::Owned(token)), Some(rest));
    }
    // One `=` may join the token to the next, blanks or not.
    let equals = s[at] == b'=';
    let mut rest = skip(&s[at + 1..], WHITESPACE);
    if !equals && rest.first() == Some(&b'=') {
        rest = skip(&rest[1..], WHITESPACE);
    }
    (Some(Cow::Borrowed(&s[..at])), Some(rest))
}

/// The keyword and the rest of a line, as `process_config_line` takes them
/// apart (`strdelim` twice if the first token is empty); the rest starts
/// at its first non-blank. `None` for a blank or comment line.
pub(super) fn keyword_and_rest(line: &[u8]) -> Option<(Cow<'_, [u8]>, &[u8])> {
    if line.is_empty() {
        return None;
    }
    let (mut keyword, mut rest) = strdelim(Some(line));
    if keyword.as_deref().is_some_and(<[u8]>::is_empty) {
        (keyword, rest) = strdelim(rest);
    }
    let keyword = keyword?;
    if keyword.is_empty() || keyword[0] == b'\n' || keyword[0] == b'#' {
        return None;
    }
    Some((keyword, skip(rest.unwrap_or_default(), WHITESPACE)))
}

/// A file's lines as OpenSSH's `getline` loop sees them: each ends at its
/// first NUL (a C string), and trailing blanks and form feeds are cut
/// (never the first byte). Numbered from 1.
pub(super) fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|&b| b == b'\n').enumerate().map(|(i, raw)| {
        let mut line = raw.split(|&b| b == 0).next().unwrap_or_default();
        while line.len() > 1 && matches!(line[line.len() - 1], b' ' | b'\t' | b'\r' | 0x0c) {
            line = &line[..line.len() - 1];
        }
        (i + 1, line)
    })
}

/// `argv_split` with comments, one argument at a time (a line may hold
/// millions): blanks separate, `'` and `"` quote, `\` escapes a quote, a
/// backslash or (unquoted) a space.
pub(super) struct Args<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Args<'a> {
    pub(super) fn new(s: &'a [u8]) -> Self {
        Args { s, i: 0 }
    }
}

impl Iterator for Args<'_> {
    type Item = Result<Vec<u8>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.s;
        let mut i = self.i;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() || b[i] == b'#' {
            self.i = b.len();
            return None;
        }
        let mut arg = Vec::new();
        let mut quote = 0u8;
        while i < b.len() {
            let c = b[i];
            if c == b'\\' {
                match b.get(i + 1) {
                    Some(&n)
                        if n == b'\'' || n == b'"' || n == b'\\' || (quote == 0 && n == b' ') =>
                    {
                        arg.push(n);
                        i += 2;
                        continue;
                    }
                    _ => arg.push(c),
                }
            } else if quote == 0 && (c == b' ' || c == b'\t') {
                break;
            } else if quote == 0 && (c == b'"' || c == b'\'') {
                quote = c;
            } else if quote != 0 && c == quote {
                quote = 0;
            } else {
                arg.push(c);
            }
            i += 1;
        }
        self.i = i;
        if quote != 0 {
            self.i = b.len();
            return Some(Err("invalid quotes".to_owned()));
        }
        Some(Ok(arg))
    }
}
