//! OpenSSH client configuration (`~/.ssh/config`), resolved for a host the
//! way `ssh -G` resolves it.
//!
//! This is a port of the parts of OpenSSH 9.2's `readconf.c` and `ssh.c`
//! that decide a connection's settings: lines split as `argv_split` splits
//! them (quotes, backslash escapes, `Key=Value` and `Key Value`, `#`
//! comments), `Host` blocks (patterns matched against the name as typed,
//! a negated pattern that matches voids the block), `Match` with `host`,
//! `originalhost`, `user`, `localuser`, `all`, `final` and `canonical`
//! (and `exec`, when allowed), `Include` with globs, paths relative to
//! `~/.ssh` and the depth limit of 16, the first obtained value of each key
//! winning, `HostName` with `%h`, the final pass that `Match final`
//! requests (where `Host` lines see the final host name), and the `%` tokens
//! and `~` of the keys that take them.
//!
//! It is written here rather than taken from the registry because the
//! crates there each get part of this wrong in ways that change which host
//! is dialed: one applies a `Match` block's settings to the `Host` block
//! above it, another reads nine keys and splits values on a single space.
//! `tests/ssh_config_differential.rs` compares the result with the real
//! `ssh -G` on generated configurations.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::host_keys::HostKeys;
use crate::pattern::{self, Listed};
use crate::tcp::AddressFamily;

/// How deep `Include` may nest, as in OpenSSH (`READCONF_MAX_DEPTH`).
const MAX_DEPTH: usize = 16;
/// The most `IdentityFile`s a host may have (`SSH_MAX_IDENTITY_FILES`).
const MAX_IDENTITY_FILES: usize = 100;
/// The most known_hosts files of each kind (`SSH_MAX_HOSTS_FILES`).
const MAX_HOSTS_FILES: usize = 32;

/// An OpenSSH client configuration, parsed and ready to be resolved for a
/// host.
///
/// Cheap to clone. Files (and the files they `Include`) are read once, by
/// the `load` functions; [`resolve`](SshConfig::resolve) reads nothing
/// except for `Match exec`, which is refused unless
/// [allowed](SshConfig::allow_match_exec).
///
/// # Examples
///
/// ```
/// use ssh_dial::SshConfig;
///
/// let config = SshConfig::parse(
///     "Host db\n  HostName 10.0.0.7\n  User deploy\n  ProxyJump bastion\n",
/// )?;
/// let db = config.resolve("db")?;
/// assert_eq!(db.hostname(), "10.0.0.7");
/// assert_eq!(db.user(), "deploy");
/// assert_eq!(db.proxy_jump()[0].host(), "bastion");
/// # Ok::<(), ssh_dial::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SshConfig {
    files: Arc<[File]>,
    local: Arc<Local>,
    allow_exec: bool,
    allow_canonical: bool,
}

/// One parsed file.
#[derive(Debug)]
struct File {
    path: String,
    lines: Vec<Line>,
}

#[derive(Debug)]
struct Line {
    number: usize,
    keyword: String,
    /// The arguments, split as `argv_split` splits them.
    args: Vec<String>,
    /// The text after the keyword, as written (for `Match` and `ProxyJump`,
    /// which OpenSSH parses from the raw text).
    rest: String,
    /// For `Include`: the files it named, read.
    included: Vec<File>,
}

/// Who and where the local side is, for `%u`, `%d`, `%l`, `Match
/// localuser` and `~`.
#[derive(Debug, Clone)]
struct Local {
    user: String,
    uid: u32,
    home: String,
    hostname: String,
}

/// Why a configuration could not be read or resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }

    pub(crate) fn from_panic(e: tokio::task::JoinError) -> Self {
        ConfigError::new(format!("resolving the configuration failed: {e}"))
    }

    fn at(file: &str, line: usize, message: impl fmt::Display) -> Self {
        ConfigError::new(format!("{file} line {line}: {message}"))
    }
}

/// `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StrictHostKeyChecking {
    /// `yes`: only keys on file are trusted.
    Yes,
    /// `ask` (the default). ssh-dial never asks, so it refuses unknown keys
    /// as `ssh -o BatchMode=yes` does.
    Ask,
    /// `accept-new`: unknown hosts are learned, changed keys refused.
    AcceptNew,
    /// `no` or `off`: any key is accepted.
    No,
}

impl StrictHostKeyChecking {
    /// The value as `ssh -G` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StrictHostKeyChecking::Yes => "true",
            StrictHostKeyChecking::Ask => "ask",
            StrictHostKeyChecking::AcceptNew => "accept-new",
            StrictHostKeyChecking::No => "false",
        }
    }
}

/// One hop of a `ProxyJump` chain: `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    /// As written, which `ssh -G` prints for all hops but the last.
    spec: String,
}

impl JumpHost {
    /// Parses `[user@]host[:port]` (IPv6 in brackets) or
    /// `ssh://[user@]host[:port]`, as `ssh -J` does.
    ///
    /// # Errors
    ///
    /// If there is no host, the user is empty or the port is not a number
    /// from 1 to 65535.
    pub fn parse(spec: &str) -> Result<JumpHost, ConfigError> {
        parse_jump_host(spec).ok_or_else(|| ConfigError::new(format!("invalid jump host {spec:?}")))
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

    /// Parses a comma-separated chain, as `ProxyJump` and `ssh -J` take it.
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse), for any hop.
    pub fn parse_chain(chain: &str) -> Result<Vec<JumpHost>, ConfigError> {
        chain.split(',').map(JumpHost::parse).collect()
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

/// The settings a configuration gives one host, with OpenSSH's defaults
/// where it gives none: what `ssh -G host` prints, for the keys ssh-dial
/// honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    host: String,
    hostname: String,
    port: u16,
    user: String,
    identity_files: Vec<String>,
    identity_paths: Vec<PathBuf>,
    identities_only: bool,
    identity_agent: Option<String>,
    proxy_jump: Vec<JumpHost>,
    proxy_command: Option<String>,
    connect_timeout: Option<Duration>,
    connection_attempts: u32,
    server_alive_interval: Option<Duration>,
    server_alive_count_max: u32,
    user_known_hosts_files: Vec<String>,
    global_known_hosts_files: Vec<String>,
    strict_host_key_checking: StrictHostKeyChecking,
    hash_known_hosts: bool,
    host_key_alias: Option<String>,
    address_family: AddressFamily,
    preferred_authentications: Option<String>,
    pubkey_authentication: String,
    password_authentication: bool,
    batch_mode: bool,
    other: BTreeMap<String, Vec<String>>,
    /// For `~` in `GlobalKnownHostsFile`, expanded when read.
    home: String,
}

impl HostConfig {
    /// The name as given to [`SshConfig::resolve`] (`%n`).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// `HostName` with `%h` expanded, or the name as given; lowercase
    /// unless an address.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }
    /// `Port`, 22 by default.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The user from the destination, `User`, or the local user.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// `IdentityFile`s as written (OpenSSH's defaults if none), as `ssh -G`
    /// prints them.
    pub fn identity_files(&self) -> &[String] {
        &self.identity_files
    }
    /// The `IdentityFile`s with `~`, `%` tokens and `${VAR}` expanded: the
    /// paths ssh-dial reads.
    pub fn identity_paths(&self) -> &[PathBuf] {
        &self.identity_paths
    }
    /// `IdentitiesOnly`.
    pub fn identities_only(&self) -> bool {
        self.identities_only
    }
    /// `IdentityAgent`, expanded; `none` turns the agent off, `SSH_AUTH_SOCK`
    /// (or unset) means the environment's.
    pub fn identity_agent(&self) -> Option<&str> {
        self.identity_agent.as_deref()
    }
    /// The `ProxyJump` chain, first hop first; empty for a direct dial.
    pub fn proxy_jump(&self) -> &[JumpHost] {
        &self.proxy_jump
    }
    /// `ProxyCommand`, which ssh-dial does not run: a dial of a host with
    /// one fails with a clear error.
    pub fn proxy_command(&self) -> Option<&str> {
        self.proxy_command.as_deref()
    }
    /// `ConnectTimeout`.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }
    /// `ConnectionAttempts`, 1 by default.
    pub fn connection_attempts(&self) -> u32 {
        self.connection_attempts
    }
    /// `ServerAliveInterval`, if set; zero is off, as is unset in
    /// OpenSSH. (Debian's `ssh` makes unset 300 s under `BatchMode yes`.)
    pub fn server_alive_interval(&self) -> Option<Duration> {
        self.server_alive_interval
    }
    /// `ServerAliveCountMax`, 3 by default.
    pub fn server_alive_count_max(&self) -> u32 {
        self.server_alive_count_max
    }
    /// `UserKnownHostsFile`s, expanded; empty for `none`.
    pub fn user_known_hosts_files(&self) -> &[String] {
        &self.user_known_hosts_files
    }
    /// `GlobalKnownHostsFile`s as written; empty for `none`.
    pub fn global_known_hosts_files(&self) -> &[String] {
        &self.global_known_hosts_files
    }
    /// `StrictHostKeyChecking`.
    pub fn strict_host_key_checking(&self) -> StrictHostKeyChecking {
        self.strict_host_key_checking
    }
    /// `HashKnownHosts`.
    pub fn hash_known_hosts(&self) -> bool {
        self.hash_known_hosts
    }
    /// `HostKeyAlias`, lowercased: the name the host key is looked up and
    /// learned under, instead of `[host]:port`.
    pub fn host_key_alias(&self) -> Option<&str> {
        self.host_key_alias.as_deref()
    }
    /// `AddressFamily`.
    pub fn address_family(&self) -> AddressFamily {
        self.address_family
    }
    /// `PreferredAuthentications`, if set.
    pub fn preferred_authentications(&self) -> Option<&str> {
        self.preferred_authentications.as_deref()
    }
    /// Whether `PubkeyAuthentication` allows keys (anything but `no`).
    pub fn pubkey_authentication(&self) -> bool {
        self.pubkey_authentication != "false"
    }
    /// `PasswordAuthentication`.
    pub fn password_authentication(&self) -> bool {
        self.password_authentication
    }
    /// `BatchMode`. ssh-dial never prompts, so it changes nothing.
    pub fn batch_mode(&self) -> bool {
        self.batch_mode
    }
    /// A key ssh-dial does not honour, with its arguments as read (the
    /// first obtained value), by its lowercase name.
    pub fn other(&self, key: &str) -> Option<&[String]> {
        self.other.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// The host key policy these settings describe: `UserKnownHostsFile`s
    /// and `GlobalKnownHostsFile`s read, unknown hosts refused under
    /// `yes` and `ask` (ssh-dial never asks), learned into the first user
    /// file under `accept-new` (hashed if `HashKnownHosts`), and any key
    /// accepted under `no`.
    pub fn host_keys(&self) -> HostKeys {
        let user: Vec<PathBuf> = self
            .user_known_hosts_files
            .iter()
            .map(PathBuf::from)
            .collect();
        let home = self.home.as_str();
        let global: Vec<PathBuf> = self
            .global_known_hosts_files
            .iter()
            .map(|f| PathBuf::from(tilde(f, home)))
            .collect();
        match self.strict_host_key_checking {
            StrictHostKeyChecking::No => HostKeys::insecure_accept_any(),
            StrictHostKeyChecking::AcceptNew => {
                let learn = user.first().cloned();
                HostKeys::files(user, global, learn, self.hash_known_hosts)
            }
            StrictHostKeyChecking::Yes | StrictHostKeyChecking::Ask => {
                HostKeys::files(user, global, None, self.hash_known_hosts)
            }
        }
    }

    /// The credentials these settings offer, as `ssh` would: each
    /// `IdentityFile` that exists (unencrypted, or the dial fails naming
    /// it), then the agent at `IdentityAgent` (or `$SSH_AUTH_SOCK`) unless
    /// `IdentitiesOnly` or `IdentityAgent none`; nothing if
    /// `PubkeyAuthentication no`. `None` when there is nothing to offer.
    pub fn auth(&self) -> Option<Auth> {
        if !self.pubkey_authentication() {
            return None;
        }
        let mut auth: Option<Auth> = None;
        let mut add = |a: Auth| {
            auth = Some(match auth.take() {
                Some(prev) => prev.or(a),
                None => a,
            })
        };
        for path in &self.identity_paths {
            if path.is_file() {
                add(Auth::key_file(path.clone(), None));
            }
        }
        if !self.identities_only {
            match self.identity_agent.as_deref() {
                Some("none") => {}
                None | Some("SSH_AUTH_SOCK") | Some("$SSH_AUTH_SOCK") => {
                    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
                        add(Auth::agent());
                    }
                }
                Some(socket) if socket.starts_with('$') => {
                    if let Some(path) = std::env::var_os(&socket[1..]) {
                        add(Auth::agent_at(path));
                    }
                }
                Some(socket) => add(Auth::agent_at(socket)),
            }
        }
        auth
    }

    /// The settings as `ssh -G` prints them: `key value` lines, keys in
    /// lower case, for every key ssh-dial honours.
    pub fn to_ssh_g(&self) -> Vec<(&'static str, String)> {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let mut out = vec![
            ("host", self.host.clone()),
            ("user", self.user.clone()),
            ("hostname", self.hostname.clone()),
            ("port", self.port.to_string()),
            ("addressfamily", family_str(self.address_family).to_owned()),
            ("batchmode", yes_no(self.batch_mode)),
            ("hashknownhosts", yes_no(self.hash_known_hosts)),
            ("identitiesonly", yes_no(self.identities_only)),
            (
                "passwordauthentication",
                yes_no(self.password_authentication),
            ),
            ("pubkeyauthentication", self.pubkey_authentication.clone()),
            (
                "stricthostkeychecking",
                self.strict_host_key_checking.as_str().to_owned(),
            ),
            ("connectionattempts", self.connection_attempts.to_string()),
            (
                "serveralivecountmax",
                self.server_alive_count_max.to_string(),
            ),
            (
                "serveraliveinterval",
                self.server_alive_interval
                    .unwrap_or_default()
                    .as_secs()
                    .to_string(),
            ),
        ];
        if let Some(alias) = &self.host_key_alias {
            out.push(("hostkeyalias", alias.clone()));
        }
        if let Some(agent) = &self.identity_agent {
            out.push(("identityagent", agent.clone()));
        }
        if let Some(pref) = &self.preferred_authentications {
            out.push(("preferredauthentications", pref.clone()));
        }
        for file in &self.identity_files {
            out.push(("identityfile", file.clone()));
        }
        let one_line = |files: &[String]| {
            if files.is_empty() {
                "none".to_owned()
            } else {
                files.join(" ")
            }
        };
        out.push((
            "globalknownhostsfile",
            one_line(&self.global_known_hosts_files),
        ));
        out.push(("userknownhostsfile", one_line(&self.user_known_hosts_files)));
        out.push((
            "connecttimeout",
            match self.connect_timeout {
                Some(t) => t.as_secs().to_string(),
                None => "none".to_owned(),
            },
        ));
        if let Some((last, first)) = self.proxy_jump.split_last() {
            let mut value = String::new();
            for hop in first {
                value.push_str(&hop.spec);
                value.push(',');
            }
            value.push_str(&last.to_string());
            out.push(("proxyjump", value));
        } else if let Some(command) = &self.proxy_command {
            out.push(("proxycommand", command.clone()));
        }
        out
    }
}

fn family_str(family: AddressFamily) -> &'static str {
    match family {
        AddressFamily::Inet => "inet",
        AddressFamily::Inet6 => "inet6",
        _ => "any",
    }
}

impl SshConfig {
    /// The configuration `ssh` reads without `-F`: `~/.ssh/config`, then
    /// `/etc/ssh/ssh_config`. Missing files are no error.
    ///
    /// # Errors
    ///
    /// A file that cannot be read (other than missing), a line OpenSSH
    /// would refuse, an `Include` nested deeper than 16, or an included
    /// file writable by others.
    pub fn load_default() -> Result<SshConfig, ConfigError> {
        let local = Local::current();
        let user = Path::new(&local.home).join(".ssh/config");
        let mut files = Vec::new();
        for (path, is_user) in [(user, true), (PathBuf::from("/etc/ssh/ssh_config"), false)] {
            if let Some(file) = read_file(&path, is_user, &local, 0, false)? {
                files.push(file);
            }
        }
        Ok(SshConfig::new(files, local))
    }

    /// One file, as `ssh -F path` reads it (and only it). `Include`
    /// paths that are relative are taken from `~/.ssh`.
    ///
    /// # Errors
    ///
    /// As [`load_default`](Self::load_default), and if the file is missing.
    pub fn load(path: impl AsRef<Path>) -> Result<SshConfig, ConfigError> {
        let local = Local::current();
        let path = path.as_ref();
        match read_file(path, true, &local, 0, false)? {
            Some(file) => Ok(SshConfig::new(vec![file], local)),
            None => Err(ConfigError::new(format!(
                "cannot open config file {}: no such file",
                path.display()
            ))),
        }
    }

    /// A configuration from text, as if read from a user file.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn parse(text: &str) -> Result<SshConfig, ConfigError> {
        let local = Local::current();
        let file = parse_file("(string)", text, true, &local, 0)?;
        Ok(SshConfig::new(vec![file], local))
    }

    /// An empty configuration: every host gets OpenSSH's defaults.
    pub fn empty() -> SshConfig {
        SshConfig::new(Vec::new(), Local::current())
    }

    fn new(files: Vec<File>, local: Local) -> SshConfig {
        SshConfig {
            files: files.into(),
            local: Arc::new(local),
            allow_exec: false,
            allow_canonical: false,
        }
    }

    /// Whether `Match exec` may run its command (with `sh -c`, as `ssh`
    /// does). Off by default: resolving a host then fails with an error
    /// that names the line. [`resolve`](Self::resolve) then blocks while
    /// the command runs; a [`Dialer`](crate::Dialer) resolves on the
    /// blocking pool under the dial's deadline (a command still running
    /// when the deadline passes runs on until it ends).
    #[must_use]
    pub fn allow_match_exec(mut self, allow: bool) -> SshConfig {
        self.allow_exec = allow;
        self
    }

    /// Whether resolving may run commands (`Match exec` allowed).
    pub(crate) fn runs_commands(&self) -> bool {
        self.allow_exec
    }

    /// Whether `Match canonical` is accepted. ssh-dial does not
    /// canonicalise host names (`CanonicalizeHostname`), so when allowed,
    /// `canonical` matches only in the final pass, exactly as in `ssh` with
    /// `CanonicalizeHostname no`. Off by default: resolving a host whose
    /// file has such a line fails with an error that names it.
    #[must_use]
    pub fn allow_match_canonical(mut self, allow: bool) -> SshConfig {
        self.allow_canonical = allow;
        self
    }

    /// Resolves `destination` (`[user@]host`, as `ssh` takes it) as
    /// `ssh -G destination` would.
    ///
    /// # Errors
    ///
    /// An empty host or user, a `%` token a key does not take, an
    /// unknown keyword (unless `IgnoreUnknown` covers it), `Match exec` or
    /// `Match canonical` when not allowed, `CanonicalizeHostname` other
    /// than `no`, or a `ProxyJump` that loops to the host itself.
    pub fn resolve(&self, destination: &str) -> Result<HostConfig, ConfigError> {
        let (user, host) = match destination.rfind('@') {
            Some(0) => return Err(ConfigError::new(format!("empty user in {destination:?}"))),
            Some(at) => (Some(&destination[..at]), &destination[at + 1..]),
            None => (None, destination),
        };
        if host.is_empty() {
            return Err(ConfigError::new(format!("no host in {destination:?}")));
        }
        let inner = self;
        let host_arg = host;
        let mut opts = Options {
            user: user.map(str::to_owned),
            ..Options::default()
        };
        let mut pass = Pass {
            inner,
            host_arg,
            host: host.to_owned(),
            final_pass: false,
            want_final: false,
        };
        for file in inner.files.iter() {
            pass.read(file, &mut opts, true, false)?;
        }
        let want_final = pass.want_final;
        let mut host = match &opts.hostname {
            Some(h) => expand(h, &[('h', host)], false)
                .map_err(|e| ConfigError::new(format!("HostName {h:?}: {e}")))?,
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
                    "CanonicalizeHostname {v} is not supported (ssh-dial does not canonicalise host names)"
                )))
            }
            _ => {}
        }
        if want_final {
            opts.hostname = Some(host.clone());
            let mut pass = Pass {
                inner,
                host_arg,
                host: host.clone(),
                final_pass: true,
                want_final: false,
            };
            for file in inner.files.iter() {
                pass.read(file, &mut opts, true, false)?;
            }
        }
        opts.finish(host_arg, host, &inner.local)
    }
}

/// The values obtained so far; `None` is OpenSSH's "unset".
#[derive(Debug, Default)]
struct Options {
    hostname: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    identity_files: Vec<String>,
    identities_only: Option<bool>,
    identity_agent: Option<String>,
    /// `Some(vec![])` is `ProxyJump none`.
    proxy_jump: Option<Vec<JumpHost>>,
    proxy_command: Option<String>,
    /// `None` until a value other than `none` is read: OpenSSH stores
    /// `none` as "unset", so a later line can still set the key.
    connect_timeout: Option<u32>,
    connection_attempts: Option<u32>,
    server_alive_interval: Option<u32>,
    server_alive_count_max: Option<u32>,
    user_known_hosts_files: Option<Vec<String>>,
    global_known_hosts_files: Option<Vec<String>>,
    strict_host_key_checking: Option<StrictHostKeyChecking>,
    hash_known_hosts: Option<bool>,
    host_key_alias: Option<String>,
    address_family: Option<AddressFamily>,
    preferred_authentications: Option<String>,
    pubkey_authentication: Option<String>,
    password_authentication: Option<bool>,
    batch_mode: Option<bool>,
    ignore_unknown: Option<String>,
    other: BTreeMap<String, Vec<String>>,
}

/// One pass over the files for a host.
struct Pass<'a> {
    inner: &'a SshConfig,
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
        file: &File,
        opts: &mut Options,
        mut active: bool,
        never: bool,
    ) -> Result<bool, ConfigError> {
        for line in &file.lines {
            active = self.line(file, line, opts, active, never)?;
        }
        Ok(active)
    }

    fn line(
        &mut self,
        file: &File,
        line: &Line,
        opts: &mut Options,
        active: bool,
        never: bool,
    ) -> Result<bool, ConfigError> {
        let err = |m: String| ConfigError::at(&file.path, line.number, m);
        let args = &line.args;
        let first = args.first().map(String::as_str);
        match line.keyword.as_str() {
            "host" => {
                if never {
                    return Ok(false);
                }
                let mut matched = false;
                for pattern in args {
                    let (negated, pattern) = match pattern.strip_prefix('!') {
                        Some(p) => (true, p),
                        None => (false, pattern.as_str()),
                    };
                    if pattern::matches(pattern.as_bytes(), self.host.as_bytes()) {
                        if negated {
                            return Ok(false);
                        }
                        matched = true;
                    }
                }
                return Ok(matched);
            }
            "match" => {
                let matched = self.match_line(file, line, opts)?;
                return Ok(!never && matched);
            }
            "include" => {
                for included in &line.included {
                    self.read(included, opts, active, never || !active)?;
                }
                // An included file's Host and Match lines do not carry
                // over to the file that includes it.
                return Ok(active);
            }
            _ => {}
        }
        // An unknown keyword is an error wherever it is, active or not,
        // unless IgnoreUnknown (as obtained so far) covers it.
        if !HONOURED.contains(&line.keyword.as_str()) && !KEYWORDS.contains(&line.keyword.as_str())
        {
            let ignored = opts.ignore_unknown.as_deref().is_some_and(|list| {
                pattern::list(line.keyword.as_bytes(), list.as_bytes(), true) == Listed::Yes
            });
            if !ignored {
                return Err(err(format!("bad configuration option: {}", line.keyword)));
            }
            return Ok(active);
        }
        if !active {
            return Ok(active);
        }
        let first = first.unwrap_or("");
        match line.keyword.as_str() {
            "hostname" => set(&mut opts.hostname, first.to_owned()),
            "port" => set(&mut opts.port, parse_port(first).map_err(err)?),
            "user" => set(&mut opts.user, first.to_owned()),
            "identityfile" | "identityfile2" => {
                if opts.identity_files.len() >= MAX_IDENTITY_FILES {
                    return Err(err(format!(
                        "too many identity files (max {MAX_IDENTITY_FILES})"
                    )));
                }
                if !opts.identity_files.iter().any(|f| f == first) {
                    opts.identity_files.push(first.to_owned());
                }
            }
            "identitiesonly" => set(&mut opts.identities_only, parse_flag(first).map_err(err)?),
            "identityagent" => set(&mut opts.identity_agent, first.to_owned()),
            "proxyjump" => {
                if opts.proxy_command.is_none() && opts.proxy_jump.is_none() {
                    opts.proxy_jump = Some(parse_proxy_jump(&line.rest).map_err(err)?);
                }
            }
            "proxycommand" => {
                if opts.proxy_jump.is_none() {
                    set(
                        &mut opts.proxy_command,
                        line.rest.trim_start_matches([' ', '\t', '=']).to_owned(),
                    );
                }
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
            "hostkeyalias" => set(&mut opts.host_key_alias, first.to_owned()),
            "addressfamily" => set(&mut opts.address_family, parse_family(first).map_err(err)?),
            "preferredauthentications" => {
                set(&mut opts.preferred_authentications, first.to_owned())
            }
            "pubkeyauthentication" | "dsaauthentication" => set(
                &mut opts.pubkey_authentication,
                parse_pubkey(first).map_err(err)?,
            ),
            "passwordauthentication" => set(
                &mut opts.password_authentication,
                parse_flag(first).map_err(err)?,
            ),
            "batchmode" => set(&mut opts.batch_mode, parse_flag(first).map_err(err)?),
            "ignoreunknown" => set(&mut opts.ignore_unknown, first.to_owned()),
            keyword => {
                opts.other
                    .entry(keyword.to_owned())
                    .or_insert_with(|| args.clone());
            }
        }
        Ok(active)
    }

    /// A `Match` line: `match_cfg_line`.
    fn match_line(
        &mut self,
        file: &File,
        line: &Line,
        opts: &Options,
    ) -> Result<bool, ConfigError> {
        let err = |m: String| ConfigError::at(&file.path, line.number, m);
        let local = &self.inner.local;
        let ruser = opts.user.clone().unwrap_or_else(|| local.user.clone());
        let host = if self.final_pass {
            opts.hostname.clone().unwrap_or_default()
        } else {
            match &opts.hostname {
                Some(h) => expand(h, &[('h', self.host_arg)], false).map_err(err)?,
                None => self.host_arg.to_owned(),
            }
        };
        let mut words = Words::new(&line.rest);
        let mut result = true;
        let mut attributes = 0;
        while let Some(word) = words.next() {
            if word.starts_with('#') {
                break;
            }
            let (negate, attr) = match word.strip_prefix('!') {
                Some(a) => (true, a),
                None => (false, word.as_str()),
            };
            let attr = attr.to_ascii_lowercase();
            if attr == "all" {
                let next = words.next();
                if attributes > 1 || next.as_deref().is_some_and(|n| !n.starts_with('#')) {
                    return Err(err(format!(
                        "'{word}' cannot be combined with other Match attributes"
                    )));
                }
                return Ok(result && !negate);
            }
            attributes += 1;
            if attr == "canonical" || attr == "final" {
                if attr == "canonical" && !self.inner.allow_canonical {
                    return Err(err(
                        "Match canonical is refused: ssh-dial does not canonicalise host names \
                         (SshConfig::allow_match_canonical)"
                            .to_owned(),
                    ));
                }
                if attr == "final" {
                    self.want_final = true;
                }
                if self.final_pass == negate {
                    result = false;
                }
                continue;
            }
            let Some(arg) = words
                .next()
                .filter(|a| !a.is_empty() && !a.starts_with('#'))
            else {
                return Err(err(format!("missing Match criteria for {attr}")));
            };
            let matched = match attr.as_str() {
                "host" => list(&host.to_ascii_lowercase(), &arg, true),
                "originalhost" => list(&self.host_arg.to_ascii_lowercase(), &arg, true),
                "user" => list(&ruser, &arg, false),
                "localuser" => list(&local.user, &arg, false),
                "exec" => {
                    if !self.inner.allow_exec {
                        return Err(err(
                            "Match exec is refused (SshConfig::allow_match_exec)".to_owned()
                        ));
                    }
                    if !result {
                        continue;
                    }
                    let port = opts.port.unwrap_or(22).to_string();
                    let alias = opts.host_key_alias.as_deref().unwrap_or(&host);
                    let tokens = Tokens {
                        local,
                        host: &host,
                        host_arg: self.host_arg,
                        port: &port,
                        user: &ruser,
                        alias,
                    };
                    let command = expand(&arg, &tokens.list(), false).map_err(err)?;
                    run_exec(&command).map_err(err)?
                }
                _ => return Err(err(format!("unsupported Match attribute {attr}"))),
            };
            if matched == negate {
                result = false;
            }
        }
        if attributes == 0 {
            return Err(err("one or more attributes required for Match".to_owned()));
        }
        Ok(result)
    }
}

fn run_exec(command: &str) -> Result<bool, String> {
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("match exec {command:?}: {e}"))?;
    Ok(status.success())
}

/// The `%` tokens of the keys that take OpenSSH's full set.
struct Tokens<'a> {
    local: &'a Local,
    host: &'a str,
    host_arg: &'a str,
    port: &'a str,
    user: &'a str,
    alias: &'a str,
}

impl Tokens<'_> {
    fn list(&self) -> Vec<(char, String)> {
        let local = self.local;
        let short = local.hostname.split('.').next().unwrap_or("").to_owned();
        vec![
            (
                'C',
                connection_hash(&local.hostname, self.host, self.port, self.user),
            ),
            ('L', short),
            ('i', local.uid.to_string()),
            ('k', self.alias.to_owned()),
            ('l', local.hostname.clone()),
            ('n', self.host_arg.to_owned()),
            ('p', self.port.to_owned()),
            ('d', local.home.clone()),
            ('h', self.host.to_owned()),
            ('r', self.user.to_owned()),
            ('u', local.user.clone()),
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

impl Options {
    /// `fill_default_options` and the expansions `ssh` does before `-G`.
    fn finish(
        self,
        host_arg: &str,
        host: String,
        local: &Local,
    ) -> Result<HostConfig, ConfigError> {
        let user = self.user.unwrap_or_else(|| local.user.clone());
        let port = self.port.unwrap_or(22);
        let proxy_jump = self.proxy_jump.unwrap_or_default();
        if let Some(last) = proxy_jump.last() {
            let jump_user = last.user.as_deref().unwrap_or(&user);
            if last.host == host && last.port.unwrap_or(22) == port && jump_user == user {
                return Err(ConfigError::new(format!(
                    "jump host loop via {}",
                    last.host
                )));
            }
        }
        let host_key_alias = self.host_key_alias.map(|a| a.to_ascii_lowercase());
        let port_s = port.to_string();
        let tokens = Tokens {
            local,
            host: &host,
            host_arg,
            port: &port_s,
            user: &user,
            alias: host_key_alias.as_deref().unwrap_or(host_arg),
        };
        let list = tokens.list();
        let path = |raw: &str, what: &str| -> Result<String, ConfigError> {
            expand(&tilde(raw, &local.home), &list, true)
                .map_err(|e| ConfigError::new(format!("{what} {raw:?}: {e}")))
        };
        let identity_files = if self.identity_files.is_empty() {
            [
                "id_rsa",
                "id_ecdsa",
                "id_ecdsa_sk",
                "id_ed25519",
                "id_ed25519_sk",
                "id_xmss",
                "id_dsa",
            ]
            .iter()
            .map(|f| format!("~/.ssh/{f}"))
            .collect()
        } else {
            self.identity_files
        };
        let identity_paths = identity_files
            .iter()
            .map(|f| path(f, "IdentityFile").map(PathBuf::from))
            .collect::<Result<_, _>>()?;
        let identity_agent = self
            .identity_agent
            .map(|a| path(&a, "IdentityAgent"))
            .transpose()?;
        let user_known_hosts_files = match self.user_known_hosts_files {
            Some(files) if is_none(&files) => Vec::new(),
            Some(files) => files
                .iter()
                .map(|f| path(f, "UserKnownHostsFile"))
                .collect::<Result<_, _>>()?,
            None => vec![
                path("~/.ssh/known_hosts", "UserKnownHostsFile")?,
                path("~/.ssh/known_hosts2", "UserKnownHostsFile")?,
            ],
        };
        let global_known_hosts_files = match self.global_known_hosts_files {
            Some(files) if is_none(&files) => Vec::new(),
            Some(files) => files,
            None => vec![
                "/etc/ssh/ssh_known_hosts".to_owned(),
                "/etc/ssh/ssh_known_hosts2".to_owned(),
            ],
        };
        let connection_attempts = self.connection_attempts.unwrap_or(1);
        if connection_attempts == 0 {
            return Err(ConfigError::new("invalid number of ConnectionAttempts: 0"));
        }
        Ok(HostConfig {
            host: host_arg.to_owned(),
            hostname: host,
            port,
            user,
            identity_files,
            identity_paths,
            identities_only: self.identities_only.unwrap_or(false),
            identity_agent,
            proxy_jump,
            proxy_command: self
                .proxy_command
                .filter(|c| !c.eq_ignore_ascii_case("none")),
            connect_timeout: self.connect_timeout.map(|s| Duration::from_secs(s.into())),
            connection_attempts,
            server_alive_interval: self
                .server_alive_interval
                .map(|s| Duration::from_secs(s.into())),
            server_alive_count_max: self.server_alive_count_max.unwrap_or(3),
            user_known_hosts_files,
            global_known_hosts_files,
            strict_host_key_checking: self
                .strict_host_key_checking
                .unwrap_or(StrictHostKeyChecking::Ask),
            hash_known_hosts: self.hash_known_hosts.unwrap_or(false),
            host_key_alias,
            address_family: self.address_family.unwrap_or(AddressFamily::Any),
            preferred_authentications: self.preferred_authentications,
            pubkey_authentication: self
                .pubkey_authentication
                .unwrap_or_else(|| "true".to_owned()),
            password_authentication: self.password_authentication.unwrap_or(true),
            batch_mode: self.batch_mode.unwrap_or(false),
            other: self.other,
            home: local.home.clone(),
        })
    }
}

fn is_none(files: &[String]) -> bool {
    files.len() == 1 && files[0].eq_ignore_ascii_case("none")
}

fn set<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// A time value: `none` is OpenSSH's "unset", so it leaves the slot for a
/// later line.
fn set_time(slot: &mut Option<u32>, value: &str) -> Result<(), String> {
    if let Some(t) = parse_time(value)? {
        set(slot, t);
    }
    Ok(())
}

/// Checks what OpenSSH checks of each value as it reads a line, whether or
/// not the line applies: a bad value anywhere in a file is an error.
fn validate(keyword: &str, args: &[String], rest: &str) -> Result<(), String> {
    let first = args.first().map(String::as_str).unwrap_or("");
    let missing = || Err("missing argument".to_owned());
    match keyword {
        "host" | "match" | "include" => {
            if keyword == "host" && args.iter().any(String::is_empty) {
                return Err("empty argument".to_owned());
            }
            return Ok(());
        }
        "port" => parse_port(first).map(drop)?,
        "identitiesonly" | "hashknownhosts" | "passwordauthentication" | "batchmode" => {
            parse_flag(first).map(drop)?
        }
        "connecttimeout" | "serveraliveinterval" => parse_time(first).map(drop)?,
        "connectionattempts" | "serveralivecountmax" => parse_int(first).map(drop)?,
        "stricthostkeychecking" => parse_strict(first).map(drop)?,
        "addressfamily" => parse_family(first).map(drop)?,
        "pubkeyauthentication" | "dsaauthentication" => parse_pubkey(first).map(drop)?,
        "hostname"
        | "user"
        | "hostkeyalias"
        | "preferredauthentications"
        | "identityfile"
        | "identityfile2"
        | "identityagent"
        | "ignoreunknown"
            if first.is_empty() =>
        {
            return missing()
        }
        "identityagent" => {
            if first.starts_with('$')
                && !first.starts_with("${")
                && !first[1..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(format!("invalid environment name {first}"));
            }
        }
        "userknownhostsfile" | "globalknownhostsfile" => {
            if args.is_empty() {
                return missing();
            }
            if args.iter().any(String::is_empty) {
                return Err("empty argument".to_owned());
            }
            if args.len() > 1 && args.iter().any(|a| a.eq_ignore_ascii_case("none")) {
                return Err("\"none\" argument must appear alone".to_owned());
            }
            if args.len() > MAX_HOSTS_FILES {
                return Err("too many files".to_owned());
            }
            return Ok(());
        }
        "proxyjump" => parse_proxy_jump(rest).map(drop)?,
        _ => return Ok(()),
    }
    if keyword_takes_one(keyword) && args.len() > 1 {
        return Err(format!("keyword {keyword} extra arguments at end of line"));
    }
    Ok(())
}

fn keyword_takes_one(keyword: &str) -> bool {
    matches!(
        keyword,
        "port"
            | "identitiesonly"
            | "hashknownhosts"
            | "passwordauthentication"
            | "batchmode"
            | "connecttimeout"
            | "serveraliveinterval"
            | "connectionattempts"
            | "serveralivecountmax"
            | "stricthostkeychecking"
            | "addressfamily"
            | "pubkeyauthentication"
            | "dsaauthentication"
            | "hostname"
            | "user"
            | "hostkeyalias"
            | "preferredauthentications"
            | "identityfile"
            | "identityfile2"
            | "identityagent"
            | "ignoreunknown"
    )
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p as u16),
        _ => Err(format!("bad port {s:?}")),
    }
}

fn parse_flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("unsupported option {s:?}")),
    }
}

fn parse_strict(s: &str) -> Result<StrictHostKeyChecking, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => StrictHostKeyChecking::Yes,
        "no" | "false" | "off" => StrictHostKeyChecking::No,
        "ask" => StrictHostKeyChecking::Ask,
        "accept-new" => StrictHostKeyChecking::AcceptNew,
        _ => return Err(format!("unsupported option {s:?}")),
    })
}

fn parse_family(s: &str) -> Result<AddressFamily, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "inet" => AddressFamily::Inet,
        "inet6" => AddressFamily::Inet6,
        "any" => AddressFamily::Any,
        _ => return Err(format!("unsupported option {s:?}")),
    })
}

fn parse_pubkey(s: &str) -> Result<String, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => "true",
        "no" | "false" => "false",
        "unbound" => "unbound",
        "host-bound" => "host-bound",
        _ => return Err(format!("unsupported option {s:?}")),
    }
    .to_owned())
}

/// `strtonum(s, 0, INT_MAX)`.
fn parse_int(s: &str) -> Result<u32, String> {
    let t = s.trim_start();
    let digits = t.strip_prefix('+').unwrap_or(t);
    match digits.parse::<u64>() {
        Ok(v) if v <= i32::MAX as u64 && !digits.is_empty() => Ok(v as u32),
        Ok(_) => Err(format!("integer value {s:?} too large")),
        Err(_) => Err(format!("integer value {s:?} invalid")),
    }
}

/// `none` or `convtime`: seconds, or a sum of numbers with `s`, `m`, `h`,
/// `d`, `w` suffixes.
fn parse_time(s: &str) -> Result<Option<u32>, String> {
    if s == "none" {
        return Ok(None);
    }
    let bad = || format!("invalid time value {s:?}");
    if s.is_empty() {
        return Err(bad());
    }
    let bytes = s.as_bytes();
    let mut total: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') && i == start {
            i += 1;
        }
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            if bytes[i] == b'-' {
                return Err(bad());
            }
            i += 1;
        }
        let digits = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits {
            return Err(bad());
        }
        let n: u64 = s[digits..i].parse().map_err(|_| bad())?;
        let multiplier = match bytes.get(i) {
            None => 1,
            Some(c) => {
                i += 1;
                match c.to_ascii_lowercase() {
                    b's' => 1,
                    b'm' => 60,
                    b'h' => 3600,
                    b'd' => 86400,
                    b'w' => 604800,
                    _ => return Err(bad()),
                }
            }
        };
        total = n
            .checked_mul(multiplier)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= i32::MAX as u64)
            .ok_or_else(bad)?;
    }
    Ok(Some(total as u32))
}

/// `ProxyJump`'s value as `parse_jump` reads it: a comment and trailing
/// blanks cut, `none`, or a chain.
fn parse_proxy_jump(rest: &str) -> Result<Vec<JumpHost>, String> {
    let value = rest.trim_start_matches([' ', '\t', '\r', '\n', '=']);
    let cut = value.split('#').next().unwrap_or("").trim_end();
    if value.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    cut.split(',')
        .map(|hop| parse_jump_host(hop).ok_or_else(|| format!("invalid ProxyJump {value:?}")))
        .collect()
}

/// `parse_ssh_uri` then `parse_user_host_port`.
fn parse_jump_host(spec: &str) -> Option<JumpHost> {
    let original = spec;
    let (spec, uri) = match spec.strip_prefix("ssh://") {
        Some(rest) => (rest.strip_suffix('/').unwrap_or(rest), true),
        None => (spec, false),
    };
    let (user, rest) = match spec.rfind('@') {
        Some(0) => return None,
        Some(at) => (Some(spec[..at].to_owned()), &spec[at + 1..]),
        None => (None, spec),
    };
    if uri && rest.contains('/') {
        return None;
    }
    // hpdelim: `[addr]` with an optional `:port`, else up to a ':' or '/'.
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let end = bracketed.find(']')?;
        let after = &bracketed[end + 1..];
        let port = match after.chars().next() {
            None => None,
            Some(':') | Some('/') => Some(&after[1..]),
            Some(_) => return None,
        };
        (&bracketed[..end], port)
    } else {
        match rest.find([':', '/']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(parse_port(p).ok()?),
    };
    Some(JumpHost {
        user,
        host: host.to_owned(),
        port,
        spec: original.to_owned(),
    })
}

/// Expands `%` tokens (and, with `dollar`, `${VAR}`), failing on an
/// unknown token as OpenSSH does.
fn expand<S: AsRef<str>>(s: &str, tokens: &[(char, S)], dollar: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if dollar && c == '$' && chars.peek() == Some(&'{') {
            chars.next();
            let mut name = String::new();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(c) => name.push(c),
                    None => return Err("environment variable missing closing '}'".to_owned()),
                }
            }
            if name.is_empty() {
                return Err("zero-length environment variable".to_owned());
            }
            match std::env::var(&name) {
                Ok(v) => out.push_str(&v),
                Err(_) => return Err(format!("environment variable ${{{name}}} has no value")),
            }
            continue;
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            None => return Err("invalid format: '%' at the end".to_owned()),
            Some(t) => match tokens.iter().find(|(k, _)| *k == t) {
                Some((_, v)) => out.push_str(v.as_ref()),
                None => return Err(format!("unknown key %{t}")),
            },
        }
    }
    Ok(out)
}

/// `tilde_expand_filename`: a leading `~` or `~/` is the home directory.
/// (`~user` is left alone.)
fn tilde(path: &str, home: &str) -> String {
    let Some(rest) = path.strip_prefix('~') else {
        return path.to_owned();
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return path.to_owned();
    }
    let rest = rest.trim_start_matches('/');
    let slash = if home.ends_with('/') { "" } else { "/" };
    format!("{home}{slash}{rest}")
}

/// `match_pattern_list(..) == 1`: a pattern of the list matches `s` and no
/// negated one does.
fn list(s: &str, patterns: &str, lower: bool) -> bool {
    pattern::list(s.as_bytes(), patterns.as_bytes(), lower) == Listed::Yes
}

/// Splits words as `strdelim` does for `Match`: on blanks, with `"`
/// quoting (no escapes).
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(s: &'a str) -> Self {
        Words {
            rest: s.trim_start_matches([' ', '\t', '\r', '\n']),
        }
    }
}

impl Iterator for Words<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let s = self.rest;
        if s.is_empty() {
            return None;
        }
        let word;
        if let Some(quoted) = s.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => {
                    word = quoted[..end].to_owned();
                    self.rest = quoted[end + 1..].trim_start_matches([' ', '\t', '\r', '\n']);
                }
                None => {
                    word = quoted.to_owned();
                    self.rest = "";
                }
            }
        } else {
            let end = s.find([' ', '\t', '\r', '\n', '"']).unwrap_or(s.len());
            word = s[..end].to_owned();
            self.rest = s[end..].trim_start_matches([' ', '\t', '\r', '\n']);
        }
        Some(word)
    }
}

/// `argv_split` with comments: blanks separate, `'` and `"` quote, `\`
/// escapes a quote, a backslash or (unquoted) a space.
fn argv_split(s: &str) -> Result<Vec<String>, String> {
    let b = s.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' || b[i] == b'\t' {
            i += 1;
            continue;
        }
        if b[i] == b'#' {
            break;
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
        if quote != 0 {
            return Err("invalid quotes".to_owned());
        }
        args.push(String::from_utf8_lossy(&arg).into_owned());
    }
    Ok(args)
}

/// The keyword and the rest of a line, as `strdelim` splits them (one `=`
/// may join them). `None` for a blank or comment line.
fn keyword_and_rest(line: &str) -> Option<(String, &str)> {
    const WS: [char; 4] = [' ', '\t', '\r', '\n'];
    let s = line.trim_start_matches(WS);
    if s.is_empty() || s.starts_with('#') {
        return None;
    }
    let end = s.find([' ', '\t', '\r', '\n', '=', '"']).unwrap_or(s.len());
    let (keyword, mut rest) = if s[end..].starts_with('"') {
        // A quoted keyword: rare, kept simple.
        let q = &s[end + 1..];
        let close = q.find('"')?;
        (format!("{}{}", &s[..end], &q[..close]), &q[close + 1..])
    } else {
        (s[..end].to_owned(), &s[end..])
    };
    let equals = rest.starts_with('=');
    rest = rest.get(1..).unwrap_or("").trim_start_matches(WS);
    if !equals && rest.starts_with('=') {
        rest = rest[1..].trim_start_matches(WS);
    }
    Some((keyword.to_ascii_lowercase(), rest))
}

fn parse_file(
    path: &str,
    text: &str,
    user: bool,
    local: &Local,
    depth: usize,
) -> Result<File, ConfigError> {
    let mut lines = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let number = i + 1;
        let trimmed = raw.trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
        let Some((keyword, rest)) = keyword_and_rest(trimmed) else {
            continue;
        };
        let err = |m: String| ConfigError::at(path, number, m);
        if rest.is_empty() {
            return Err(err(format!("no argument after keyword {keyword:?}")));
        }
        let args = argv_split(rest).map_err(err)?;
        validate(&keyword, &args, rest).map_err(err)?;
        let included = if keyword == "include" {
            include(path, number, &args, user, local, depth)?
        } else {
            Vec::new()
        };
        lines.push(Line {
            number,
            keyword,
            args,
            rest: rest.to_owned(),
            included,
        });
    }
    Ok(File {
        path: path.to_owned(),
        lines,
    })
}

fn read_file(
    path: &Path,
    user: bool,
    local: &Local,
    depth: usize,
    check_perm: bool,
) -> Result<Option<File>, ConfigError> {
    if depth > MAX_DEPTH {
        return Err(ConfigError::new(
            "too many recursive configuration includes",
        ));
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError::new(format!(
                "cannot read config file {}: {e}",
                path.display()
            )))
        }
    };
    if check_perm {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
        if (meta.uid() != 0 && meta.uid() != local.uid) || meta.mode() & 0o022 != 0 {
            return Err(ConfigError::new(format!(
                "bad owner or permissions on {}",
                path.display()
            )));
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    parse_file(&path.to_string_lossy(), &text, user, local, depth).map(Some)
}

/// `Include`: each argument anchored (`~/.ssh/` for user files,
/// `/etc/ssh/` for system ones), globbed, and each match read.
fn include(
    path: &str,
    line: usize,
    args: &[String],
    user: bool,
    local: &Local,
    depth: usize,
) -> Result<Vec<File>, ConfigError> {
    let mut files = Vec::new();
    for arg in args {
        if arg.is_empty() {
            return Err(ConfigError::at(path, line, "empty Include argument"));
        }
        if arg.starts_with('~') && !user {
            return Err(ConfigError::at(
                path,
                line,
                format!("bad include path {arg}"),
            ));
        }
        let anchored = if arg.starts_with('/') || arg.starts_with('~') {
            arg.clone()
        } else if user {
            format!("~/.ssh/{arg}")
        } else {
            format!("/etc/ssh/{arg}")
        };
        let anchored = tilde(&anchored, &glob_home(local));
        for found in glob(&anchored) {
            if let Some(file) = read_file(&found, user, local, depth + 1, true)? {
                files.push(file);
            }
        }
    }
    Ok(files)
}

/// `glob(3)` with `GLOB_TILDE` takes `~` from `$HOME` first.
fn glob_home(local: &Local) -> String {
    std::env::var("HOME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| local.home.clone())
}

/// A small `glob(3)`: `*`, `?` and `[...]` within path components
/// ([`pattern::fnmatch`]), names
/// starting with `.` only matched by a pattern that starts with `.`,
/// results sorted. A path without magic is returned if it exists.
fn glob(pattern: &str) -> Vec<PathBuf> {
    let absolute = pattern.starts_with('/');
    let mut found = vec![PathBuf::from(if absolute { "/" } else { "." })];
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for dir in &found {
            if !part.contains(['*', '?', '[']) {
                let p = dir.join(part);
                if (last && p.exists()) || (!last && p.is_dir()) {
                    next.push(p);
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') || part.starts_with('.'))
                .filter(|n| pattern::fnmatch(part.as_bytes(), n.as_bytes()))
                .collect();
            names.sort();
            for n in names {
                let p = dir.join(n);
                if last || p.is_dir() {
                    next.push(p);
                }
            }
        }
        found = next;
    }
    if parts.is_empty() {
        return Vec::new();
    }
    found
        .into_iter()
        .map(|p| match p.strip_prefix("./") {
            Ok(rel) if !absolute => rel.to_path_buf(),
            _ => p,
        })
        .collect()
}

impl Local {
    /// The calling user, from the passwd entry of the process's uid, and
    /// the machine's host name.
    /// The process's local side, looked up once: the passwd entry may come
    /// from a slow NSS source, and neither it nor the host name changes
    /// under a running program in practice.
    fn current() -> Local {
        static CURRENT: std::sync::OnceLock<Local> = std::sync::OnceLock::new();
        CURRENT.get_or_init(Local::look_up).clone()
    }

    fn look_up() -> Local {
        let uid = unsafe { libc::getuid() };
        let (user, home) = passwd(uid).unwrap_or_else(|| {
            (
                std::env::var("USER").unwrap_or_default(),
                std::env::var("HOME").unwrap_or_default(),
            )
        });
        Local {
            user,
            uid,
            home,
            hostname: hostname(),
        }
    }
}

/// The passwd entry's name and home directory (`getpwuid_r`, so that
/// NSS sources other than `/etc/passwd` count, as they do for `ssh`).
fn passwd(uid: u32) -> Option<(String, String)> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, and `buf` outlives
        // the reads of `pwd`'s strings below.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success both are NUL-terminated strings inside `buf`.
        let field = |p: *const libc::c_char| unsafe {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        return Some((field(pwd.pw_name), field(pwd.pw_dir)));
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the result is cut at the
    // first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The keywords ssh-dial acts on.
const HONOURED: &[&str] = &[
    "host",
    "match",
    "include",
    "hostname",
    "port",
    "user",
    "identityfile",
    "identityfile2",
    "identitiesonly",
    "identityagent",
    "proxyjump",
    "proxycommand",
    "connecttimeout",
    "connectionattempts",
    "serveraliveinterval",
    "serveralivecountmax",
    "userknownhostsfile",
    "globalknownhostsfile",
    "stricthostkeychecking",
    "hashknownhosts",
    "hostkeyalias",
    "addressfamily",
    "preferredauthentications",
    "pubkeyauthentication",
    "dsaauthentication",
    "passwordauthentication",
    "batchmode",
    "ignoreunknown",
];

/// The keywords OpenSSH 9.2 knows (with Debian's GSSAPI additions) that
/// ssh-dial keeps as read and does not act on.
const KEYWORDS: &[&str] = &[
    "protocol",
    "cipher",
    "fallbacktorsh",
    "globalknownhostsfile2",
    "rhostsauthentication",
    "userknownhostsfile2",
    "useroaming",
    "usersh",
    "useprivilegedport",
    "afstokenpassing",
    "kerberosauthentication",
    "kerberostgtpassing",
    "rsaauthentication",
    "rhostsrsaauthentication",
    "compressionlevel",
    "gssapiauthentication",
    "gssapidelegatecredentials",
    "gssapikeyexchange",
    "gssapiclientidentity",
    "gssapiserveridentity",
    "gssapirenewalforcesrekey",
    "gssapitrustdns",
    "gssapikexalgorithms",
    "pkcs11provider",
    "smartcarddevice",
    "forwardagent",
    "forwardx11",
    "forwardx11trusted",
    "forwardx11timeout",
    "exitonforwardfailure",
    "xauthlocation",
    "gatewayports",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "challengeresponseauthentication",
    "skeyauthentication",
    "tisauthentication",
    "hostbasedauthentication",
    "certificatefile",
    "addkeystoagent",
    "ciphers",
    "macs",
    "remoteforward",
    "localforward",
    "permitremoteopen",
    "escapechar",
    "checkhostip",
    "compression",
    "tcpkeepalive",
    "keepalive",
    "numberofpasswordprompts",
    "syslogfacility",
    "loglevel",
    "logverbose",
    "dynamicforward",
    "hostkeyalgorithms",
    "casignaturealgorithms",
    "bindaddress",
    "bindinterface",
    "clearallforwardings",
    "enablesshkeysign",
    "verifyhostkeydns",
    "nohostauthenticationforlocalhost",
    "rekeylimit",
    "sendenv",
    "setenv",
    "controlpath",
    "controlmaster",
    "controlpersist",
    "tunnel",
    "tunneldevice",
    "localcommand",
    "permitlocalcommand",
    "remotecommand",
    "visualhostkey",
    "kexalgorithms",
    "ipqos",
    "requesttty",
    "sessiontype",
    "stdinnull",
    "forkafterauthentication",
    "proxyusefdpass",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizehostname",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "revokedhostkeys",
    "fingerprinthash",
    "updatehostkeys",
    "hostbasedacceptedalgorithms",
    "hostbasedkeytypes",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "securitykeyprovider",
    "knownhostscommand",
    "requiredrsasize",
    "enableescapecommandline",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, dest: &str) -> HostConfig {
        SshConfig::parse(text).unwrap().resolve(dest).unwrap()
    }

    #[test]
    fn the_first_obtained_value_wins() {
        let c = resolve("Host db\n Port 2222\nHost *\n Port 22\n User u\n", "db");
        assert_eq!((c.port(), c.user()), (2222, "u"));
    }

    #[test]
    fn a_match_block_does_not_leak_into_the_host_block_above() {
        let text = "Host web\n  User alice\nMatch user nobody-here\n  Port 2200\n";
        let c = resolve(text, "web");
        assert_eq!(c.port(), 22);
        assert_eq!(c.user(), "alice");
    }

    #[test]
    fn negated_patterns_void_the_block() {
        let text = "Host *.example.com !bad.example.com\n  User ok\n";
        assert_eq!(resolve(text, "good.example.com").user(), "ok");
        assert_ne!(resolve(text, "bad.example.com").user(), "ok");
    }

    #[test]
    fn equals_and_quotes_and_hostname_tokens() {
        let c = resolve("Host=x\n  HostName = \"%h.internal\"\n  Port=2022\n", "x");
        assert_eq!((c.hostname(), c.port()), ("x.internal", 2022));
    }

    #[test]
    fn proxy_jump_chains_parse_and_print_as_ssh_does() {
        let c = resolve("Host t\n  ProxyJump a,bob@b:2222,[::1]:22\n", "t");
        let hops: Vec<String> = c.proxy_jump().iter().map(|h| h.to_string()).collect();
        assert_eq!(hops, ["a", "bob@b:2222", "[::1]:22"]);
        assert!(resolve("Host t\n ProxyJump none\n", "t")
            .proxy_jump()
            .is_empty());
    }

    #[test]
    fn bad_values_are_errors_that_name_the_line() {
        for text in [
            "Port 0\n",
            "Port x\n",
            "ConnectTimeout 5q\n",
            "Hostnme x\n",
            "Host a\n  StrictHostKeyChecking maybe\n",
            "User \"unterminated\n",
            "Match exec true\n  User x\n",
            "Match canonical\n  User x\n",
        ] {
            let e = SshConfig::parse(text)
                .and_then(|c| c.resolve("h"))
                .unwrap_err();
            assert!(e.to_string().contains("line "), "{text:?}: {e}");
        }
    }

    #[test]
    fn times_are_read_as_convtime_reads_them() {
        assert_eq!(parse_time("90"), Ok(Some(90)));
        assert_eq!(parse_time("1m30s"), Ok(Some(90)));
        assert_eq!(parse_time("1h"), Ok(Some(3600)));
        assert_eq!(parse_time("none"), Ok(None));
        assert!(parse_time("-1").is_err());
        assert!(parse_time("1x").is_err());
    }
}
