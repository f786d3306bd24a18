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
