//! Jump hosts: [`JumpHost`], and `ProxyJump` chains and `-J` specs
//! (`[user@]host[:port]` or an `ssh://` URI) read as OpenSSH's
//! `parse_jump` reads them.

use std::fmt;
use std::sync::Arc;

use super::lexer::skip;
use super::values::parse_port;
use super::{shown, ConfigError};
use crate::auth::Auth;
use crate::host_keys::HostKeys;
use crate::target::{ssh_hostname_problem, ssh_user_problem};

/// One hop of a `ProxyJump` chain: `[user@]host[:port]`, and optionally
/// the credentials and host keys of its own it is dialed with.
///
/// Two jump hosts are equal when they name the same hop and either carry
/// no settings of their own or share them (one was cloned from the other).
///
/// # Examples
///
/// ```
/// use ssh_dial::{Auth, HostKeys, JumpHost};
///
/// let bastion = JumpHost::parse("ops@bastion.example.net:2222")?
///     .with_auth(Auth::key_file("/etc/deploy/bastion_ed25519", None))
///     .with_host_keys(HostKeys::known_hosts("/etc/deploy/bastion_known_hosts"));
/// assert_eq!(bastion.user(), Some("ops"));
/// # Ok::<(), ssh_dial::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct JumpHost {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    /// As written, which `ssh -G` prints for all hops but the last.
    pub(super) spec: String,
    own: Option<Arc<Own>>,
}

/// A jump host's settings of its own.
#[derive(Debug, Clone, Default)]
struct Own {
    auth: Option<Auth>,
    host_keys: Option<HostKeys>,
}

impl PartialEq for JumpHost {
    fn eq(&self, other: &Self) -> bool {
        let same_own = match (&self.own, &other.own) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.user == other.user
            && self.host == other.host
            && self.port == other.port
            && self.spec == other.spec
            && same_own
    }
}

impl Eq for JumpHost {}

impl JumpHost {
    /// Parses `[user@]host[:port]` (IPv6 in brackets) or
    /// `ssh://[user@]host[:port]`, as `ssh -J` does.
    ///
    /// # Errors
    ///
    /// If there is no host, the user is empty, the port is not a number
    /// from 1 to 65535, or the user or host has a character `ssh` refuses
    /// on its command line (shell metacharacters, blanks, control
    /// characters, a leading `-`): [`ConfigError::is_invalid_input`].
    pub fn parse(spec: &str) -> Result<JumpHost, ConfigError> {
        let hop = parse_jump_host(spec).map_err(|why| {
            ConfigError::name(format!("invalid jump host {}: {why}", shown(spec)))
        })?;
        hop.check().map_err(ConfigError::name)?;
        Ok(hop)
    }

    /// The user, if the spec names one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The host (an alias, a name or an address).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, if the spec names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The credentials this jump host logs in with.
    ///
    /// Default: with ssh_config, the jump host's own `IdentityFile`s,
    /// `CertificateFile`s and agent, as `ssh -J` logs in to it; without,
    /// the dial's keys, certificates and agent. Never the dial's password
    /// or keyboard-interactive answers: those are for the target, and a
    /// jump host is a different machine.
    #[must_use]
    pub fn with_auth(self, auth: Auth) -> Self {
        self.with_own(|own| own.auth = Some(auth))
    }

    /// Which host keys to trust for this jump host.
    ///
    /// Default: with ssh_config, the jump host's own known_hosts settings
    /// (`StrictHostKeyChecking`, `UserKnownHostsFile`, `HostKeyAlias`, ...)
    /// unless [`DialerBuilder::host_keys`](crate::DialerBuilder::host_keys)
    /// was set; without, the dialer's.
    #[must_use]
    pub fn with_host_keys(self, host_keys: HostKeys) -> Self {
        self.with_own(|own| own.host_keys = Some(host_keys))
    }

    fn with_own(mut self, set: impl FnOnce(&mut Own)) -> Self {
        let mut own = self.own.as_deref().cloned().unwrap_or_default();
        set(&mut own);
        self.own = Some(Arc::new(own));
        self
    }

    /// The credentials given with [`with_auth`](Self::with_auth).
    pub(crate) fn own_auth(&self) -> Option<&Auth> {
        self.own.as_ref().and_then(|o| o.auth.as_ref())
    }

    /// The host keys given with [`with_host_keys`](Self::with_host_keys).
    pub(crate) fn own_host_keys(&self) -> Option<&HostKeys> {
        self.own.as_ref().and_then(|o| o.host_keys.as_ref())
    }

    /// Parses a comma-separated chain, as `ssh -J` takes it: `none` is no
    /// jump host, a `#` ends the chain, and so does a blank after the
    /// first character (OpenSSH 9.2 cuts the value there: `b1 , b2` is
    /// `b1`).
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse), for any hop.
    pub fn parse_chain(chain: &str) -> Result<Vec<JumpHost>, ConfigError> {
        let hops = jump_chain(chain.as_bytes()).map_err(|why| {
            ConfigError::name(format!("invalid jump host chain {}: {why}", shown(chain)))
        })?;
        for hop in &hops {
            hop.check().map_err(ConfigError::name)?;
        }
        Ok(hops)
    }

    /// Refuses what `ssh` refuses in a `-J` spec (`parse_jump`, strict).
    pub(super) fn check(&self) -> Result<(), String> {
        if let Some(why) = ssh_hostname_problem(&self.host) {
            return Err(format!("jump host {}: {why}", shown(&self.spec)));
        }
        if let Some(why) = self.user.as_deref().and_then(ssh_user_problem) {
            return Err(format!("jump host {}: {why}", shown(&self.spec)));
        }
        Ok(())
    }
}

impl fmt::Display for JumpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        let numeric =
            self.host.contains(':') || self.host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if numeric {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// `ProxyJump`'s value as `parse_jump` reads it from a file: after blanks
/// and `=`, `none`, or a chain.
pub(super) fn parse_proxy_jump(rest: &[u8]) -> Result<Vec<JumpHost>, String> {
    let value = skip(rest, b" \t\r\n=");
    jump_chain(value).map_err(|why| format!("invalid ProxyJump {}: {why}", shown(value)))
}

/// `parse_jump`'s reading of a chain (for `ProxyJump` and `-J`): `none`
/// (the whole value) is no jump host; otherwise the value is cut at a `#`,
/// then at the first blank after its first byte (OpenSSH 9.2's `rtrim`
/// blanks every space from the end down to the second byte, so `b1 , b2`
/// is `b1`), and split at commas.
fn jump_chain(value: &[u8]) -> Result<Vec<JumpHost>, String> {
    if value.eq_ignore_ascii_case(b"none") {
        return Ok(Vec::new());
    }
    let value = value.split(|&b| b == b'#').next().unwrap_or_default();
    let end = value
        .iter()
        .skip(1)
        .position(|b| c_isspace(*b))
        .map_or(value.len(), |i| i + 1);
    let value = std::str::from_utf8(&value[..end]).map_err(|_| "not UTF-8".to_owned())?;
    value.split(',').map(parse_jump_host).collect()
}

/// C's `isspace` in the C locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// One hop: `parse_ssh_uri` (`ssh://[user[;params]@]host[:port][/]`), or
/// else `parse_user_host_port` (`[user@]host[:port]`, the last `@`
/// separating). Only the syntax: [`JumpHost::check`] checks the names.
fn parse_jump_host(spec: &str) -> Result<JumpHost, String> {
    let (user, host, port) = match spec.strip_prefix("ssh://") {
        Some(uri) => parse_ssh_uri(uri)?,
        None => {
            let (user, rest) = match spec.rfind('@') {
                Some(0) => return Err("empty user".to_owned()),
                Some(at) => (Some(spec[..at].to_owned()), &spec[at + 1..]),
                None => (None, spec),
            };
            let (host, after) = hpdelim(rest)?;
            let port = match after {
                Some((_, p)) if !p.is_empty() => Some(parse_port(p.as_bytes())?),
                _ => None,
            };
            (user, host.to_owned(), port)
        }
    };
    Ok(JumpHost {
        user,
        host,
        port,
        spec: spec.to_owned(),
        own: None,
    })
}

/// A host, and the delimiter after it with what follows.
type HostAndRest<'a> = (&'a str, Option<(char, &'a str)>);

/// `hpdelim2` then `cleanhostname`: `[addr]` or a name up to the first `:`
/// or `/`; and that delimiter with what follows it.
fn hpdelim(s: &str) -> Result<HostAndRest<'_>, String> {
    let (host, after) = if let Some(bracketed) = s.strip_prefix('[') {
        let end = bracketed
            .find(']')
            .ok_or_else(|| "missing ']'".to_owned())?;
        let after = &bracketed[end + 1..];
        let host = &bracketed[..end];
        match after.chars().next() {
            None => (host, None),
            Some(c @ (':' | '/')) => (host, Some((c, &after[1..]))),
            Some(_) => return Err("junk after ']'".to_owned()),
        }
    } else {
        match s.find([':', '/']) {
            Some(i) => (&s[..i], Some((char::from(s.as_bytes()[i]), &s[i + 1..]))),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    Ok((host, after))
}

/// `parse_uri("ssh", ..)`, which may not have a path: the user up to the
/// first `@`, connection parameters after a `;` dropped, `%XX` and `+`
/// decoded; the host a domain name (`valid_domain`).
fn parse_ssh_uri(uri: &str) -> Result<(Option<String>, String, Option<u16>), String> {
    let (user, rest) = match uri.find('@') {
        Some(at) => {
            let info = &uri[..at];
            let user = info.split(';').next().unwrap_or_default();
            if user.is_empty() {
                return Err("empty user".to_owned());
            }
            (Some(url_decode(user)?), &uri[at + 1..])
        }
        None => (None, uri),
    };
    let (host, after) = hpdelim(rest)?;
    if !valid_domain(host) {
        return Err(format!("invalid domain name {}", shown(host)));
    }
    let mut port = None;
    let mut path = None;
    if let Some((delim, tail)) = after.filter(|(_, t)| !t.is_empty()) {
        path = Some(tail);
        if delim == ':' {
            let (p, rest) = match tail.split_once('/') {
                Some((p, rest)) => (p, Some(rest)),
                None => (tail, None),
            };
            port = Some(parse_port(p.as_bytes())?);
            path = rest;
        }
    }
    if path.is_some_and(|p| !p.is_empty()) {
        return Err("a path is not allowed".to_owned());
    }
    Ok((user, host.to_owned(), port))
}

/// `urldecode`: `+` is a space, `%XX` a byte; a NUL is refused
/// (CVE-2025-61985), as is what is not UTF-8.
fn url_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .filter(|&c| c != 0)
                    .ok_or_else(|| "bad %-escape in user".to_owned())?;
                out.push(byte);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "user is not UTF-8".to_owned())
}

/// `valid_domain(name, 0)`: a letter or digit first, then letters, digits,
/// `-`, `_` and single dots.
fn valid_domain(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && !name.contains("..")
}
