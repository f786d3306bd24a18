//! Resolving a host: passes over the files' lines as OpenSSH's
//! `readconf.c` makes them, `Host` and `Match` deciding which lines apply
//! and each line that applies setting its key, the first value obtained
//! winning.

use super::exec::{check_names, run_exec, Refused, Until};
use super::host_config::HostConfig;
use super::jump::parse_proxy_jump;
use super::keywords::canonical;
use super::lexer::{keyword_and_rest, lines, skip, strdelim, Args};
use super::options::{set, set_time, Options};
use super::read::{File, Include};
use super::tokens::{expand, Tokens};
use super::values::{
    parse_family, parse_flag, parse_int, parse_port, parse_pubkey, parse_strict, utf8,
};
use super::{shown, ConfigError, SshConfig, Why};
use crate::pattern::{self, Listed};
use crate::target::{ssh_hostname_problem, ssh_user_problem};

/// The most `IdentityFile`s a host may have (`SSH_MAX_IDENTITY_FILES`).
const MAX_IDENTITY_FILES: usize = 100;

/// The most `CertificateFile`s a host may have
/// (`SSH_MAX_CERTIFICATE_FILES`).
const MAX_CERTIFICATE_FILES: usize = 100;

impl SshConfig {
    /// [`resolve`](Self::resolve), giving up on `Match exec` at `until`.
    pub(crate) fn resolve_until(
        &self,
        destination: &str,
        until: &Until,
    ) -> Result<HostConfig, ConfigError> {
        let (user, host) = match destination.rfind('@') {
            Some(0) => {
                return Err(ConfigError::name(format!(
                    "empty user in {}",
                    shown(destination)
                )))
            }
            Some(at) => (Some(&destination[..at]), &destination[at + 1..]),
            None => (None, destination),
        };
        if host.is_empty() {
            return Err(ConfigError::name(format!(
                "no host in {}",
                shown(destination)
            )));
        }
        // As ssh checks its command line, before any `%` token can see
        // them (CVE-2023-51385, CVE-2026-35386).
        if let Some(why) = user.and_then(ssh_user_problem) {
            return Err(ConfigError::name(why));
        }
        if let Some(why) = ssh_hostname_problem(host) {
            return Err(ConfigError::name(why));
        }
        let inner = self;
        let host_arg = host;
        let mut opts = Options {
            user: user.map(str::to_owned),
            ..Options::default()
        };
        let mut pass = Pass {
            inner,
            until,
            host_arg,
            host: host.to_owned(),
            final_pass: false,
            want_final: false,
        };
        for &root in &inner.files.roots {
            pass.read(root, &mut opts, true, false)?;
        }
        let want_final = pass.want_final;
        let mut host = match &opts.hostname {
            Some(h) => utf8(
                expand(h.as_bytes(), &[(b'h', host)], false)
                    .map_err(|e| ConfigError::new(format!("HostName {}: {e}", shown(h))))?,
                "HostName",
            )
            .map_err(ConfigError::new)?,
            None => host.to_owned(),
        };
        if opts.hostname.is_some() {
            opts.hostname = Some(host.clone());
        }
        if crate::target::parse_ip_literal(&host).is_none() {
            host = host.to_ascii_lowercase();
        }
        match opts.other.get("canonicalizehostname").and_then(|v| v.first()) {
            Some(v) if !matches!(v.to_ascii_lowercase().as_str(), "no" | "false") => {
                return Err(ConfigError::new(format!(
                    "CanonicalizeHostname {} is not supported (ssh-dial does not canonicalise host names)",
                    shown(v)
                )))
            }
            _ => {}
        }
        if want_final {
            opts.hostname = Some(host.clone());
            let mut pass = Pass {
                inner,
                until,
                host_arg,
                host: host.clone(),
                final_pass: true,
                want_final: false,
            };
            for &root in &inner.files.roots {
                pass.read(root, &mut opts, true, false)?;
            }
        }
        opts.finish(host_arg, host, &inner.local)
    }
}

/// One pass over the files for a host.
struct Pass<'a> {
    inner: &'a SshConfig,
    until: &'a Until,
    /// The name as given (`originalhost`, `%n`).
    host_arg: &'a str,
    /// What `Host` lines match: the name as given in the first pass, the
    /// final host name in the final pass.
    host: String,
    final_pass: bool,
    want_final: bool,
}

impl Pass<'_> {
    /// Reads one file's lines. `active` is whether lines apply (set by
    /// `Host` and `Match`); `never` marks a file included from an inactive
    /// block, whose `Host` and `Match` lines never match.
    fn read(
        &mut self,
        id: u32,
        opts: &mut Options,
        mut active: bool,
        never: bool,
    ) -> Result<bool, ConfigError> {
        let files = &self.inner.files;
        let file = &files.files[id as usize];
        let mut includes = file.includes.iter().peekable();
        for (number, text) in lines(&file.text) {
            let Some((keyword, rest)) = keyword_and_rest(text) else {
                continue;
            };
            let include = includes.next_if(|i| i.line as usize == number);
            let line = Line {
                file,
                number,
                keyword: &keyword,
                rest,
                include,
            };
            active = self.line(&line, opts, active, never)?;
        }
        Ok(active)
    }

    fn line(
        &mut self,
        line: &Line<'_>,
        opts: &mut Options,
        active: bool,
        never: bool,
    ) -> Result<bool, ConfigError> {
        let err = |m: String| ConfigError::at(&line.file.path, line.number, m);
        let Some(keyword) = canonical(line.keyword) else {
            // An unknown keyword is an error wherever it is, active or
            // not, unless IgnoreUnknown (as obtained so far) covers it.
            let lower = line.keyword.to_ascii_lowercase();
            let ignored = opts
                .ignore_unknown
                .as_deref()
                .is_some_and(|list| pattern::list(&lower, list, true) == Listed::Yes);
            if !ignored {
                return Err(err(format!("bad configuration option: {}", shown(&lower))));
            }
            return Ok(active);
        };
        match keyword {
            "host" => {
                if never {
                    return Ok(false);
                }
                let mut matched = false;
                for pattern in Args::new(line.rest) {
                    let pattern = pattern.map_err(err)?;
                    let (negated, pattern) = match pattern.strip_prefix(b"!") {
                        Some(p) => (true, p),
                        None => (false, pattern.as_slice()),
                    };
                    if pattern::matches(pattern, self.host.as_bytes()) {
                        if negated {
                            return Ok(false);
                        }
                        matched = true;
                    }
                }
                return Ok(matched);
            }
            "match" => {
                let matched = self.match_line(line, opts).map_err(|e| match e {
                    Refused::Line(m) => err(m),
                    Refused::Deadline(m) => ConfigError {
                        message: format!("{} line {}: {m}", line.file.path, line.number),
                        why: Why::Deadline,
                    },
                })?;
                return Ok(!never && matched);
            }
            "include" => {
                for &id in line.include.map(|i| &*i.files).unwrap_or_default() {
                    self.read(id, opts, active, never || !active)?;
                }
                // An included file's Host and Match lines do not carry
                // over to the file that includes it.
                return Ok(active);
            }
            _ => {}
        }
        if !active {
            return Ok(active);
        }
        let args: Vec<Vec<u8>> = Args::new(line.rest)
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let first = args.first().map(Vec::as_slice).unwrap_or_default();
        let text = |what: &str| utf8(first.to_vec(), what).map_err(err);
        match keyword {
            "hostname" if opts.hostname.is_none() => opts.hostname = Some(text("HostName")?),
            "port" => set(&mut opts.port, parse_port(first).map_err(err)?),
            "user" if opts.user.is_none() => opts.user = Some(text("User")?),
            "identityfile" | "identityfile2" => {
                if opts.identity_files.len() >= MAX_IDENTITY_FILES {
                    return Err(err(format!(
                        "too many identity files (max {MAX_IDENTITY_FILES})"
                    )));
                }
                if !opts.identity_files.iter().any(|f| f == first) {
                    opts.identity_files.push(first.to_vec());
                }
            }
            "certificatefile" => {
                if opts.certificate_files.len() >= MAX_CERTIFICATE_FILES {
                    return Err(err(format!(
                        "too many certificate files (max {MAX_CERTIFICATE_FILES})"
                    )));
                }
                if !opts.certificate_files.iter().any(|f| f == first) {
                    opts.certificate_files.push(first.to_vec());
                }
            }
            "identitiesonly" => set(&mut opts.identities_only, parse_flag(first).map_err(err)?),
            "identityagent" => set(&mut opts.identity_agent, first.to_vec()),
            "proxyjump" => {
                if opts.proxy_command.is_none() && opts.proxy_jump.is_none() {
                    let hops = parse_proxy_jump(line.rest).map_err(err)?;
                    // OpenSSH checks only `-J`'s names; these reach `%h`
                    // and `%r` when the hop is resolved, so they are
                    // checked the same way here.
                    for hop in &hops {
                        hop.check().map_err(err)?;
                    }
                    opts.proxy_jump = Some(hops);
                }
            }
            // Kept even after a ProxyJump, as OpenSSH keeps it: `ssh -G`
            // then prints the ProxyJump, and a dial fails with
            // "inconsistent options".
            "proxycommand" => {
                let command = skip(line.rest, b" \t\r\n=");
                set(
                    &mut opts.proxy_command,
                    String::from_utf8_lossy(command).into_owned(),
                );
            }
            "connecttimeout" => set_time(&mut opts.connect_timeout, first).map_err(err)?,
            "connectionattempts" => set(
                &mut opts.connection_attempts,
                parse_int(first).map_err(err)?,
            ),
            "serveraliveinterval" => {
                set_time(&mut opts.server_alive_interval, first).map_err(err)?
            }
            "serveralivecountmax" => set(
                &mut opts.server_alive_count_max,
                parse_int(first).map_err(err)?,
            ),
            "userknownhostsfile" => set(&mut opts.user_known_hosts_files, args.clone()),
            "globalknownhostsfile" => set(&mut opts.global_known_hosts_files, args.clone()),
            "stricthostkeychecking" => set(
                &mut opts.strict_host_key_checking,
                parse_strict(first).map_err(err)?,
            ),
            "hashknownhosts" => set(&mut opts.hash_known_hosts, parse_flag(first).map_err(err)?),
            "hostkeyalias" if opts.host_key_alias.is_none() => {
                opts.host_key_alias = Some(text("HostKeyAlias")?)
            }
            "addressfamily" => set(&mut opts.address_family, parse_family(first).map_err(err)?),
            "preferredauthentications" => set(
                &mut opts.preferred_authentications,
                String::from_utf8_lossy(first).into_owned(),
            ),
            "pubkeyauthentication" | "dsaauthentication" => set(
                &mut opts.pubkey_authentication,
                parse_pubkey(first).map_err(err)?,
            ),
            "passwordauthentication" => set(
                &mut opts.password_authentication,
                parse_flag(first).map_err(err)?,
            ),
            "batchmode" => set(&mut opts.batch_mode, parse_flag(first).map_err(err)?),
            "ignoreunknown" => set(&mut opts.ignore_unknown, first.to_vec()),
            "hostname" | "user" | "hostkeyalias" => {}
            keyword => {
                opts.other.entry(keyword.to_owned()).or_insert_with(|| {
                    args.iter()
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect()
                });
            }
        }
        Ok(active)
    }

    /// A `Match` line: `match_cfg_line`.
    fn match_line(&mut self, line: &Line<'_>, opts: &Options) -> Result<bool, Refused> {
        let refuse = |m: String| Refused::Line(m);
        let local = &self.inner.local;
        let ruser = opts.user.as_deref().unwrap_or(&local.user);
        let host = if self.final_pass {
            opts.hostname.clone().unwrap_or_default()
        } else {
            match &opts.hostname {
                Some(h) => utf8(
                    expand(h.as_bytes(), &[(b'h', self.host_arg)], false).map_err(refuse)?,
                    "HostName",
                )
                .map_err(refuse)?,
                None => self.host_arg.to_owned(),
            }
        };
        let mut rest = Some(line.rest);
        let mut result = true;
        let mut attributes = 0;
        loop {
            let (word, after) = strdelim(rest);
            rest = after;
            let Some(word) = word.filter(|w| !w.is_empty()) else {
                break;
            };
            if word[0] == b'#' {
                rest = None;
                break;
            }
            let (negate, attr) = match word.strip_prefix(b"!") {
                Some(a) => (true, a),
                None => (false, &word[..]),
            };
            let attr = attr.to_ascii_lowercase();
            if attr == b"all" {
                let (next, after) = strdelim(rest);
                if attributes > 1
                    || next
                        .as_deref()
                        .is_some_and(|n| !n.is_empty() && n[0] != b'#')
                {
                    return Err(refuse(format!(
                        "'{}' cannot be combined with other Match attributes",
                        shown(&word)
                    )));
                }
                rest = if next.is_some_and(|n| n.first() == Some(&b'#')) {
                    None
                } else {
                    after
                };
                if !rest.unwrap_or_default().is_empty() {
                    return Err(refuse(
                        "Match all: extra arguments at end of line".to_owned(),
                    ));
                }
                return Ok(result && !negate);
            }
            attributes += 1;
            if attr == b"canonical" || attr == b"final" {
                if attr == b"canonical" && !self.inner.allow_canonical {
                    return Err(refuse(
                        "Match canonical is refused: ssh-dial does not canonicalise host names \
                         (SshConfig::allow_match_canonical)"
                            .to_owned(),
                    ));
                }
                if attr == b"final" {
                    self.want_final = true;
                }
                if self.final_pass == negate {
                    result = false;
                }
                continue;
            }
            let (arg, after) = strdelim(rest);
            rest = after;
            let Some(arg) = arg.filter(|a| !a.is_empty() && a[0] != b'#') else {
                return Err(refuse(format!(
                    "missing Match criteria for {}",
                    shown(&attr)
                )));
            };
            let matched = match attr.as_slice() {
                b"host" => {
                    pattern::list(host.to_ascii_lowercase().as_bytes(), &arg, true) == Listed::Yes
                }
                b"originalhost" => {
                    pattern::list(self.host_arg.to_ascii_lowercase().as_bytes(), &arg, true)
                        == Listed::Yes
                }
                b"user" => pattern::list(ruser.as_bytes(), &arg, false) == Listed::Yes,
                b"localuser" => pattern::list(local.user.as_bytes(), &arg, false) == Listed::Yes,
                b"exec" => {
                    if !self.inner.allow_exec {
                        return Err(refuse(
                            "Match exec is refused (SshConfig::allow_match_exec)".to_owned(),
                        ));
                    }
                    let port = opts.port.unwrap_or(22).to_string();
                    let alias = opts.host_key_alias.as_deref().unwrap_or(&host);
                    let tokens = Tokens {
                        local,
                        host: &host,
                        host_arg: self.host_arg,
                        port: &port,
                        user: ruser,
                        alias,
                    }
                    .list();
                    let command = expand(&arg, &tokens, false).map_err(refuse)?;
                    if !result {
                        // OpenSSH skips the command once the line cannot
                        // match (after expanding it, which may fail).
                        continue;
                    }
                    check_names("Match exec", &arg, &tokens).map_err(refuse)?;
                    run_exec(&command, self.until)?
                }
                _ => {
                    return Err(refuse(format!(
                        "unsupported Match attribute {}",
                        shown(&attr)
                    )))
                }
            };
            if matched == negate {
                result = false;
            }
        }
        if attributes == 0 {
            return Err(refuse(
                "one or more attributes required for Match".to_owned(),
            ));
        }
        if !rest.unwrap_or_default().is_empty() {
            return Err(refuse(format!(
                "Match: extra arguments at end of line: {}",
                shown(rest.unwrap_or_default())
            )));
        }
        Ok(result)
    }
}

/// One line of a file, as a pass reads it.
struct Line<'a> {
    file: &'a File,
    number: usize,
    keyword: &'a [u8],
    rest: &'a [u8],
    /// For an `Include`: the files it read.
    include: Option<&'a Include>,
}
