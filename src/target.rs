//! What to dial: a host and a port, parsed and validated before anything
//! touches the network.
//!
//! The host ends up in DNS queries, in log lines and, under accept-new, in a
//! known_hosts file, where `,`, `*`, `?` and `!` are pattern syntax: a host
//! named `*` written there would vouch for every host on that port. So a
//! host must be a valid host name or an address literal, the rule OpenSSH's
//! `ssh` applies (`ssh_valid_hostname`) widened by the characters its
//! known_hosts writer refuses to record. Address literals are canonicalised
//! the way `getaddrinfo(AI_NUMERICHOST)` + `getnameinfo(NI_NUMERICHOST)` do
//! for `ssh`: `127.1` and `2130706433` are `127.0.0.1`, `0:0::1` is `::1`,
//! so that one address has one spelling in known_hosts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A `host` and `port` to dial, parsed from what the caller gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: u16,
}

/// An address that cannot be dialed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{:?}: {}", Short(.input), .reason)]
pub struct InvalidTarget {
    input: String,
    reason: String,
}

impl InvalidTarget {
    /// The address as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Characters that make a host invalid: OpenSSH's `ssh_valid_hostname`
/// set, plus the pattern and marker syntax of known_hosts (`*?!#[]@`) and
/// the path separator.
const FORBIDDEN: &[char] = &[
    '\'', '`', '"', '$', '\\', ';', '&', '<', '>', '|', '(', ')', '{', '}', ',', '*', '?', '!',
    '#', '[', ']', '@', '/',
];

/// The longest host name DNS can carry.
const MAX_HOST_LEN: usize = 253;

impl Target {
    /// The host name or IP address, without brackets. An address literal is
    /// in its canonical form (`127.0.0.1`, `::1`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Validates `host` (canonicalising an address literal) and `port`.
    fn new(input: &str, host: &str, port: u16) -> Result<Target, InvalidTarget> {
        let invalid = |reason: String| InvalidTarget {
            input: input.to_owned(),
            reason,
        };
        if port == 0 {
            return Err(invalid("port 0 cannot be dialed".into()));
        }
        if host.is_empty() {
            return Err(invalid("empty host".into()));
        }
        if let Some(ip) = parse_ip_literal(host) {
            return Ok(Target {
                host: ip.to_string(),
                port,
            });
        }
        if let Some(why) = invalid_host_name(host) {
            return Err(invalid(format!(
                "{:?} is not a host name: {why}",
                Short(host)
            )));
        }
        Ok(Target {
            host: host.to_owned(),
            port,
        })
    }

    /// Parses `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
    /// The port defaults to 22.
    pub(crate) fn parse(input: &str) -> Result<Target, InvalidTarget> {
        let invalid = |reason: String| InvalidTarget {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        if let Ok(ip) = s.parse::<Ipv6Addr>() {
            return Target::new(input, &ip.to_string(), 22);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("missing ']'".into()))?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(invalid(format!("{:?} is not an IPv6 address", Short(host))));
            }
            let port = match after {
                "" => 22,
                p => parse_port(
                    p.strip_prefix(':')
                        .ok_or_else(|| invalid("expected ':' after ']'".into()))?,
                )
                .map_err(invalid)?,
            };
            return Target::new(input, host, port);
        }
        match s.split_once(':') {
            Some((host, port)) if port.contains(':') => Err(invalid(format!(
                "{:?} has more than one ':' (IPv6 addresses go in brackets: \"[::1]:22\")",
                Short(host)
            ))),
            Some((host, port)) => Target::new(input, host, parse_port(port).map_err(invalid)?),
            None => Target::new(input, s, 22),
        }
    }

    /// `host:port`, with IPv6 addresses in brackets.
    pub(crate) fn display(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// At most 64 characters of untrusted input, for messages.
struct Short<'a>(&'a str);

impl std::fmt::Debug for Short<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(64) {
            Some((end, _)) => write!(f, "{:?}...", &self.0[..end]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

/// Why `host` is not a host name, if it is not.
fn invalid_host_name(host: &str) -> Option<String> {
    if host.starts_with('-') {
        return Some("starts with '-'".into());
    }
    if host.len() > MAX_HOST_LEN {
        return Some(format!("longer than {MAX_HOST_LEN} bytes"));
    }
    if let Some(c) = host
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || FORBIDDEN.contains(&c))
    {
        return Some(format!("{c:?} is not allowed"));
    }
    if host.contains(':') {
        return Some("':' only belongs in an IPv6 address".into());
    }
    None
}

/// Why `ssh` would refuse `host` as a destination or a `-J` hop, if it
/// would: OpenSSH's `ssh_valid_hostname` (10.3, as Debian's 9.2 backports
/// it): no leading `-`, no blank or control character, none of
/// ``'`"$\;&<>|(){},``. Such a name can reach a `%h` or `%n` in `Match
/// exec`, where a shell reads it. Looser than [`Target`]'s rule, which also
/// keeps known_hosts pattern syntax out: this one is for names that may be
/// ssh_config aliases.
pub(crate) fn ssh_hostname_problem(host: &str) -> Option<String> {
    const SHELL: &[u8] = b"'`\"$\\;&<>|(){},";
    let bad = if host.starts_with('-') {
        Some("a leading '-'".to_owned())
    } else {
        host.bytes()
            .find(|&b| SHELL.contains(&b) || b == b' ' || b.is_ascii_control())
            .map(|b| format!("{:?}", b as char))
    };
    bad.map(|why| {
        format!(
            "hostname {:?} contains invalid characters ({why})",
            Short(host)
        )
    })
}

/// Why `ssh` would refuse `user` as a remote user name given on its
/// command line, if it would: OpenSSH's `ssh_valid_ruser` (10.3, as
/// Debian's 9.2 backports it): no leading `-`, no control character, none
/// of ``'`";&<>|(){}``, no blank followed by `-`, no `\` at the end. The
/// name reaches `%r` in `Match exec`.
pub(crate) fn ssh_user_problem(user: &str) -> Option<String> {
    const SHELL: &[u8] = b"'`\";&<>|(){}";
    let b = user.as_bytes();
    let bad = if user.starts_with('-') {
        Some("a leading '-'".to_owned())
    } else if let Some(&c) = b
        .iter()
        .find(|&&c| SHELL.contains(&c) || c.is_ascii_control())
    {
        Some(format!("{:?}", c as char))
    } else if b.windows(2).any(|w| w[0] == b' ' && w[1] == b'-') {
        Some("'-' after a blank".to_owned())
    } else if user.ends_with('\\') {
        Some("a '\\' at the end".to_owned())
    } else {
        None
    };
    bad.map(|why| {
        format!(
            "remote username {:?} contains invalid characters ({why})",
            Short(user)
        )
    })
}

/// A port: decimal digits only (no sign, no spaces), 1 to 65535.
fn parse_port(port: &str) -> Result<u16, String> {
    let bad = || format!("{:?} is not a port number", Short(port));
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    port.parse::<u16>().map_err(|_| bad())
}

/// An IP address literal in any form `getaddrinfo(AI_NUMERICHOST)` takes:
/// IPv6, or IPv4 in `inet_aton`'s forms (`a.b.c.d`, `a.b.c`, `a.b`, `a`,
/// each part decimal, octal with a leading `0`, or hex with `0x`).
pub(crate) fn parse_ip_literal(s: &str) -> Option<IpAddr> {
    if let Ok(v6) = s.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    parse_inet_aton(s).map(IpAddr::V4)
}

fn parse_inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u32> = s
        .split('.')
        .map(parse_aton_part)
        .collect::<Option<Vec<_>>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|&p| p > 0xff) {
        return None;
    }
    // The last part fills the bytes the others leave.
    let room = 8 * (4 - head.len() as u32);
    if room < 32 && *last >> room != 0 {
        return None;
    }
    let mut value = *last;
    for (i, &p) in head.iter().enumerate() {
        value |= p << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(value))
}

fn parse_aton_part(p: &str) -> Option<u32> {
    let (digits, radix) = if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (hex, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

mod sealed {
    pub trait Sealed {}
}

/// Things [`Dialer::dial`](crate::Dialer::dial) accepts as an address.
///
/// Implemented for `"host:port"` strings (`"host"` alone means port 22,
/// IPv6 literals go in brackets: `"[::1]:2222"`), [`SocketAddr`], and
/// `(host, port)` tuples. Sealed: it cannot be implemented outside this
/// crate, so that every address goes through the same validation.
pub trait ToTarget: sealed::Sealed {
    /// Parses `self` into a [`Target`].
    ///
    /// # Errors
    ///
    /// [`InvalidTarget`], saying what is wrong with the address.
    fn to_target(&self) -> Result<Target, InvalidTarget>;

    /// Whether the address names its port (a `"host"` string does not),
    /// so that a port from ssh_config does not override one given.
    #[doc(hidden)]
    fn names_port(&self) -> bool {
        true
    }
}

/// Whether a `host[:port]` string has its port.
fn str_names_port(s: &str) -> bool {
    let s = s.trim();
    if s.parse::<Ipv6Addr>().is_ok() {
        return false;
    }
    match s.strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .is_some_and(|(_, after)| !after.is_empty()),
        None => s.contains(':'),
    }
}

macro_rules! to_target {
    ($($t:ty),*) => {$(impl sealed::Sealed for $t {})*};
}

to_target!(
    str,
    String,
    SocketAddr,
    (&str, u16),
    (String, u16),
    (IpAddr, u16),
    Target
);
impl<T: ToTarget + ?Sized> sealed::Sealed for &T {}

impl ToTarget for str {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        Target::parse(self)
    }

    fn names_port(&self) -> bool {
        str_names_port(self)
    }
}

impl ToTarget for String {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        Target::parse(self)
    }

    fn names_port(&self) -> bool {
        str_names_port(self)
    }
}

impl<T: ToTarget + ?Sized> ToTarget for &T {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        (**self).to_target()
    }

    fn names_port(&self) -> bool {
        (**self).names_port()
    }
}

impl ToTarget for SocketAddr {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        Target::new(&self.to_string(), &self.ip().to_string(), self.port())
    }
}

impl ToTarget for (&str, u16) {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        let input = format!("{}:{}", self.0, self.1);
        let host = match self.0.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) if v6.parse::<Ipv6Addr>().is_ok() => v6,
            Some(_) => {
                return Err(InvalidTarget {
                    input,
                    reason: format!("{:?} is not an IPv6 address", Short(self.0)),
                })
            }
            None => self.0,
        };
        Target::new(&input, host, self.1)
    }
}

impl ToTarget for (String, u16) {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        (self.0.as_str(), self.1).to_target()
    }
}

impl ToTarget for (IpAddr, u16) {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        SocketAddr::from(*self).to_target()
    }
}

impl ToTarget for Target {
    fn to_target(&self) -> Result<Target, InvalidTarget> {
        Ok(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<(String, u16)> {
        Target::parse(s).map(|t| (t.host, t.port)).ok()
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(t("host:2222"), Some(("host".into(), 2222)));
        assert_eq!(t("host"), Some(("host".into(), 22)));
        assert_eq!(t("10.0.0.7:22"), Some(("10.0.0.7".into(), 22)));
        assert_eq!(t("[::1]:2222"), Some(("::1".into(), 2222)));
        assert_eq!(t("::1"), Some(("::1".into(), 22)));
        assert_eq!(t("[::1]"), Some(("::1".into(), 22)));
        assert_eq!(t("host:022"), Some(("host".into(), 22)));
        assert_eq!(
            t("xn--bcher-kva.example"),
            Some(("xn--bcher-kva.example".into(), 22))
        );
    }

    #[test]
    fn address_literals_are_canonical() {
        for (input, host) in [
            ("127.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("10.65535", "10.0.255.255"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("[0:0::1]:2222", "::1"),
            ("::FFFF:127.0.0.1", "::ffff:127.0.0.1"),
        ] {
            assert_eq!(t(input).map(|t| t.0).as_deref(), Some(host), "{input}");
        }
        // Not inet_aton forms: left to the resolver as names.
        for name in ["1.2.3.4.5", "256.1.1.1", "08.1.1.1", "0x", "1..2"] {
            assert_eq!(parse_inet_aton(name), None, "{name}");
        }
        assert_eq!(("127.1", 2222).to_target().unwrap().host(), "127.0.0.1");
    }

    #[test]
    fn rejects_bad_addresses_with_a_reason() {
        for bad in [
            "",
            ":22",
            "host:0",
            "host:",
            "host:99999",
            "host:x",
            "host:+22",
            "host:-22",
            "host: 22",
            "host:22:33",
            "1.2.3.4:22:33",
            "[::1",
            "[nothost]:22",
            "a b:22",
            "user@host:22",
            "*",
            "*:2222",
            "evil,*",
            "a?b",
            "!host",
            "#host",
            "-oProxyCommand=x",
            "h'ost",
            "h\"ost",
            "h$ost",
            "h\\ost",
            "h|ost",
            "h;ost",
            "h\u{7}ost",
            "h\tost",
            "[h]ost",
        ] {
            let err = Target::parse(bad).expect_err(bad);
            assert_eq!(err.input(), bad);
            assert!(!err.reason().is_empty(), "{bad}");
        }
        assert!(("h", 0).to_target().is_err());
        assert!(("*", 22).to_target().is_err());
        assert!(("[nothost]", 22).to_target().is_err());
        assert_eq!(("[::1]", 22).to_target().unwrap().host(), "::1");
        let long = "a".repeat(300);
        let err = Target::parse(&long).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
