//! Dials of hosts named in ssh_config: the destination and its jump hosts
//! resolved as `ssh -G` resolves them (`Match exec` under the dial's
//! deadline, killed when the dial gives up or is dropped), and the file's
//! settings merged under the builder's.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Config, Dialer, Hop, Route};
use crate::auth::{Auth, MethodPolicy};
use crate::client::Client;
use crate::deadline::{self, GRACE};
use crate::error::{DialError, Kind, Phase};
use crate::ssh_config::{
    proxy_command_line, ConfigError, HostConfig, JumpHost, ProxyTokens, SshConfig, Until,
};
use crate::target::{ssh_user_problem, InvalidTarget, Target, ToTarget};

impl Dialer {
    /// A dial of a host named in ssh_config: the host resolved as `ssh -G`
    /// resolves it, the file's settings under the builder's.
    pub(super) async fn dial_configured(
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
        let proxy_command = self.config.proxy_command.is_some();
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
                resolve_with_hops(&ssh, &dest, explicit_chain, proxy_command, &until)
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
            resolve_with_hops(
                ssh,
                &destination,
                explicit_chain,
                proxy_command,
                &Until::default(),
            )
        };
        let (host, resolved_hops) = resolved.map_err(|e| {
            if e.is_deadline() {
                timed_out()
            } else {
                fail(&label, Kind::Config(e.to_string()))
            }
        })?;
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
        // The ProxyCommand of the first connection: the builder's or the
        // target's, or, through jump hosts, the first one's own.
        let proxy = match resolved_hops.first() {
            // A chain given to the builder, even an empty one, sets the
            // way, as `ssh -J` (which sets ProxyCommand none).
            None => self
                .config
                .proxy_command
                .as_deref()
                .or(host
                    .proxy_command()
                    .filter(|_| !self.config.explicit.proxy_jump))
                .map(|command| (command, &host, port, user.as_str())),
            Some((jump, first)) => first.proxy_command().map(|command| {
                let port = jump.port().unwrap_or(first.port());
                (command, first, port, first.user())
            }),
        };
        let proxy = match proxy {
            Some((command, host, port, user)) => {
                if let Some(why) = refused_proxy(host) {
                    return Err(fail(&label, Kind::Unsupported(why)));
                }
                let names = ProxyTokens {
                    host: host.hostname(),
                    host_arg: host.host(),
                    port,
                    user,
                    alias: host.host_key_alias().unwrap_or(host.host()),
                };
                Some(proxy_command_line(command, names))
            }
            None => None,
        };
        let hops = resolved_hops
            .iter()
            .map(|(jump, resolved)| {
                let port = jump.port().unwrap_or(resolved.port());
                let mut config = self.for_host(resolved);
                if let Some(keys) = jump.own_host_keys() {
                    config.host_keys = keys.clone();
                }
                (resolved.hostname(), port).to_target().map(|t| Hop {
                    target: t,
                    user: resolved.user().to_owned(),
                    auth: jump.own_auth().cloned().or_else(|| resolved.auth()),
                    config: Some(Arc::new(config)),
                })
            })
            .collect();
        let config = self.for_host(&host);
        let route = Route {
            target: (host.hostname(), port).to_target(),
            hops,
            via: None,
            proxy,
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
}

/// The most connections a dial makes on its way to the target, nested
/// jump hosts counted.
const MAX_HOPS: usize = 32;

/// Resolves `destination` and the jump hosts it goes through (`chain`, or
/// the file's `ProxyJump`), first hop first: each hop as its own host in
/// the file, as `ssh -J` resolves them. As there, the first hop's own
/// `ProxyJump` is followed (nested bastions: `ssh -J a,b` runs
/// `ssh -J a -W … b`, and `ssh -W … a` reads `a`'s own `ProxyJump`), a
/// loop is refused, and the first hop's `ProxyCommand` carries the first
/// connection. With a `ProxyCommand` given to the builder, the target's
/// `ProxyJump` is not read (the first value obtained wins, as with `ssh -o
/// ProxyCommand=…`); with both given to the builder, ssh's "inconsistent
/// options" error.
#[allow(clippy::type_complexity)]
fn resolve_with_hops(
    ssh: &SshConfig,
    destination: &str,
    chain: Option<Vec<JumpHost>>,
    proxy_command: bool,
    until: &Until,
) -> Result<(HostConfig, Vec<(JumpHost, HostConfig)>), ConfigError> {
    let host = ssh.resolve_until(destination, until)?;
    let both = if proxy_command {
        chain.as_ref().is_some_and(|c| !c.is_empty())
    } else {
        chain.is_none() && host.proxy_command().is_some() && !host.proxy_jump().is_empty()
    };
    if both {
        return Err(ConfigError::new(super::INCONSISTENT));
    }
    let chain = match chain {
        Some(chain) => chain,
        None if proxy_command => Vec::new(),
        None => host.proxy_jump().to_vec(),
    };
    let mut hops = Vec::with_capacity(chain.len());
    let mut nesting = Vec::new();
    resolve_chain(ssh, chain, until, &mut nesting, &mut hops)?;
    Ok((host, hops))
}

/// Resolves `chain` onto `out`, the first hop's own `ProxyJump` (nested)
/// before it. `nesting` holds the hops whose own chains are being
/// resolved, to refuse a loop.
fn resolve_chain(
    ssh: &SshConfig,
    chain: Vec<JumpHost>,
    until: &Until,
    nesting: &mut Vec<String>,
    out: &mut Vec<(JumpHost, HostConfig)>,
) -> Result<(), ConfigError> {
    for (i, jump) in chain.into_iter().enumerate() {
        if out.len() + nesting.len() >= MAX_HOPS {
            return Err(ConfigError::new(format!(
                "more than {MAX_HOPS} jump hosts on the way to the target"
            )));
        }
        let spec = match jump.user() {
            Some(u) => format!("{u}@{}", jump.host()),
            None => jump.host().to_owned(),
        };
        let resolved = ssh.resolve_until(&spec, until)?;
        // Only the first hop is dialed as `ssh` dials a host (`ssh -W …
        // first`); the others get `-J`, which overrides their own
        // ProxyJump and ProxyCommand.
        if i == 0 && resolved.proxy_command().is_some() && !resolved.proxy_jump().is_empty() {
            return Err(ConfigError::new(format!(
                "jump host {}: {}",
                crate::text::Escaped(jump.host()),
                super::INCONSISTENT
            )));
        }
        if i == 0 && !resolved.proxy_jump().is_empty() {
            let key = format!(
                "{}@{}:{}",
                resolved.user(),
                jump.host(),
                jump.port().unwrap_or(resolved.port())
            );
            if nesting.contains(&key) {
                return Err(ConfigError::new(format!(
                    "jump host loop via {}",
                    crate::text::Escaped(jump.host())
                )));
            }
            nesting.push(key);
            resolve_chain(ssh, resolved.proxy_jump().to_vec(), until, nesting, out)?;
            nesting.pop();
        }
        out.push((jump, resolved));
    }
    Ok(())
}

/// Why the `ProxyCommand` settings of `host` cannot be honoured, if so.
fn refused_proxy(host: &HostConfig) -> Option<String> {
    let fdpass = host
        .other("proxyusefdpass")
        .and_then(|v| v.first())
        .is_some_and(|v| v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("true"));
    fdpass.then(|| {
        "ProxyUseFdpass is not supported: the ProxyCommand would pass back a socket; set ProxyUseFdpass no to use its stdin and stdout".to_owned()
    })
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
