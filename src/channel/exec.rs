//! A command on a session channel: its line, environment and terminal,
//! and the shell quoting they need.

/// The command to start on a session channel.
#[derive(Debug, Clone)]
pub(crate) struct Exec {
    /// The command line, with its `cd` if any.
    pub(crate) line: String,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) pty: Option<Pty>,
    /// `line` names a subsystem (`sftp`) to start instead of a command:
    /// its channel is then a stream, over at EOF both ways.
    pub(crate) subsystem: bool,
}

/// A terminal for the command.
#[derive(Debug, Clone)]
pub(crate) struct Pty {
    pub(crate) term: String,
    pub(crate) cols: u32,
    pub(crate) rows: u32,
}

impl Exec {
    /// The command line, with the variables the server refused (indexes
    /// into `env`) exported by the shell instead (sshd's default
    /// `AcceptEnv` takes almost none).
    pub(crate) fn line_with(&self, refused_env: &[usize]) -> String {
        if refused_env.is_empty() {
            return self.line.clone();
        }
        let mut line = String::from("export");
        for &i in refused_env {
            let (name, value) = &self.env[i];
            line.push(' ');
            line.push_str(name);
            line.push('=');
            line.push_str(&quote(value));
        }
        line.push_str("; ");
        line.push_str(&self.line);
        line
    }
}

/// `word` quoted for a POSIX shell: as it is if every character is one no
/// shell treats specially, else in single quotes with `'` as `'\''`.
pub(crate) fn quote(word: &str) -> std::borrow::Cow<'_, str> {
    // Not `=` (zsh expands a leading one), `~`, `^` (old Bourne shells' pipe).
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.into();
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    for c in word.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted.into()
}

/// A name `export` takes: letters, digits and `_`, not starting with a digit.
pub(crate) fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_a_posix_shell() {
        assert_eq!(quote("plain-word_1.txt"), "plain-word_1.txt");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(touch x)"), "'$(touch x)'");
        assert_eq!(quote("-n"), "-n");
        assert_eq!(quote("~"), "'~'");
        assert_eq!(quote("=ls"), "'=ls'");
        assert_eq!(quote("a\nb"), "'a\nb'");
    }

    #[test]
    fn shell_names_are_what_export_takes() {
        for ok in ["A", "_x1", "LC_ALL"] {
            assert!(is_shell_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A;B", "É"] {
            assert!(!is_shell_name(bad), "{bad}");
        }
    }
}
