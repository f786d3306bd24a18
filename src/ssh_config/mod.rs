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
//! `tests/it/ssh_config_differential.rs` compares the result with the real
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
//!   (`tests/it/ssh_config_memory.rs`).
//! - Names that reach `%` tokens (the destination's user and host, jump
//!   hosts) are checked where they come in, with the rules `ssh` applies to
//!   its command line; and `Match exec` will not run a command in which a
//!   `%h`, `%n`, `%k` or `%r` holds anything a shell would read as more
//!   than a name.
//! - Patterns match in linear time (`crate::pattern`).
//! - `Match exec` runs in a process group of its own, killed (and reaped)
//!   at the dial's deadline or when the dial is dropped.
//!
//! The files, in the order the data flows: `read.rs` loads the files and
//! what they include (`lexer.rs` splits their lines, `keywords.rs` and
//! `values.rs` check each value); `resolve.rs` walks their lines for a
//! host (`exec.rs` runs `Match exec`, `tokens.rs` expands `%` tokens and
//! `~`, `jump.rs` reads `ProxyJump`) into the values of `options.rs`,
//! which become the `HostConfig` of `host_config.rs`. `local.rs` is the
//! local user, home and host name.

mod exec;
mod host_config;
mod jump;
mod keywords;
mod lexer;
mod local;
mod options;
mod read;
mod resolve;
mod tokens;
mod values;

pub use host_config::HostConfig;
pub use jump::JumpHost;

pub(crate) use exec::Until;
pub(crate) use tokens::{proxy_command_line, ProxyTokens};

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use crate::text::Escaped;
use local::Local;
use read::{Files, Loader};

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
    /// How many of the roots are options (`with_option`), read first.
    options: usize,
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
    pub(crate) fn new(message: impl Into<String>) -> Self {
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
            options: 0,
            local: Arc::new(local),
            allow_exec: false,
            allow_canonical: false,
        }
    }

    /// Adds an option as `ssh -o` gives one: `Key=value` or `Key value`,
    /// read before every file (after the options added before it), so
    /// that, as the first value obtained wins, it wins over the files.
    ///
    /// # Errors
    ///
    /// What a file's line would be refused for, and, as `ssh` refuses
    /// them on its command line, `Host`, `Match` and `Include`; more than
    /// one line.
    ///
    /// # Examples
    ///
    /// ```
    /// use ssh_dial::SshConfig;
    ///
    /// let config = SshConfig::parse("Host db\n  ProxyCommand nc %h %p\n")?
    ///     .with_option("ProxyCommand=ssh -W %h:%p bastion")?;
    /// let db = config.resolve("db")?;
    /// assert_eq!(db.proxy_command(), Some("ssh -W %h:%p bastion"));
    /// # Ok::<(), ssh_dial::ConfigError>(())
    /// ```
    pub fn with_option(mut self, option: &str) -> Result<SshConfig, ConfigError> {
        const NAME: &str = "command-line";
        if option.contains(['\n', '\r']) {
            return Err(ConfigError::new(format!(
                "{NAME}: an option is one line: {}",
                shown(option)
            )));
        }
        if let Some((keyword, _)) = lexer::keyword_and_rest(option.as_bytes()) {
            if let Some(k @ ("host" | "match" | "include")) = keywords::canonical(&keyword) {
                let name = match k {
                    "host" => "Host",
                    "match" => "Match",
                    _ => "Include",
                };
                return Err(ConfigError::new(format!(
                    "{NAME}: {name} directive not supported as a command-line option"
                )));
            }
        }
        let mut loader = Loader::new(&self.local);
        loader.root_text(NAME, option.as_bytes())?;
        let read = loader.finish();
        let mut files = Arc::unwrap_or_clone(self.files);
        let id = u32::try_from(files.files.len())
            .map_err(|_| ConfigError::too_large("too many options"))?;
        files.files.extend(read.files);
        files.roots.insert(self.options, id);
        self.options += 1;
        self.files = Arc::new(files);
        Ok(self)
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
mod tests;
