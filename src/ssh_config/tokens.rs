//! `%` tokens, `${VAR}` and `~`, as OpenSSH expands them in the keys that
//! take them.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::lexer::skip;
use super::local::Local;
use super::shown;

/// The `%` tokens of the keys that take OpenSSH's full set.
pub(super) struct Tokens<'a> {
    pub(super) local: &'a Local,
    pub(super) host: &'a str,
    pub(super) host_arg: &'a str,
    pub(super) port: &'a str,
    pub(super) user: &'a str,
    pub(super) alias: &'a str,
}

impl Tokens<'_> {
    pub(super) fn list(&self) -> Vec<(u8, String)> {
        let local = self.local;
        let short = local.hostname.split('.').next().unwrap_or("").to_owned();
        vec![
            (
                b'C',
                connection_hash(&local.hostname, self.host, self.port, self.user),
            ),
            (b'L', short),
            (b'i', local.uid.to_string()),
            (b'k', self.alias.to_owned()),
            (b'l', local.hostname.clone()),
            (b'n', self.host_arg.to_owned()),
            (b'p', self.port.to_owned()),
            (b'd', local.home.clone()),
            (b'h', self.host.to_owned()),
            (b'r', self.user.to_owned()),
            (b'u', local.user.clone()),
        ]
    }
}

/// `%C`: the SHA-1 of local host name, host, port and user, in hex.
fn connection_hash(thishost: &str, host: &str, port: &str, user: &str) -> String {
    use sha1::Digest;
    let mut sha = sha1::Sha1::new();
    for part in [thishost, host, port, user] {
        sha.update(part.as_bytes());
    }
    sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Expands `%` tokens (and, with `dollar`, `${VAR}`), failing on an
/// unknown token as OpenSSH does. Bytes in, bytes out: a file name need
/// not be UTF-8.
pub(super) fn expand<S: AsRef<str>>(
    s: &[u8],
    tokens: &[(u8, S)],
    dollar: bool,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if dollar && c == b'$' && s.get(i) == Some(&b'{') {
            let name_start = i + 1;
            let Some(len) = s[name_start..].iter().position(|&b| b == b'}') else {
                return Err("environment variable missing closing '}'".to_owned());
            };
            let name = &s[name_start..name_start + len];
            if name.is_empty() {
                return Err("zero-length environment variable".to_owned());
            }
            match std::env::var_os(OsStr::from_bytes(name)) {
                Some(v) => out.extend_from_slice(v.as_bytes()),
                None => return Err(format!("environment variable {} has no value", shown(name))),
            }
            i = name_start + len + 1;
            continue;
        }
        if c != b'%' {
            out.push(c);
            continue;
        }
        match s.get(i) {
            Some(b'%') => out.push(b'%'),
            None => return Err("invalid format: '%' at the end".to_owned()),
            Some(&t) => match tokens.iter().find(|(k, _)| *k == t) {
                Some((_, v)) => out.extend_from_slice(v.as_ref().as_bytes()),
                None => return Err(format!("unknown key %{}", shown([t]))),
            },
        }
        i += 1;
    }
    Ok(out)
}

/// `tilde_expand_filename`: a leading `~` or `~/` is the home directory.
/// (`~user` is left alone.)
pub(super) fn tilde(path: &[u8], home: &[u8]) -> Vec<u8> {
    let Some(rest) = path.strip_prefix(b"~") else {
        return path.to_vec();
    };
    if !(rest.is_empty() || rest.starts_with(b"/")) {
        return path.to_vec();
    }
    let rest = skip(rest, b"/");
    let mut out = home.to_vec();
    if !home.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(rest);
    out
}

/// The names a `ProxyCommand` may use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyTokens<'a> {
    /// `%h`: the host name to connect to (after `HostName`).
    pub(crate) host: &'a str,
    /// `%n`: the host as given.
    pub(crate) host_arg: &'a str,
    /// `%p`.
    pub(crate) port: u16,
    /// `%r`.
    pub(crate) user: &'a str,
    /// `%k`: `HostKeyAlias`, or the host as given.
    pub(crate) alias: &'a str,
}

/// The shell line of a `ProxyCommand`, as OpenSSH's
/// `expand_proxy_command` makes it: `exec ` and the command, with `%h`,
/// `%k`, `%n`, `%p`, `%r` and `%%` expanded (any other token is an error),
/// and no name in it that a shell would read as more than a name.
pub(crate) fn proxy_command_line(command: &str, names: ProxyTokens<'_>) -> Result<String, String> {
    if command == "-" {
        return Err(
            "ProxyCommand - (ssh's own stdin and stdout as the connection) cannot be used by a library"
                .to_owned(),
        );
    }
    let port = names.port.to_string();
    let tokens = [
        (b'h', names.host),
        (b'k', names.alias),
        (b'n', names.host_arg),
        (b'p', port.as_str()),
        (b'r', names.user),
    ];
    super::exec::check_names("ProxyCommand", command.as_bytes(), &tokens)?;
    let line = expand(format!("exec {command}").as_bytes(), &tokens, false)
        .map_err(|e| format!("ProxyCommand {}: {e}", shown(command)))?;
    // Every piece is UTF-8, so the line is.
    Ok(String::from_utf8_lossy(&line).into_owned())
}

#[cfg(test)]
mod proxy_command_tests {
    use super::*;

    fn names() -> ProxyTokens<'static> {
        ProxyTokens {
            host: "db.internal",
            host_arg: "db",
            port: 2222,
            user: "deploy",
            alias: "db-key",
        }
    }

    #[test]
    fn tokens_expand_as_ssh_expands_them() {
        assert_eq!(
            proxy_command_line("ssh -W %h:%p -l %r bastion # %n %k %%", names()).unwrap(),
            "exec ssh -W db.internal:2222 -l deploy bastion # db db-key %"
        );
    }

    #[test]
    fn an_unknown_token_is_refused() {
        let e = proxy_command_line("nc %h %x", names()).unwrap_err();
        assert!(e.contains("unknown key %") && e.contains('x'), "{e}");
        // Tokens of other keys (%d, %u, %C) are not ProxyCommand's.
        assert!(proxy_command_line("nc %C", names()).is_err());
    }

    #[test]
    fn a_name_with_shell_metacharacters_is_not_run() {
        let hostile = ProxyTokens {
            host: "x;touch /tmp/pwned",
            ..names()
        };
        let e = proxy_command_line("nc %h %p", hostile).unwrap_err();
        assert!(e.starts_with("ProxyCommand not run: %h would be"), "{e}");
        // A token the command does not use is not checked.
        assert!(proxy_command_line("nc fixed 22", hostile).is_ok());
        let user = ProxyTokens {
            user: "$(reboot)",
            ..names()
        };
        assert!(proxy_command_line("ssh -l %r -W %h:%p b", user).is_err());
    }

    #[test]
    fn a_dash_is_refused() {
        assert!(proxy_command_line("-", names()).is_err());
    }
}
