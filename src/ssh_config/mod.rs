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
//!
//! A configuration is input a service does not control (a home directory,
//! a file generated from an inventory, names handed in by a caller), so it
//! is read as `ssh` reads it, and no more trustingly:
//!
//! - Bytes, as OpenSSH's C strings: a line ends at its first NUL, and
//!   bytes that are not UTF-8 are kept in patterns and file names. Values
//!   that must be text (`HostName`, `User`, `HostKeyAlias`, `ProxyJump`)
//!   are refused when they are not.
//! - Permissions: `~/.ssh/config` (read by `load_default`) and every
//!   included file must belong to the user or root and be writable by no
//!   one else.
//! - Bounds OpenSSH does not have: a load reads at most 16 MiB of text and
//!   65,536 files, counting a file each time it is included (that is what
//!   resolving walks). Each file is kept once, as read, however often it
//!   is included, and resolving walks its lines where they lie: a load
//!   holds little more than the bytes it read
//!   (`tests/ssh_config_memory.rs`).
//! - Names that reach `%` tokens (the destination's user and host, jump
//!   hosts) are checked where they come in, with the rules `ssh` applies to
//!   its command line; and `Match exec` will not run a command in which a
//!   `%h`, `%n`, `%k` or `%r` holds anything a shell would read as more
//!   than a name.
//! - Patterns match in linear time (`crate::pattern`).
//! - `Match exec` runs in a process group of its own, killed (and reaped)
//!   at the dial's deadline or when the dial is dropped.

mod exec;
mod jump;
mod keywords;
mod lexer;
mod local;
mod read;
mod tokens;
mod values;

pub use jump::JumpHost;

pub(crate) use exec::Until;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::host_keys::HostKeys;
use crate::pattern::{self, Listed};
use crate::target::{ssh_hostname_problem, ssh_user_problem};
use crate::tcp::AddressFamily;
use crate::text::Escaped;
use exec::{check_names, run_exec, Refused};
use jump::parse_proxy_jump;
use keywords::canonical;
use lexer::{keyword_and_rest, lines, skip, strdelim, Args};
use local::Local;
use read::{File, Files, Include, Loader};
use tokens::{expand, tilde, Tokens};
use values::{
    parse_family, parse_flag, parse_int, parse_port, parse_pubkey, parse_strict, parse_time, utf8,
};

/// The most `IdentityFile`s a host may have (`SSH_MAX_IDENTITY_FILES`).
const MAX_IDENTITY_FILES: usize = 100;

/// An OpenSSH client configuration, parsed and ready to be resolved for a
/// host.
///
/// Cheap to clone. Files (and the files they `Include`) are read once, by
/// the `load` functions, and kept as read, one copy each however often
/// they are included; [`resolve`](SshConfig::resolve) reads nothing except
/// for `Match exec`, which is refused unless
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
    files: Arc<Files>,
    local: Arc<Local>,
    allow_exec: bool,
    allow_canonical: bool,
}

/// Why a configuration could not be read or resolved, or a name was
/// refused.
///
/// Text from the configuration is escaped in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
    why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The configuration says something OpenSSH would refuse.
    Config,
    /// A name given by the caller was refused.
    Name,
    /// The load passed a bound.
    TooLarge,
    /// `Match exec` ran past the deadline, or the dial was dropped.
    Deadline,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Escaped(&self.message))
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            why: Why::Config,
        }
    }

    fn name(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            why: Why::Name,
        }
    }

    fn too_large(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            why: Why::TooLarge,
        }
    }

    pub(crate) fn from_panic(e: tokio::task::JoinError) -> Self {
        ConfigError::new(format!("resolving the configuration failed: {e}"))
    }

    fn at(file: &str, line: usize, message: impl fmt::Display) -> Self {
        ConfigError::new(format!("{file} line {line}: {message}"))
    }

    /// True if a name given to ssh-dial was refused before the
    /// configuration was consulted, as `ssh` refuses it on its command
    /// line: the user or host of [`SshConfig::resolve`]'s destination, or a
    /// jump host of [`JumpHost::parse`] and [`JumpHost::parse_chain`], with
    /// a character a shell would act on (see
    /// [`DialError::is_invalid_input`](crate::DialError::is_invalid_input)),
    /// or a spec that does not parse.
    pub fn is_invalid_input(&self) -> bool {
        self.why == Why::Name
    }

    /// True if a load stopped at one of its bounds: more than 16 MiB of
    /// configuration text, or more than 65,536 files, counting a file each
    /// time it is included.
    pub fn is_too_large(&self) -> bool {
        self.why == Why::TooLarge
    }

    /// True if `Match exec` was given up: the deadline passed or the dial
    /// was dropped.
    pub(crate) fn is_deadline(&self) -> bool {
        self.why == Why::Deadline
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
    /// The files ssh-dial reads, byte for byte as the configuration names
    /// them (the `String`s above are for showing).
    agent_path: Option<PathBuf>,
    user_known_hosts_paths: Vec<PathBuf>,
    global_known_hosts_paths: Vec<PathBuf>,
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
    /// (or unset) means the environment's. Bytes that are not UTF-8 are
    /// shown as U+FFFD here and kept in the path ssh-dial uses.
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
    /// `UserKnownHostsFile`s, expanded; empty for `none`. Bytes that are not
    /// UTF-8 are shown as U+FFFD here and kept in the paths ssh-dial reads.
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
        let user = self.user_known_hosts_paths.clone();
        let global = self.global_known_hosts_paths.clone();
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
                Some(_) => {
                    if let Some(path) = &self.agent_path {
                        add(Auth::agent_at(path.clone()));
                    }
                }
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
    /// would refuse, an `Include` nested deeper than 16, a `~/.ssh/config`
    /// or included file that is not the user's (or root's) or that others
    /// may write to ("bad owner or permissions", as `ssh` refuses it), or
    /// more than 16 MiB of text or 65,536 files read
    /// ([`ConfigError::is_too_large`]; a file counts each time it is
    /// included).
    pub fn load_default() -> Result<SshConfig, ConfigError> {
        let local = Local::current();
        let user = Path::new(&local.home).join(".ssh/config");
        SshConfig::load_user_and_system(&user, Path::new("/etc/ssh/ssh_config"), local)
    }

    /// `load_default`'s two files: the user's, owner and mode checked as
    /// `ssh` checks them (`SSHCONF_CHECKPERM`), then the system's.
    fn load_user_and_system(
        user: &Path,
        system: &Path,
        local: Local,
    ) -> Result<SshConfig, ConfigError> {
        let mut loader = Loader::new(&local);
        loader.root(user, true, true)?;
        loader.root(system, false, false)?;
        Ok(SshConfig::new(loader.finish(), local))
    }

    /// One file, as `ssh -F path` reads it (and only it). `Include`
    /// paths that are relative are taken from `~/.ssh`.
    ///
    /// # Errors
    ///
    /// As [`load_default`](Self::load_default) (the file itself is not
    /// checked for owner and mode, as `ssh -F` does not check it), and if
    /// the file is missing.
    pub fn load(path: impl AsRef<Path>) -> Result<SshConfig, ConfigError> {
        let local = Local::current();
        let path = path.as_ref();
        let mut loader = Loader::new(&local);
        if !loader.root(path, true, false)? {
            return Err(ConfigError::new(format!(
                "cannot open config file {}: no such file",
                shown_path(path)
            )));
        }
        Ok(SshConfig::new(loader.finish(), local))
    }

    /// A configuration from text, as if read from a user file.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn parse(text: &str) -> Result<SshConfig, ConfigError> {
        let local = Local::current();
        let mut loader = Loader::new(&local);
        loader.root_text("(string)", text.as_bytes())?;
        Ok(SshConfig::new(loader.finish(), local))
    }

    /// An empty configuration: every host gets OpenSSH's defaults.
    pub fn empty() -> SshConfig {
        SshConfig::new(Files::default(), Local::current())
    }

    fn new(files: Files, local: Local) -> SshConfig {
        SshConfig {
            files: Arc::new(files),
            local: Arc::new(local),
            allow_exec: false,
            allow_canonical: false,
        }
    }

    /// Whether `Match exec` may run its command (with `sh -c`, stdin and
    /// stdout on `/dev/null`, as `ssh` runs it). Off by default: resolving
    /// a host then fails with an error that names the line.
    /// [`resolve`](Self::resolve) then blocks while the command runs; a
    /// [`Dialer`](crate::Dialer) resolves on the blocking pool under the
    /// dial's deadline, and a command still running when the deadline
    /// passes (or when the dial is dropped) is killed with its process
    /// group and reaped.
    ///
    /// A command whose `%h`, `%n`, `%k` or `%r` would hold a character
    /// `ssh` refuses in names on its command line (shell metacharacters,
    /// blanks before a `-`, control characters) is not run: resolving
    /// fails. OpenSSH checks only the names from its command line; this
    /// also covers a `User` or `HostName` from the file.
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
    /// An empty host or user, a user or host with a character `ssh`
    /// refuses on its command line
    /// ([`is_invalid_input`](ConfigError::is_invalid_input)), a `%` token a
    /// key does not take, an unknown keyword (unless `IgnoreUnknown` covers
    /// it), `Match exec` or `Match canonical` when not allowed,
    /// `CanonicalizeHostname` other than `no`, a `ProxyJump` whose user or
    /// host has such a character, or a `ProxyJump` that loops to the host
    /// itself.
    ///
    /// # Blocking
    ///
    /// When `Match exec` is [allowed](Self::allow_match_exec), this waits
    /// for each command it runs, with no deadline.
    pub fn resolve(&self, destination: &str) -> Result<HostConfig, ConfigError> {
        self.resolve_until(destination, &Until::default())
    }

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

/// The values obtained so far; `None` is OpenSSH's "unset".
#[derive(Debug, Default)]
struct Options {
    hostname: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    /// As written: bytes, since they name files.
    identity_files: Vec<Vec<u8>>,
    identities_only: Option<bool>,
    identity_agent: Option<Vec<u8>>,
    /// `Some(vec![])` is `ProxyJump none`.
    proxy_jump: Option<Vec<JumpHost>>,
    proxy_command: Option<String>,
    /// `None` until a value other than `none` is read: OpenSSH stores
    /// `none` as "unset", so a later line can still set the key.
    connect_timeout: Option<u32>,
    connection_attempts: Option<u32>,
    server_alive_interval: Option<u32>,
    server_alive_count_max: Option<u32>,
    user_known_hosts_files: Option<Vec<Vec<u8>>>,
    global_known_hosts_files: Option<Vec<Vec<u8>>>,
    strict_host_key_checking: Option<StrictHostKeyChecking>,
    hash_known_hosts: Option<bool>,
    host_key_alias: Option<String>,
    address_family: Option<AddressFamily>,
    preferred_authentications: Option<String>,
    pubkey_authentication: Option<String>,
    password_authentication: Option<bool>,
    batch_mode: Option<bool>,
    ignore_unknown: Option<Vec<u8>>,
    other: BTreeMap<String, Vec<String>>,
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
            "proxycommand" => {
                if opts.proxy_jump.is_none() {
                    let command = skip(line.rest, b" \t\r\n=");
                    set(
                        &mut opts.proxy_command,
                        String::from_utf8_lossy(command).into_owned(),
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
                    check_names(&arg, &tokens).map_err(refuse)?;
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
            let jump_user = last.user().unwrap_or(&user);
            if last.host() == host && last.port().unwrap_or(22) == port && jump_user == user {
                return Err(ConfigError::new(format!(
                    "jump host loop via {}",
                    shown(last.host())
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
        }
        .list();
        let path = |raw: &[u8], what: &str| -> Result<PathBuf, ConfigError> {
            expand(&tilde(raw, local.home.as_bytes()), &tokens, true)
                .map(|p| PathBuf::from(OsString::from_vec(p)))
                .map_err(|e| ConfigError::new(format!("{what} {}: {e}", shown(raw))))
        };
        let shown_path = |p: &Path| p.to_string_lossy().into_owned();
        let identity_files: Vec<Vec<u8>> = if self.identity_files.is_empty() {
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
            .map(|f| format!("~/.ssh/{f}").into_bytes())
            .collect()
        } else {
            self.identity_files
        };
        let identity_paths = identity_files
            .iter()
            .map(|f| path(f, "IdentityFile"))
            .collect::<Result<_, _>>()?;
        let agent_path = self
            .identity_agent
            .map(|a| path(&a, "IdentityAgent"))
            .transpose()?;
        let user_known_hosts_paths: Vec<PathBuf> = match self.user_known_hosts_files {
            Some(files) if is_none(&files) => Vec::new(),
            Some(files) => files
                .iter()
                .map(|f| path(f, "UserKnownHostsFile"))
                .collect::<Result<_, _>>()?,
            None => vec![
                path(b"~/.ssh/known_hosts", "UserKnownHostsFile")?,
                path(b"~/.ssh/known_hosts2", "UserKnownHostsFile")?,
            ],
        };
        // As written (`ssh -G` prints them so); `~` expanded when read.
        let global_known_hosts_files: Vec<Vec<u8>> = match self.global_known_hosts_files {
            Some(files) if is_none(&files) => Vec::new(),
            Some(files) => files,
            None => vec![
                b"/etc/ssh/ssh_known_hosts".to_vec(),
                b"/etc/ssh/ssh_known_hosts2".to_vec(),
            ],
        };
        let connection_attempts = self.connection_attempts.unwrap_or(1);
        if connection_attempts == 0 {
            return Err(ConfigError::new("invalid number of ConnectionAttempts: 0"));
        }
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(HostConfig {
            host: host_arg.to_owned(),
            hostname: host,
            port,
            user,
            identity_files: identity_files.iter().map(|f| lossy(f)).collect(),
            identity_paths,
            identities_only: self.identities_only.unwrap_or(false),
            identity_agent: agent_path.as_deref().map(shown_path),
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
            user_known_hosts_files: user_known_hosts_paths
                .iter()
                .map(|p| shown_path(p))
                .collect(),
            global_known_hosts_files: global_known_hosts_files.iter().map(|f| lossy(f)).collect(),
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
            agent_path,
            user_known_hosts_paths,
            global_known_hosts_paths: global_known_hosts_files
                .iter()
                .map(|f| PathBuf::from(OsString::from_vec(tilde(f, local.home.as_bytes()))))
                .collect(),
        })
    }
}

fn is_none(files: &[Vec<u8>]) -> bool {
    files.len() == 1 && files[0].eq_ignore_ascii_case(b"none")
}

fn set<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// A time value: `none` is OpenSSH's "unset", so it leaves the slot for a
/// later line.
fn set_time(slot: &mut Option<u32>, value: &[u8]) -> Result<(), String> {
    if let Some(t) = parse_time(value)? {
        set(slot, t);
    }
    Ok(())
}

/// Configuration text (or a path) for a message: escaped, quoted, and cut
/// at 100 bytes.
fn shown(text: impl AsRef<[u8]>) -> String {
    let b = text.as_ref();
    let cut = b.len().min(100);
    let more = if b.len() > cut { "..." } else { "" };
    format!("\"{}\"{more}", b[..cut].escape_ascii())
}

fn shown_path(path: &Path) -> String {
    let b = path.as_os_str().as_bytes();
    if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') && b.len() <= 200 {
        String::from_utf8_lossy(b).into_owned()
    } else {
        shown(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, dest: &str) -> HostConfig {
        SshConfig::parse(text).unwrap().resolve(dest).unwrap()
    }

    fn resolve_bytes(text: &[u8], dest: &str) -> Result<HostConfig, ConfigError> {
        let local = Local::current();
        let mut loader = Loader::new(&local);
        loader.root_text("(bytes)", text)?;
        SshConfig::new(loader.finish(), local).resolve(dest)
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
        // strdelim's corners: a leading `=`, a quoted keyword.
        assert_eq!(resolve("=Port 2200\n", "x").port(), 2200);
        assert_eq!(resolve("\"Port\" 2201\n", "x").port(), 2201);
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

    /// OpenSSH 9.2 cuts a `ProxyJump` value at a `#` and at the first
    /// blank after its first byte (its `rtrim`), as `ssh -G` shows; the
    /// differential test checks these against the real `ssh`.
    #[test]
    fn proxy_jump_values_are_cut_where_ssh_cuts_them() {
        for (value, want) in [
            ("b1 , b2", vec!["b1"]),
            ("b1,b2 # c,d", vec!["b1", "b2"]),
            ("b1,b2#x", vec!["b1", "b2"]),
            ("b1,b2 x,y", vec!["b1", "b2"]),
            ("u x@b", vec!["u"]),
            ("= b1", vec!["b1"]),
        ] {
            let c = resolve(&format!("Host t\n  ProxyJump {value}\n"), "t");
            let hops: Vec<&str> = c.proxy_jump().iter().map(|h| h.host()).collect();
            assert_eq!(hops, want, "{value:?}");
        }
        for bad in ["b1, b2", "b1,", ",b1", "b1,,b2"] {
            let e = SshConfig::parse(&format!("Host t\n  ProxyJump {bad}\n")).unwrap_err();
            assert!(e.to_string().contains("ProxyJump"), "{bad:?}: {e}");
        }
        assert_eq!(JumpHost::parse_chain("b1 , b2").unwrap().len(), 1);
        assert!(JumpHost::parse_chain("NONE").unwrap().is_empty());
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
            "Match host a \"\" user b\n  User x\n",
        ] {
            let e = SshConfig::parse(text)
                .and_then(|c| c.resolve("h"))
                .unwrap_err();
            assert!(e.to_string().contains("line "), "{text:?}: {e}");
            assert!(!e.is_invalid_input(), "{text:?}: {e}");
        }
    }

    #[test]
    fn times_are_read_as_convtime_reads_them() {
        assert_eq!(parse_time(b"90"), Ok(Some(90)));
        assert_eq!(parse_time(b"1m30s"), Ok(Some(90)));
        assert_eq!(parse_time(b"1h"), Ok(Some(3600)));
        assert_eq!(parse_time(b"none"), Ok(None));
        assert!(parse_time(b"-1").is_err());
        assert!(parse_time(b"1x").is_err());
    }

    /// A line ends at its first NUL, as a C string does in OpenSSH: the
    /// host dialed is the one before it. (Before, the NUL and what followed
    /// stayed in the value.)
    #[test]
    fn a_nul_ends_the_line() {
        let c = resolve_bytes(b"Host x\n  HostName real.example\0.evil.example\n", "x").unwrap();
        assert_eq!(c.hostname(), "real.example");
        // A quote cut off by the NUL is unterminated, as in OpenSSH.
        assert!(resolve_bytes(b"User \"a\0b\"\n", "x").is_err());
    }

    /// File names are bytes: one that is not UTF-8 names the file it names
    /// (before, it became U+FFFD and named another).
    #[test]
    fn file_names_keep_their_bytes() {
        let c = resolve_bytes(
            b"IdentityFile /keys/caf\xe9\nUserKnownHostsFile /kh/\xff\nIdentityAgent /a/\xfe\n",
            "x",
        )
        .unwrap();
        assert_eq!(
            c.identity_paths()[0].as_os_str().as_bytes(),
            b"/keys/caf\xe9"
        );
        assert_eq!(
            c.user_known_hosts_paths[0].as_os_str().as_bytes(),
            b"/kh/\xff"
        );
        assert_eq!(
            c.agent_path.as_deref().unwrap().as_os_str().as_bytes(),
            b"/a/\xfe"
        );
        // Shown lossily.
        assert_eq!(c.identity_files()[0], "/keys/caf\u{fffd}");
        // A pattern's bytes match bytes: \xff is not U+FFFD.
        let c = resolve_bytes(b"Host \xff\n  User matched\n", "\u{fffd}").unwrap();
        assert_ne!(c.user(), "matched");
        // A value that must be text is refused, naming the line.
        let e = resolve_bytes(b"HostName caf\xe9\n", "x").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }

    /// `ssh` refuses a `~/.ssh/config` others can write to, or that
    /// belongs to someone else ("Bad owner or permissions"); `load_default`
    /// did not check it (included files were checked already). The system
    /// file is not checked, as in `ssh`.
    #[test]
    fn a_user_config_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("config");
        let system = dir.path().join("ssh_config");
        std::fs::write(&user, "Host x\n  Port 2200\n").unwrap();
        std::fs::write(&system, "Port 2201\n").unwrap();
        let load = || SshConfig::load_user_and_system(&user, &system, Local::current());
        for mode in [0o600, 0o644, 0o755] {
            std::fs::set_permissions(&user, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                load().unwrap().resolve("x").unwrap().port(),
                2200,
                "{mode:o}"
            );
        }
        for mode in [0o666, 0o620, 0o602] {
            std::fs::set_permissions(&user, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = load().unwrap_err();
            assert!(
                e.to_string().contains("bad owner or permissions"),
                "{mode:o}: {e}"
            );
        }
        std::fs::set_permissions(&user, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&system, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(load().unwrap().resolve("y").unwrap().port(), 2201);
        // `ssh -F` does not check the file it is given either.
        std::fs::set_permissions(&user, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(SshConfig::load(&user).is_ok());
    }

    /// A file included many times is read and kept once; a file that
    /// includes itself is refused, as OpenSSH refuses it (at depth 16).
    #[test]
    fn included_files_are_kept_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let leaf = dir.path().join("leaf");
        std::fs::write(&leaf, "Host leaf\n  Port 2200\n").unwrap();
        std::fs::set_permissions(&leaf, std::fs::Permissions::from_mode(0o600)).unwrap();
        let includes = format!("Include {}\n", leaf.display()).repeat(1000);
        let config = SshConfig::parse(&includes).unwrap();
        assert_eq!(config.files.files.len(), 2);
        assert_eq!(config.resolve("leaf").unwrap().port(), 2200);

        let selfish = dir.path().join("selfish");
        std::fs::write(&selfish, format!("Include {}\n", selfish.display())).unwrap();
        std::fs::set_permissions(&selfish, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = SshConfig::load(&selfish).unwrap_err();
        assert!(e.to_string().contains("recursive"), "{e}");
    }

    /// A FIFO or a directory where a file should be is refused at once, not
    /// waited on (before, opening a FIFO with no writer blocked the load
    /// for good); `/dev/null` is an empty configuration, as for
    /// `ssh -F /dev/null`.
    #[test]
    fn special_files_are_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = SshConfig::load(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a file"), "{e}");
        let e = SshConfig::parse(&format!("Include {}\n", fifo.display())).unwrap_err();
        assert!(e.to_string().contains("not a file"), "{e}");
        let e = SshConfig::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not a file"), "{e}");
        assert_eq!(
            SshConfig::load("/dev/null")
                .unwrap()
                .resolve("x")
                .unwrap()
                .port(),
            22
        );
    }

    /// `Match exec` does not hand the shell a `%r` or `%h` it would read as
    /// more than a name, wherever the name came from (here the file).
    #[test]
    fn match_exec_will_not_run_names_a_shell_would_act_on() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        for (user, host) in [("a;touch ran;#", "x"), ("u", "x$(touch${IFS}ran)")] {
            let text = format!(
                "User \"{user}\"\nHostName {host}\nMatch exec \"cd {} && true %r %h\"\n  Port 2200\n",
                dir.path().display()
            );
            let e = SshConfig::parse(&text)
                .unwrap()
                .allow_match_exec(true)
                .resolve("x")
                .unwrap_err();
            assert!(e.to_string().contains("Match exec not run"), "{e}");
            assert!(!marker.exists());
        }
        // `%%r` is no token: the command runs.
        let ok = SshConfig::parse("User \"a;b\"\nMatch exec \"true %%r\"\n  Port 2200\n")
            .unwrap()
            .allow_match_exec(true)
            .resolve("x")
            .unwrap();
        assert_eq!(ok.port(), 2200);
    }

    #[test]
    fn messages_escape_and_cut_what_the_file_says() {
        let long = "\x1b[31m".repeat(100);
        let e = SshConfig::parse(&format!("{long} x\n"))
            .and_then(|c| c.resolve("h"))
            .unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains('\x1b'), "{shown}");
        assert!(shown.len() < 300, "{shown}");
    }
}
