//! The dialer: one deadline over resolve, connect, version exchange, key
//! exchange and auth.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use std::net::SocketAddr;

use russh::client::Handle;
use tokio::net::TcpStream;

use crate::auth::{self, Auth, AuthFailure, Credential, MethodPolicy};
use crate::client::{Client, DialTimings, Settings};
use crate::deadline::{self, race, Armed, Raced, Switch, GRACE};
use crate::error::{DialError, Kind, Phase};
use crate::handshake::{self, ClientHandler};
use crate::host_keys::HostKeys;
use crate::resolve::{ResolveError, Resolver};
use crate::ssh_config::{HostConfig, JumpHost, SshConfig, Until};
use crate::target::{ssh_user_problem, InvalidTarget, Target, ToTarget};
use crate::tcp::{self, AddressFamily, TcpConfig};

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
    max_output: Option<usize>,
    close_timeout: Duration,
    proxy_jump: Vec<JumpHost>,
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

/// Jump host connections in use, by chain (`user@host:port>` per hop),
/// held weakly: a jump host lives as long as a client goes through it.
#[derive(Clone, Debug, Default)]
struct SharedJumps(
    Arc<std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<Client>>>>,
);

impl SharedJumps {
    fn get(&self, chain: &str) -> Option<Arc<Client>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let live = map.get(chain).and_then(std::sync::Weak::upgrade);
        match live {
            Some(client) if !client.is_closed() => Some(client),
            _ => {
                map.remove(chain);
                None
            }
        }
    }

    fn put(&self, chain: &str, client: &Arc<Client>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, weak| weak.strong_count() > 0);
        map.insert(chain.to_owned(), Arc::downgrade(client));
    }
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
            max_output: Some(crate::process::DEFAULT_MAX_OUTPUT),
            close_timeout: Duration::from_secs(5),
            proxy_jump: Vec::new(),
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

/// Builds a [`Dialer`]. Every setting has a default; see each method.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct DialerBuilder {
    config: Config,
    // Read only by `build`, which puts them in the russh config.
    russh: Option<russh::client::Config>,
    ssh_keepalive_interval: Option<Duration>,
    ssh_keepalive_max: usize,
    host_certificates: bool,
}

impl Default for DialerBuilder {
    fn default() -> Self {
        DialerBuilder {
            config: Config::default(),
            russh: None,
            ssh_keepalive_interval: Some(Duration::from_secs(15)),
            ssh_keepalive_max: 3,
            host_certificates: false,
        }
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
    /// running is killed with its process group within 20 ms of the drop.
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
        let hops = self.hops(&self.config.proxy_jump, &user);
        let route = Route {
            target: addr.to_target(),
            hops,
            via: None,
        };
        self.dial_with(Instant::now(), &self.config, route, user, auth)
            .await
    }

    /// Dials `destination`, `[user@]host` as `ssh` takes it, with
    /// everything from the dialer's [`ssh_config`](DialerBuilder::ssh_config)
    /// (an empty one if none was given): `HostName`, `Port`, `User` (or
    /// the local user), `ProxyJump`, the host key settings, and the
    /// credentials of [`HostConfig::auth`](crate::HostConfig::auth)
    /// (`IdentityFile`s and the agent). Settings given to the builder win
    /// over the file.
    ///
    /// # Errors
    ///
    /// As [`dial`](Self::dial); a user or host `ssh` would refuse on its
    /// command line, a configuration that cannot be resolved for the host,
    /// a `ProxyCommand`, or nothing to authenticate with are
    /// [`is_invalid_input`](DialError::is_invalid_input).
    ///
    /// # Cancellation
    ///
    /// As [`dial`](Self::dial). A `Match exec` command still running (see
    /// [`SshConfig::allow_match_exec`]) is killed with its process group
    /// within 20 ms of the drop.
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

    /// A dial of a host named in ssh_config: the host resolved as `ssh -G`
    /// resolves it, the file's settings under the builder's.
    async fn dial_configured(
        &self,
        ssh: &SshConfig,
        target: Result<Target, InvalidTarget>,
        names_port: bool,
        user: String,
        auth: Option<Auth>,
    ) -> Result<Client, DialError> {
        let start = Instant::now();
        let fail = |label: &str, kind: Kind| {
            DialError::new(label, Phase::Resolve, kind, None, start.elapsed())
        };
        let target = match target {
            Ok(t) => t,
            Err(e) => return Err(fail(e.input(), Kind::InvalidAddress(e.reason().to_owned()))),
        };
        let label = target.display();
        // Before resolving: the user reaches `%r` in `Match exec`.
        if let Some(why) = ssh_user_problem(&user) {
            return Err(fail(&label, Kind::InvalidUser(why)));
        }
        let destination = match user.as_str() {
            "" => target.host().to_owned(),
            u => format!("{u}@{}", target.host()),
        };
        let explicit_chain = self
            .config
            .explicit
            .proxy_jump
            .then(|| self.config.proxy_jump.clone());
        let timed_out = || {
            DialError::new(
                &label,
                Phase::Resolve,
                Kind::TimedOut(Vec::new()),
                None,
                start.elapsed(),
            )
        };
        let resolved = if ssh.runs_commands() {
            // `Match exec` runs shell commands: off the runtime's workers,
            // under the dial's deadline, which starts now. A command still
            // running at the deadline, or when this future is dropped, is
            // killed with its process group.
            let deadline = deadline::deadline_after(start, self.config.timeout);
            let dropped = DropFlag::default();
            let until = Until {
                deadline: Some(deadline.into_std()),
                dropped: Some(dropped.0.clone()),
            };
            let (ssh, dest) = (ssh.clone(), destination.clone());
            let mut resolving = tokio::task::spawn_blocking(move || {
                resolve_with_hops(&ssh, &dest, explicit_chain, &until)
            });
            match tokio::time::timeout_at(deadline, &mut resolving).await {
                Err(_) => {
                    // The resolve sees the deadline too and kills its
                    // command; wait for that (briefly), so that nothing it
                    // started outlives the dial's error.
                    dropped.0.store(true, std::sync::atomic::Ordering::Release);
                    let _ = tokio::time::timeout(GRACE, resolving).await;
                    return Err(timed_out());
                }
                Ok(Err(join)) => Err(crate::ssh_config::ConfigError::from_panic(join)),
                Ok(Ok(resolved)) => resolved,
            }
        } else {
            resolve_with_hops(ssh, &destination, explicit_chain, &Until::default())
        };
        let (host, resolved_hops) = resolved.map_err(|e| {
            if e.is_deadline() {
                timed_out()
            } else {
                fail(&label, Kind::Config(e.to_string()))
            }
        })?;
        if host.proxy_command().is_some() && host.proxy_jump().is_empty() {
            return Err(fail(
                &label,
                Kind::Unsupported(
                    "ProxyCommand is not supported (ProxyJump is); set ProxyCommand none to dial directly"
                        .into(),
                ),
            ));
        }
        let port = if names_port {
            target.port()
        } else {
            host.port()
        };
        let auth = match auth {
            Some(a) => a,
            None => host.auth().ok_or_else(|| {
                fail(
                    &label,
                    Kind::NoCredentials(format!(
                        "no IdentityFile exists and no agent is usable for {}",
                        host.host()
                    )),
                )
            })?,
        };
        let user = if user.is_empty() {
            host.user().to_owned()
        } else {
            user
        };
        let hops = resolved_hops
            .iter()
            .map(|(jump, resolved)| {
                let port = jump.port().unwrap_or(resolved.port());
                (resolved.hostname(), port).to_target().map(|t| Hop {
                    target: t,
                    user: resolved.user().to_owned(),
                })
            })
            .collect();
        let config = self.for_host(&host);
        let route = Route {
            target: (host.hostname(), port).to_target(),
            hops,
            via: None,
        };
        self.dial_with(start, &config, route, user, auth).await
    }

    /// This dialer's settings with `host`'s from ssh_config where the
    /// builder was not given them.
    fn for_host(&self, host: &HostConfig) -> Config {
        let mut config = (*self.config).clone();
        let explicit = config.explicit;
        if !explicit.connect_timeout {
            if let Some(t) = host.connect_timeout() {
                config.tcp.connect_timeout = Some(t);
            }
        }
        if !explicit.address_family {
            config.tcp.family = host.address_family();
        }
        if !explicit.ssh_keepalive {
            if let Some(interval) = host.server_alive_interval() {
                let mut russh = crate::handshake::copy(&config.russh);
                russh.keepalive_interval = (!interval.is_zero()).then_some(interval);
                russh.keepalive_max = host.server_alive_count_max() as usize;
                config.russh = Arc::new(russh);
            }
        }
        if !explicit.host_keys {
            config.host_keys = host.host_keys();
        }
        config.connection_attempts = host.connection_attempts();
        config.host_key_alias = host.host_key_alias().map(str::to_owned);
        config.methods = MethodPolicy {
            preferred: host
                .preferred_authentications()
                .map(|p| p.split(',').map(str::to_owned).collect()),
            no_pubkey: !host.pubkey_authentication(),
            no_password: !host.password_authentication(),
        };
        config
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
        };
        self.dial_with(Instant::now(), &self.config, route, user.into(), auth)
            .await
    }

    /// The jump hosts as hops: each with its own user or else `user`.
    fn hops(&self, chain: &[JumpHost], user: &str) -> Result<Vec<Hop>, InvalidTarget> {
        chain
            .iter()
            .map(|jump| {
                Ok(Hop {
                    target: (jump.host(), jump.port().unwrap_or(22)).to_target()?,
                    user: jump.user().unwrap_or(user).to_owned(),
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
        let Route { target, hops, via } = route;
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
                config,
                start,
                deadline: deadline::deadline_after(start, config.timeout),
                label: &label,
                via: (!chain.is_empty()).then(|| chain.join(",")),
                hop: None,
                remote_addr: None,
                lap: start,
            }
            .run(&target, &user, auth, &hops, via),
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

/// Resolves `destination` and the jump hosts it goes through (`chain`, or
/// the file's `ProxyJump`): each hop as its own host in the file.
#[allow(clippy::type_complexity)]
fn resolve_with_hops(
    ssh: &SshConfig,
    destination: &str,
    chain: Option<Vec<JumpHost>>,
    until: &Until,
) -> Result<(HostConfig, Vec<(JumpHost, HostConfig)>), crate::ssh_config::ConfigError> {
    let host = ssh.resolve_until(destination, until)?;
    let chain = chain.unwrap_or_else(|| host.proxy_jump().to_vec());
    let mut hops = Vec::with_capacity(chain.len());
    for jump in chain {
        let spec = match jump.user() {
            Some(u) => format!("{u}@{}", jump.host()),
            None => jump.host().to_owned(),
        };
        let resolved = ssh.resolve_until(&spec, until)?;
        hops.push((jump, resolved));
    }
    Ok((host, hops))
}

/// Set when the dial that resolves is dropped (or has given up), so that a
/// `Match exec` command it started is killed.
#[derive(Debug, Default)]
struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// How long a shared jump host is watched for a late answer to a channel
/// request the dial gave up on: longer than sshd's own connect to the
/// target can take (Linux gives up on an unanswered SYN after about
/// 127 s), so that a late confirmation is seen and closed.
const LATE_ANSWER: Duration = Duration::from_secs(150);

/// One dial in progress: the phases in order, each a method that returns
/// what the next needs or the dial's error.
struct Attempt<'a> {
    config: &'a Config,
    start: Instant,
    deadline: Instant,
    label: &'a str,
    /// The jump hosts, as `a:22,b:22`, if the dial goes through any.
    via: Option<String>,
    /// The jump host being dialed, while one is.
    hop: Option<String>,
    remote_addr: Option<std::net::SocketAddr>,
    /// When the phase under way began.
    lap: Instant,
}

/// Where a dial goes: the target, the jump hosts to dial first, and a jump
/// host already connected to go through.
struct Route {
    target: Result<Target, InvalidTarget>,
    hops: Result<Vec<Hop>, InvalidTarget>,
    via: Option<Arc<Client>>,
}

/// One jump host of a dial: where, and as whom.
#[derive(Debug, Clone)]
pub(crate) struct Hop {
    pub(crate) target: Target,
    pub(crate) user: String,
}

impl Attempt<'_> {
    fn fail(&self, phase: Phase, kind: Kind) -> DialError {
        DialError::new(
            self.label,
            phase,
            kind,
            self.remote_addr,
            self.start.elapsed(),
        )
        .through(self.via.as_deref(), self.hop.as_deref())
    }

    fn timed_out(&self, phase: Phase) -> DialError {
        self.fail(phase, Kind::TimedOut(Vec::new()))
    }

    /// Time since the last lap; starts the next.
    fn lap(&mut self) -> Duration {
        let now = Instant::now();
        let took = now - self.lap;
        self.lap = now;
        took
    }

    async fn run(
        mut self,
        target: &Target,
        user: &str,
        auth: Auth,
        hops: &[Hop],
        mut via: Option<Arc<Client>>,
    ) -> Result<Client, DialError> {
        let mut timings = DialTimings::default();
        let credentials = self.load(&auth).await?;
        timings.auth = self.lap();
        // The chain so far, as the key of a shared jump host.
        let mut chain = String::new();
        for hop in hops {
            self.hop = Some(hop.target.display());
            chain.push_str(&format!("{}@{}>", hop.user, hop.target.display()));
            if let Some(shared) = self.config.jump_hosts.as_ref().and_then(|j| j.get(&chain)) {
                tracing::debug!(jump_host = %hop.target.display(), "sharing a jump host connection");
                via = Some(shared);
                continue;
            }
            let mut ignored = DialTimings::default();
            // Boxed, as the target's leg below.
            let leg = self.leg(
                &hop.target,
                &hop.user,
                &credentials,
                via.take(),
                &mut ignored,
            );
            match Box::pin(leg).await {
                Ok(client) => {
                    let client = Arc::new(client);
                    if let Some(shared) = &self.config.jump_hosts {
                        shared.put(&chain, &client);
                    }
                    via = Some(client);
                }
                Err(e) => return Err(e),
            }
        }
        self.hop = None;
        self.remote_addr = None;
        // Boxed: only the leg under way takes memory, and the dial future
        // stays small.
        let client = Box::pin(self.leg(target, user, &credentials, via, &mut timings)).await?;
        tracing::debug!(elapsed = ?timings.auth, "authenticated");
        Ok(client)
    }

    /// One SSH connection of the dial: to the target, or to a jump host,
    /// over TCP or through the jump host before it (`via`). On failure
    /// `via` is aborted unless other clients share it.
    async fn leg(
        &mut self,
        target: &Target,
        user: &str,
        credentials: &[Credential],
        via: Option<Arc<Client>>,
        timings: &mut DialTimings,
    ) -> Result<Client, DialError> {
        let connected = match &via {
            None => self.direct(target, timings).await,
            // Boxed: a channel stream's handshake is larger than a TCP
            // one, and direct legs should not carry its room.
            Some(jump) => Box::pin(self.through(jump, target, timings)).await,
        };
        let authed = match connected {
            Ok((handle, mut switch, armed, remote)) => self
                .authenticate(handle, &mut switch, armed, user, credentials)
                .await
                .map(|handle| (handle, switch, remote)),
            Err(e) => Err(e),
        };
        let (handle, switch, remote) = match authed {
            Ok(done) => done,
            Err(e) => {
                if let Some(jump) = via {
                    crate::client::abort_unshared(jump).await;
                }
                return Err(e);
            }
        };
        timings.auth += self.lap();
        Ok(Client::new(
            handle,
            switch,
            self.hop.clone().unwrap_or_else(|| self.label.to_owned()),
            remote,
            Settings {
                exec_timeout: self.config.exec_timeout,
                max_output: self.config.max_output,
                close_timeout: self.config.close_timeout,
            },
            *timings,
            via,
        ))
    }

    /// Resolve, TCP connect and handshake.
    async fn direct(
        &mut self,
        target: &Target,
        timings: &mut DialTimings,
    ) -> Result<(Handle<ClientHandler>, Switch, Armed, SocketAddr), DialError> {
        self.remote_addr = None;
        let addrs = self.resolve(target).await?;
        timings.resolve = self.lap();
        let (tcp, remote) = self.connect(&addrs).await?;
        timings.connect = self.lap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        let (handle, switch, armed) = self.handshake(target, tcp, Some(fd), timings).await?;
        Ok((handle, switch, armed, remote))
    }

    /// A `direct-tcpip` channel from the jump host to `target` (counted as
    /// connect), and the handshake over it.
    async fn through(
        &mut self,
        jump: &Arc<Client>,
        target: &Target,
        timings: &mut DialTimings,
    ) -> Result<(Handle<ClientHandler>, Switch, Armed, SocketAddr), DialError> {
        self.remote_addr = None;
        jump.carry_tunnels();
        let shared = Arc::strong_count(jump) > 1;
        let owner = jump.clone();
        let (host, port) = (target.host().to_owned(), u32::from(target.port()));
        let mut open = Box::pin(async move {
            owner
                .handle()
                .channel_open_direct_tcpip(host, port, "127.0.0.1", 0)
                .await
        });
        let channel = match tokio::time::timeout_at(self.deadline, &mut open).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(self.fail(Phase::Connect, Kind::ChannelOpen(e))),
            Err(_) => {
                if shared {
                    // The jump host stays up for others: close the channel
                    // if the jump host confirms it after all. The wait ends
                    // with the jump host's answer, its session, or
                    // LATE_ANSWER: the task holds the jump host, which must
                    // not outlive its clients because it never answers.
                    tokio::spawn(tokio::time::timeout(LATE_ANSWER, async move {
                        if let Ok(late) = open.await {
                            let _ = late.close().await;
                        }
                    }));
                }
                return Err(self.timed_out(Phase::Connect));
            }
        };
        timings.connect = self.lap();
        tracing::debug!(via = %jump.target(), "channel to the target open");
        let (handle, switch, armed) = self
            .handshake(target, channel.into_stream(), None, timings)
            .await?;
        Ok((handle, switch, armed, jump.remote_addr()))
    }

    /// Reads and decrypts key files (counted as auth).
    async fn load(&self, auth: &Auth) -> Result<Vec<Credential>, DialError> {
        match tokio::time::timeout_at(self.deadline, auth.load()).await {
            Err(_) => Err(self.timed_out(Phase::Auth)),
            Ok(Err(kind)) => Err(self.fail(Phase::Auth, kind)),
            Ok(Ok(c)) => Ok(self.config.methods.apply(c)),
        }
    }

    async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, DialError> {
        let resolve = self.config.resolver.resolve(target);
        let addrs = match tokio::time::timeout_at(self.deadline, resolve).await {
            Err(_) => return Err(self.timed_out(Phase::Resolve)),
            Ok(Err(ResolveError::Failed(e))) => {
                return Err(self.fail(Phase::Resolve, Kind::Resolve(e)))
            }
            Ok(Err(ResolveError::Busy { max })) => {
                return Err(self.fail(Phase::Resolve, Kind::ResolverBusy { max }))
            }
            Ok(Ok(a)) if a.is_empty() => return Err(self.fail(Phase::Resolve, Kind::NoAddresses)),
            Ok(Ok(a)) => a,
        };
        tracing::debug!(elapsed = ?self.lap.elapsed(), addresses = addrs.len(), "resolved");
        Ok(addrs)
    }

    async fn connect(
        &mut self,
        addrs: &[SocketAddr],
    ) -> Result<(TcpStream, SocketAddr), DialError> {
        let addrs = tcp::attempt_order(addrs, self.config.tcp.family);
        if addrs.is_empty() {
            return Err(self.fail(Phase::Connect, Kind::NoAddresses));
        }
        let mut failed = Vec::new();
        let mut round = 1;
        let (tcp, remote) = loop {
            match tcp::connect(&addrs, &self.config.tcp, self.deadline).await {
                Ok(c) => break c,
                Err(attempts) => failed.extend(attempts),
            }
            if Instant::now() >= self.deadline {
                return Err(self.fail(Phase::Connect, Kind::TimedOut(failed)));
            }
            if round >= self.config.connection_attempts {
                return Err(self.fail(Phase::Connect, Kind::Connect(failed)));
            }
            // ssh_config's ConnectionAttempts: one second apart, as ssh.
            round += 1;
            tokio::time::sleep_until(self.deadline.min(Instant::now() + Duration::from_secs(1)))
                .await;
        };
        self.remote_addr = Some(remote);
        tracing::debug!(%remote, elapsed = ?self.lap.elapsed(), "connected");
        Ok((tcp, remote))
    }

    /// Version exchange and key exchange with the host key check, on the
    /// socket behind the deadline's switch.
    async fn handshake<S>(
        &mut self,
        target: &Target,
        stream: S,
        tcp_fd: Option<std::os::fd::RawFd>,
        timings: &mut DialTimings,
    ) -> Result<(Handle<ClientHandler>, Switch, Armed), DialError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // The known_hosts files, read while the server's banner is on its
        // way; the time counts as key exchange, where it is used.
        let (name, port) = match (&self.config.host_key_alias, &self.hop) {
            // The alias names the key without a port, as in OpenSSH.
            (Some(alias), None) => (alias.as_str(), 22),
            _ => (target.host(), target.port()),
        };
        let prepare = self.config.host_keys.prepare(name, port);
        let host_keys = match tokio::time::timeout_at(self.deadline, prepare).await {
            Err(_) => return Err(self.timed_out(Phase::KeyExchange)),
            Ok(Err(failure)) => return Err(self.fail(Phase::KeyExchange, Kind::HostKey(failure))),
            Ok(Ok(p)) => p,
        };
        let started = Instant::now();
        let read_files = started - self.lap;

        let (mut stream, mut switch) = deadline::guard(stream);
        if let Some(fd) = tcp_fd {
            stream = stream.on_tcp_socket(fd);
        }
        // Our version line out and the server's first bytes in, before
        // russh's handshake future exists: a dial stalled before the
        // banner holds only this one's room.
        let line = handshake::version_line(&self.config.russh);
        if let Raced::TimedOut(phase) = race(
            Box::pin(stream.exchange_ahead(line)),
            self.deadline,
            &switch,
        )
        .await
        {
            drop(stream);
            switch.shut(GRACE).await;
            return Err(self.timed_out(phase));
        }
        let wire = switch.wire();
        let session = switch.session_guard();
        let armed = Armed::new(&switch);
        // Boxed, like the auth below: only the phase under way takes memory,
        // instead of the dial future carrying room for all of them.
        let handshake = Box::pin(handshake::handshake(
            self.config.russh.clone(),
            stream,
            host_keys,
            wire,
            session,
        ));
        let handle = match race(handshake, self.deadline, &switch).await {
            Raced::Done(Ok(h)) => h,
            Raced::Done(Err(kind)) => {
                let phase = match kind {
                    Kind::HostKey(_) => Phase::KeyExchange,
                    _ => deadline::handshake_phase(&switch),
                };
                switch.shut(GRACE).await;
                return Err(self.fail(phase, kind));
            }
            Raced::TimedOut(phase) => {
                switch.shut(GRACE).await;
                return Err(self.timed_out(phase));
            }
        };
        let exchanged = Instant::now();
        let banner = switch
            .banner_at()
            .map(Instant::from_std)
            .unwrap_or(started)
            .clamp(started, exchanged);
        timings.version_exchange = banner - started;
        timings.key_exchange = exchanged - banner + read_files;
        self.lap = exchanged;
        tracing::debug!(
            version_exchange = ?timings.version_exchange,
            key_exchange = ?timings.key_exchange,
            "handshake done"
        );
        Ok((handle, switch, armed))
    }

    /// User authentication. On failure the session is ended before the
    /// error returns: the handle is dropped, which ends any wait of russh's
    /// session task on it (a keyboard-interactive answer, an agent
    /// signature), and the switch ends any wait on the socket.
    async fn authenticate(
        &self,
        mut handle: Handle<ClientHandler>,
        switch: &mut Switch,
        armed: Armed,
        user: &str,
        credentials: &[Credential],
    ) -> Result<Handle<ClientHandler>, DialError> {
        let authed = race(
            Box::pin(auth::authenticate(&mut handle, user, credentials)),
            self.deadline,
            switch,
        )
        .await;
        let err = match authed {
            Raced::Done(Ok(())) => {
                armed.defuse();
                return Ok(handle);
            }
            Raced::Done(Err(AuthFailure::Rejected { tried, allowed })) => self.fail(
                Phase::Auth,
                Kind::AuthRejected {
                    user: user.to_owned(),
                    tried,
                    allowed,
                },
            ),
            Raced::Done(Err(AuthFailure::NothingToOffer(notes))) => {
                self.fail(Phase::Auth, Kind::NoCredentials(notes))
            }
            Raced::Done(Err(AuthFailure::Transport(Some(e)))) => {
                self.fail(Phase::Auth, Kind::from_russh(e))
            }
            Raced::Done(Err(AuthFailure::Transport(None))) => self.fail(Phase::Auth, Kind::Closed),
            Raced::TimedOut(_) => self.timed_out(Phase::Auth),
        };
        switch.trip();
        drop(handle);
        switch.shut(GRACE).await;
        Err(err)
    }
}

impl DialerBuilder {
    /// The total deadline of a dial, from the call to an authenticated
    /// client: reading the key file, DNS, TCP connect, version exchange,
    /// key exchange and authentication.
    ///
    /// Default is 30 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The most name lookups this dialer (and its clones) runs at once.
    /// Lookups run on threads of their own, never on the runtime's blocking
    /// pool, since `getaddrinfo` cannot be cancelled: a lookup whose DNS
    /// server never answers holds its thread until the system resolver
    /// gives up (`resolv.conf`'s timeout × attempts), after its dial has
    /// returned. Identical lookups in flight share a thread, and names in
    /// `/etc/hosts` (when nsswitch reads it first) need none. Past this
    /// bound a dial fails at once with
    /// [`DialError::is_resolver_busy`](crate::DialError::is_resolver_busy)
    /// rather than waiting.
    ///
    /// Default is 64.
    pub fn max_concurrent_lookups(mut self, max: usize) -> Self {
        self.config.resolver = Resolver::new(max);
        self
    }

    /// Which address families to connect over (OpenSSH's `AddressFamily`).
    /// Default is [`AddressFamily::Any`].
    pub fn address_family(mut self, family: AddressFamily) -> Self {
        self.config.explicit.address_family = true;
        self.config.tcp.family = family;
        self
    }

    /// Happy Eyeballs' "Connection Attempt Delay" (RFC 8305): when a host
    /// resolves to several addresses, families interleaved, the next
    /// address is tried this long after the previous attempt started, or as
    /// soon as it fails; the first to connect wins and the others are
    /// closed at once, so a black-holed first address costs this delay, not
    /// the deadline. Every failed attempt is kept for the error.
    ///
    /// Default is 250 milliseconds.
    pub fn happy_eyeballs_delay(mut self, delay: Duration) -> Self {
        self.config.tcp.attempt_delay = delay;
        self
    }

    /// A deadline for each TCP connect attempt, capped by what is left of the
    /// total [`timeout`](Self::timeout) (attempts overlap, see
    /// [`happy_eyeballs_delay`](Self::happy_eyeballs_delay)).
    ///
    /// If `None`, each attempt may use what is left of the total. Default is `None`.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.explicit.connect_timeout = true;
        self.config.tcp.connect_timeout = timeout.into();
        self
    }

    /// Idle time before TCP keepalive probes start (`SO_KEEPALIVE` + `TCP_KEEPIDLE`).
    ///
    /// If `None`, TCP keepalive is off. Default is 15 seconds.
    pub fn tcp_keepalive(mut self, idle: impl Into<Option<Duration>>) -> Self {
        self.config.tcp.keepalive_time = idle.into();
        self
    }

    /// Time between TCP keepalive probes (`TCP_KEEPINTVL`).
    ///
    /// If `None`, the system default. Default is 5 seconds.
    ///
    /// # Notes
    ///
    /// Ignored on OpenBSD, Redox and Solaris, which lack the option.
    pub fn tcp_keepalive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.config.tcp.keepalive_interval = interval.into();
        self
    }

    /// Unanswered TCP keepalive probes before the connection is dropped (`TCP_KEEPCNT`).
    ///
    /// If `None`, the system default. Default is 3.
    ///
    /// # Notes
    ///
    /// Ignored on OpenBSD, Redox, Solaris and Windows, which lack the option.
    pub fn tcp_keepalive_retries(mut self, retries: impl Into<Option<u32>>) -> Self {
        self.config.tcp.keepalive_retries = retries.into();
        self
    }

    /// How long sent data may stay unacknowledged before the kernel drops the
    /// connection (`TCP_USER_TIMEOUT`). Keepalive alone does not cover a peer
    /// that vanishes while we have data in flight; this does.
    ///
    /// If `None`, off. Default is the time keepalive takes to give up, idle +
    /// interval × retries (30 seconds with the defaults), or off when TCP
    /// keepalive is off.
    ///
    /// # Notes
    ///
    /// Linux, Android and Fuchsia only; elsewhere it does nothing.
    pub fn tcp_user_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.tcp.user_timeout = Some(timeout.into());
        self
    }

    /// Sets `TCP_NODELAY`. Default is `true`: SSH sends small packets that
    /// wait on each other.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.config.tcp.nodelay = nodelay;
        self
    }

    /// Interval of SSH-level keepalive requests once authenticated
    /// (russh's `keepalive_interval`; not TCP keepalive, see
    /// [`tcp_keepalive`](Self::tcp_keepalive)); after
    /// [`ssh_keepalive_max`](Self::ssh_keepalive_max) unanswered ones the
    /// session ends. This is what notices a peer whose kernel still answers
    /// but whose sshd is frozen.
    ///
    /// If `None`, off. Default is 15 seconds.
    pub fn ssh_keepalive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.config.explicit.ssh_keepalive = true;
        self.ssh_keepalive_interval = interval.into();
        self
    }

    /// Unanswered SSH keepalive requests before the session ends. Default is 3.
    pub fn ssh_keepalive_max(mut self, max: usize) -> Self {
        self.config.explicit.ssh_keepalive = true;
        self.ssh_keepalive_max = max;
        self
    }

    /// The russh client configuration for everything ssh-dial does not set
    /// itself (algorithms, window sizes, client version string, ...). Its
    /// `keepalive_interval` and `keepalive_max` are replaced by this
    /// builder's [`ssh_keepalive_interval`](Self::ssh_keepalive_interval)
    /// and [`ssh_keepalive_max`](Self::ssh_keepalive_max); its `nodelay` is unused (see [`tcp_nodelay`](Self::tcp_nodelay)).
    ///
    /// Default is `russh::client::Config::default()`.
    pub fn russh_config(mut self, config: russh::client::Config) -> Self {
        self.russh = Some(config);
        self
    }

    /// Which server host keys to trust.
    ///
    /// Default is [`HostKeys::default`]: `~/.ssh/known_hosts`, unknown hosts refused.
    pub fn host_keys(mut self, host_keys: HostKeys) -> Self {
        self.config.explicit.host_keys = true;
        self.config.host_keys = host_keys;
        self
    }

    /// Asks servers for OpenSSH host certificates (`*-cert-v01@openssh.com`)
    /// ahead of plain host keys, so that `@cert-authority` lines in
    /// known_hosts files take effect. A certificate no authority vouches for
    /// is judged by the key it certifies, as OpenSSH does. Replaces
    /// `host_key_certificates` in a [`russh_config`](Self::russh_config).
    ///
    /// Default is `false`: servers present plain keys.
    pub fn host_certificates(mut self, enabled: bool) -> Self {
        self.host_certificates = enabled;
        self
    }

    /// Default deadline of [`Client::exec`], from opening the channel to the
    /// exit status.
    ///
    /// If `None`, commands may run forever. Default is 60 seconds.
    pub fn exec_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.exec_timeout = timeout.into();
        self
    }

    /// Default output cap per stream of the client's commands (see
    /// [`Command::max_output`](crate::Command::max_output)): what
    /// [`Client::exec`] keeps, and what a spawned command may buffer unread.
    ///
    /// If `None`, unbounded. Default is 16 MiB.
    pub fn max_output(mut self, max: impl Into<Option<usize>>) -> Self {
        self.config.max_output = max.into();
        self
    }

    /// How long [`Client::close`] waits for the server to end the session
    /// before closing the socket anyway. Default is 5 seconds.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// Jump hosts every dial goes through, first hop first (`ssh -J`,
    /// OpenSSH's `ProxyJump`): the dial connects to the first, opens a
    /// `direct-tcpip` channel through it to the next, and so on to the
    /// target, each hop with its own host key check under its own name and
    /// the dial's credentials (as the jump host's user, or the dial's
    /// user). One deadline covers every hop; an error names the hop that
    /// failed ([`DialError::jump_host`](crate::DialError::jump_host)).
    /// The client keeps its jump hosts alive and closes them with itself.
    /// For jump hosts shared by several clients, see
    /// [`Dialer::dial_via`].
    ///
    /// Default is none: dials connect directly.
    pub fn proxy_jump(mut self, chain: impl IntoIterator<Item = JumpHost>) -> Self {
        self.config.explicit.proxy_jump = true;
        self.config.proxy_jump = chain.into_iter().collect();
        self
    }

    /// Whether dials through the same jump hosts share one connection to
    /// each (keyed by the chain of `user@host:port` up to it): the first
    /// dial makes it, later ones open their channel through it while any
    /// client still goes through it. A bastion that limits unauthenticated
    /// connections (`MaxStartups`) then sees one handshake, not one per
    /// target. Dials that start while the first is still connecting make
    /// their own.
    ///
    /// Default is `false`: each dial makes its own jump host connections,
    /// as `ssh -J` does. [`Dialer::dial_via`] shares one explicitly.
    pub fn share_jump_hosts(mut self, share: bool) -> Self {
        self.config.jump_hosts = share.then(SharedJumps::default);
        self
    }

    /// Reads hosts the way `ssh` does: [`Dialer::dial`] and
    /// [`Dialer::dial_alias`] look the host up in `config` as `ssh -G`
    /// would and take its `HostName`, `Port` (unless the address names
    /// one), `User` (when the dial's user is empty), `ProxyJump`,
    /// `ConnectTimeout` (each TCP connect attempt), `ConnectionAttempts`,
    /// `ServerAliveInterval`/`ServerAliveCountMax` (SSH keepalive),
    /// `AddressFamily`, the known_hosts settings (`UserKnownHostsFile`,
    /// `GlobalKnownHostsFile`, `StrictHostKeyChecking`, `HashKnownHosts`,
    /// `HostKeyAlias`) and `PreferredAuthentications`,
    /// `PubkeyAuthentication` and `PasswordAuthentication`. Whatever this
    /// builder was told explicitly wins over the file; the dial's one
    /// deadline ([`timeout`](Self::timeout)) is the builder's.
    ///
    /// Default is none: addresses are dialed as given.
    pub fn ssh_config(mut self, config: SshConfig) -> Self {
        self.config.ssh_config = Some(config);
        self
    }

    /// Builds the dialer.
    pub fn build(mut self) -> Dialer {
        let mut russh = self.russh.take().unwrap_or_default();
        russh.keepalive_interval = self.ssh_keepalive_interval;
        russh.keepalive_max = self.ssh_keepalive_max;
        if self.host_certificates {
            russh.preferred.host_key_certificates = russh.preferred.key.clone();
        } else {
            russh.preferred.host_key_certificates = Default::default();
        }
        self.config.russh = Arc::new(russh);
        Dialer {
            config: Arc::new(self.config),
        }
    }
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
