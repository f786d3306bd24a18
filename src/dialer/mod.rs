//! The dialer: one deadline over resolve, connect, version exchange, key
//! exchange and auth.
//!
//! [`Dialer`] takes the dials; `builder.rs` holds its settings and their
//! defaults; `ssh_config.rs` resolves a host named in ssh_config and merges
//! its settings under the builder's; `attempt.rs` runs one dial phase by
//! phase under its deadline; `shared_jumps.rs` keeps the jump host
//! connections a dialer shares.

mod attempt;
mod builder;
mod shared_jumps;
mod ssh_config;

pub use builder::DialerBuilder;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::{Auth, MethodPolicy};
use crate::client::Client;
use crate::deadline;
use crate::error::{DialError, Kind, Phase};
use crate::host_keys::HostKeys;
use crate::resolve::Resolver;
use crate::ssh_config::{JumpHost, ProxyTokens, SshConfig};
use crate::target::{ssh_user_problem, InvalidTarget, Target, ToTarget};
use crate::tcp::TcpConfig;
use attempt::Attempt;
use shared_jumps::SharedJumps;

/// Dials SSH servers with one deadline over the whole handshake.
///
/// Cheap to clone: the configuration sits behind an `Arc`, and clones share it.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use ssh_dial::{Auth, Dialer, HostKeys};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let dialer = Dialer::builder()
///     .timeout(Duration::from_secs(10))
///     .host_keys(HostKeys::known_hosts("/home/deploy/.ssh/known_hosts"))
///     .build();
/// let client = dialer
///     .dial("build-7.example.net:22", "deploy", Auth::key_file("id_ed25519", None))
///     .await?;
/// let out = client.exec("uptime").await?;
/// println!("{}", String::from_utf8_lossy(&out.stdout));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Dialer {
    config: Arc<Config>,
}

#[derive(Clone, Debug)]
struct Config {
    timeout: Duration,
    resolver: Resolver,
    tcp: TcpConfig,
    /// Built in `build`, with the SSH keepalive settings in it.
    russh: Arc<russh::client::Config>,
    host_keys: HostKeys,
    exec_timeout: Option<Duration>,
    open_timeout: Option<Duration>,
    tunnel_stall: Duration,
    max_output: Option<usize>,
    close_timeout: Duration,
    proxy_jump: Vec<JumpHost>,
    /// The builder's `ProxyCommand`, tokens unexpanded.
    proxy_command: Option<String>,
    ssh_config: Option<SshConfig>,
    /// Which settings the builder was given, so that ssh_config does not
    /// override them.
    explicit: Explicit,
    /// ssh_config's `ConnectionAttempts`.
    connection_attempts: u32,
    /// ssh_config's `HostKeyAlias`, for the target.
    host_key_alias: Option<String>,
    /// ssh_config's authentication settings.
    methods: MethodPolicy,
    /// Jump host connections shared by this dialer's dials, if sharing.
    jump_hosts: Option<SharedJumps>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Explicit {
    connect_timeout: bool,
    address_family: bool,
    ssh_keepalive: bool,
    host_keys: bool,
    proxy_jump: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_secs(30),
            resolver: Resolver::default(),
            tcp: TcpConfig::default(),
            russh: Arc::new(russh::client::Config::default()),
            host_keys: HostKeys::default(),
            exec_timeout: Some(Duration::from_secs(60)),
            open_timeout: Some(crate::forward::DEFAULT_OPEN_TIMEOUT),
            tunnel_stall: crate::forward::DEFAULT_TUNNEL_STALL,
            max_output: Some(crate::process::DEFAULT_MAX_OUTPUT),
            close_timeout: Duration::from_secs(5),
            proxy_jump: Vec::new(),
            proxy_command: None,
            ssh_config: None,
            explicit: Explicit::default(),
            connection_attempts: 1,
            host_key_alias: None,
            methods: MethodPolicy::default(),
            jump_hosts: None,
        }
    }
}

impl Default for Dialer {
    fn default() -> Self {
        Dialer::builder().build()
    }
}

impl Dialer {
    /// A dialer with every default: see [`DialerBuilder`].
    pub fn new() -> Self {
        Dialer::default()
    }

    /// Starts a [`DialerBuilder`].
    pub fn builder() -> DialerBuilder {
        DialerBuilder::default()
    }

    /// The total deadline of each dial.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// The interval of SSH keepalive requests on its clients, if on (see
    /// [`DialerBuilder::ssh_keepalive_interval`]).
    pub fn ssh_keepalive_interval(&self) -> Option<Duration> {
        self.config.russh.keepalive_interval
    }

    /// A dialer like this one with another total deadline; `self` is
    /// unchanged. Handy for a deadline that spans more than one dial, as in
    /// [`fleet`](crate::fleet).
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Dialer {
        let mut config = (*self.config).clone();
        config.timeout = timeout;
        Dialer {
            config: Arc::new(config),
        }
    }

    /// Connects to `addr`, checks its host key and authenticates `user`,
    /// all within the dialer's [`timeout`](DialerBuilder::timeout).
    ///
    /// `addr` is a `"host:port"` string (port 22 if left out, IPv6 in
    /// brackets), a [`SocketAddr`](std::net::SocketAddr) or a `(host, port)`
    /// tuple. `user` is checked as `ssh` checks a user on its command line
    /// (no shell metacharacter, control character or leading `-`). A
    /// private key file is read first, then the host is resolved and each
    /// of its addresses tried in turn.
    ///
    /// # Errors
    ///
    /// A [`DialError`] naming the [`Phase`] that failed, the address and the
    /// time taken: [`is_timeout`](DialError::is_timeout) when the deadline
    /// passed; otherwise refused connections, host key failures, rejected
    /// credentials, peers that close or speak something else, and unusable
    /// input each have their predicate. When it returns an error, the socket
    /// is closed and russh's session task has finished.
    ///
    /// # Panics
    ///
    /// If polled outside a Tokio runtime with its time driver enabled
    /// (`enable_time` or `enable_all`, as `#[tokio::main]` does).
    ///
    /// # Cancellation
    ///
    /// Dropping the returned future at any point aborts the dial: the socket
    /// is closed and the session task ends promptly after the drop, even in
    /// the middle of key exchange, where a plain timeout around russh would
    /// leave both behind until the peer hung up. With an
    /// [`ssh_config`](DialerBuilder::ssh_config) that
    /// [allows `Match exec`](SshConfig::allow_match_exec), a command still
    /// running is killed with its process group within 20 ms of the drop;
    /// a `ProxyCommand` is killed with its process group when its
    /// connection closes, at once.
    pub async fn dial(
        &self,
        addr: impl ToTarget,
        user: impl Into<String>,
        auth: Auth,
    ) -> Result<Client, DialError> {
        let user = user.into();
        if let Some(ssh) = &self.config.ssh_config {
            // Boxed, so that dials without a config do not carry its room.
            return Box::pin(self.dial_configured(
                ssh,
                addr.to_target(),
                addr.names_port(),
                user,
                Some(auth),
            ))
            .await;
        }
        let target = addr.to_target();
        let proxy = match (&target, &self.config.proxy_command) {
            (Ok(_), Some(_)) if !self.config.proxy_jump.is_empty() => {
                Some(Err(INCONSISTENT.to_owned()))
            }
            (Ok(t), Some(command)) => Some(crate::ssh_config::proxy_command_line(
                command,
                ProxyTokens {
                    host: t.host(),
                    host_arg: t.host(),
                    port: t.port(),
                    user: &user,
                    alias: t.host(),
                },
            )),
            _ => None,
        };
        let route = Route {
            target,
            hops: self.hops(&self.config.proxy_jump, &user),
            via: None,
            proxy,
        };
        self.dial_with(Instant::now(), &self.config, route, user, auth)
            .await
    }

    /// Dials `destination`, `[user@]host` as `ssh` takes it, with
    /// everything from the dialer's [`ssh_config`](DialerBuilder::ssh_config)
    /// (an empty one if none was given): `HostName`, `Port`, `User` (or
    /// the local user), `ProxyJump` (each jump host resolved as a host of
    /// its own) or `ProxyCommand`, the host key settings, and the
    /// credentials of [`HostConfig::auth`](crate::HostConfig::auth)
    /// (`IdentityFile`s, `CertificateFile`s and the agent). Settings given
    /// to the builder win over the file.
    ///
    /// # Errors
    ///
    /// As [`dial`](Self::dial); a user or host `ssh` would refuse on its
    /// command line, a configuration that cannot be resolved for the host
    /// (a jump host loop included), a `ProxyCommand` that may not run (an
    /// unknown `%` token, a name a shell would misread, `ProxyUseFdpass`),
    /// or nothing to authenticate with are
    /// [`is_invalid_input`](DialError::is_invalid_input). A connection
    /// carried by a `ProxyCommand` that fails has the command's stderr in
    /// its error
    /// ([`proxy_command_stderr`](DialError::proxy_command_stderr)).
    ///
    /// # Cancellation
    ///
    /// As [`dial`](Self::dial). A `Match exec` command still running (see
    /// [`SshConfig::allow_match_exec`]) is killed with its process group
    /// within 20 ms of the drop, as is a `ProxyCommand`.
    pub async fn dial_alias(&self, destination: &str) -> Result<Client, DialError> {
        let (user, host) = match destination.rfind('@') {
            Some(at) => (&destination[..at], &destination[at + 1..]),
            None => ("", destination),
        };
        let empty;
        let ssh = match &self.config.ssh_config {
            Some(ssh) => ssh,
            None => {
                empty = SshConfig::empty();
                &empty
            }
        };
        self.dial_configured(
            ssh,
            host.to_target(),
            host.names_port(),
            user.to_owned(),
            None,
        )
        .await
    }

    /// Like [`dial`](Self::dial), but through `jump`, an authenticated
    /// client to a jump host: the connection to `addr` is a `direct-tcpip`
    /// channel of `jump`'s (as `ssh -J` makes), under this dialer's
    /// deadline, and `addr`'s host key is checked under its own name. The
    /// returned client keeps `jump` alive; several clients may share one
    /// jump host this way, which spares a bastion that limits
    /// unauthenticated connections (`MaxStartups`) a handshake per target.
    ///
    /// # Errors
    ///
    /// As [`dial`](Self::dial); a jump host that refuses the channel fails
    /// the connect phase.
    ///
    /// # Cancellation
    ///
    /// As [`dial`](Self::dial). If the deadline passes while the jump host
    /// has not yet answered the channel request, a small task waits for the
    /// answer (at most 150 s, longer than sshd's own connect can take) and
    /// closes the channel if it was opened after all.
    pub async fn dial_via(
        &self,
        jump: &Arc<Client>,
        addr: impl ToTarget,
        user: impl Into<String>,
        auth: Auth,
    ) -> Result<Client, DialError> {
        let route = Route {
            target: addr.to_target(),
            hops: Ok(Vec::new()),
            via: Some(jump.clone()),
            proxy: None,
        };
        self.dial_with(Instant::now(), &self.config, route, user.into(), auth)
            .await
    }

    /// The jump hosts as hops: each with its own user or else `user`, and
    /// the credentials and host keys it was given.
    fn hops(&self, chain: &[JumpHost], user: &str) -> Result<Vec<Hop>, InvalidTarget> {
        chain
            .iter()
            .map(|jump| {
                Ok(Hop {
                    target: (jump.host(), jump.port().unwrap_or(22)).to_target()?,
                    user: jump.user().unwrap_or(user).to_owned(),
                    auth: jump.own_auth().cloned(),
                    config: jump.own_host_keys().map(|keys| {
                        let mut config = (*self.config).clone();
                        config.host_keys = keys.clone();
                        Arc::new(config)
                    }),
                })
            })
            .collect()
    }

    /// A dial that began at `start` (its deadline counts from there).
    async fn dial_with(
        &self,
        start: Instant,
        config: &Config,
        route: Route,
        user: String,
        auth: Auth,
    ) -> Result<Client, DialError> {
        let Route {
            target,
            hops,
            via,
            proxy,
        } = route;
        let invalid = |invalid: InvalidTarget, via: Option<&str>| {
            DialError::new(
                invalid.input(),
                Phase::Resolve,
                Kind::InvalidAddress(invalid.reason().to_owned()),
                None,
                start.elapsed(),
            )
            .through(via, None)
        };
        let (target, hops) = match (target, hops) {
            (Ok(t), Ok(h)) => (t, h),
            (Err(e), _) => return Err(invalid(e, None)),
            (Ok(_), Err(e)) => return Err(invalid(e.clone(), Some(e.input()))),
        };
        let label = target.display();
        if let Some(why) = ssh_user_problem(&user) {
            return Err(DialError::new(
                &label,
                Phase::Resolve,
                Kind::InvalidUser(why),
                None,
                start.elapsed(),
            ));
        }
        let proxy = match proxy.transpose() {
            Ok(line) => line,
            Err(why) => {
                return Err(DialError::new(
                    &label,
                    Phase::Resolve,
                    Kind::ProxyCommandRefused(why),
                    None,
                    start.elapsed(),
                )
                .through(None, hops.first().map(|h| h.target.display()).as_deref()))
            }
        };
        let mut chain: Vec<String> = Vec::new();
        if let Some(jump) = &via {
            chain.push(jump.target().to_owned());
        }
        chain.extend(hops.iter().map(|h| h.target.display()));
        let _in_flight = crate::metrics::InFlight::start();
        let span = tracing::debug_span!(
            "ssh_dial::dial",
            target = %label,
            user = %crate::text::Escaped(&user)
        );
        let result = Box::pin(
            Attempt {
                inbound: crate::handshake::Inbound::default(),
                config,
                start,
                deadline: deadline::deadline_after(start, config.timeout),
                label: &label,
                via: (!chain.is_empty()).then(|| chain.join(",")),
                hop: None,
                remote_addr: None,
                stderr: None,
                lap: start,
            }
            .run(&target, &user, auth, &hops, via, proxy.as_deref()),
        )
        .instrument(span.clone())
        .await;
        span.in_scope(|| match &result {
            Ok(_) => tracing::debug!(elapsed = ?start.elapsed(), "dialed"),
            // The caller's result, not a fault of ours: a fleet with 10,000
            // sick hosts must not write 10,000 warnings.
            Err(e) if e.is_timeout() => tracing::debug!(error = %e, "dial timed out"),
            Err(e) => tracing::debug!(error = %e, "dial failed"),
        });
        crate::metrics::dial_finished(
            result.as_ref().map(|c| c.timings().phases()),
            start.elapsed(),
        );
        result
    }
}

/// What `ssh` says of a `ProxyCommand` and a `ProxyJump` both given.
const INCONSISTENT: &str = "inconsistent options: ProxyCommand+ProxyJump";

/// Where a dial goes: the target, the jump hosts to dial first, a jump
/// host already connected to go through, and the `ProxyCommand` line that
/// carries the first connection (or why it may not run).
struct Route {
    target: Result<Target, InvalidTarget>,
    hops: Result<Vec<Hop>, InvalidTarget>,
    via: Option<Arc<Client>>,
    proxy: Option<Result<String, String>>,
}

/// One jump host of a dial: where, as whom, with what credentials and
/// under which settings.
#[derive(Debug, Clone)]
struct Hop {
    target: Target,
    user: String,
    /// Its own credentials; `None`: the dial's, less its password and
    /// keyboard-interactive answers.
    auth: Option<Auth>,
    /// Its own settings (host keys, auth methods, `HostKeyAlias`, TCP);
    /// `None`: the dial's.
    config: Option<Arc<Config>>,
}

#[cfg(test)]
mod tests {
    /// Every dial in flight holds its future: it must not carry room for
    /// every phase at once (the handshake and auth futures are boxed).
    #[tokio::test]
    async fn a_dial_future_stays_small() {
        let dialer = super::Dialer::new();
        let dial = dialer.dial("127.0.0.1:1", "u", crate::Auth::password("p"));
        let size = std::mem::size_of_val(&dial);
        assert!(size <= 2048, "the dial future is {size} bytes");
    }
}
