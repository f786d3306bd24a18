//! One dial in progress, phase by phase: key files, then each jump host and
//! the target (resolve, TCP connect or a channel through the hop before,
//! version and key exchange, auth), every phase under the dial's one
//! deadline and each failure named by its phase.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::client::Handle;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Config, Hop};
use crate::auth::{self, Auth, AuthFailure, Credential};
use crate::client::{Client, DialTimings, Session, Settings};
use crate::deadline::{self, race, Armed, Raced, Switch, GRACE};
use crate::error::{DialError, Kind, Phase};
use crate::handshake::{self, ClientHandler};
use crate::proxy_command::{ProxyStream, Stderr};
use crate::resolve::ResolveError;
use crate::target::Target;
use crate::tcp;

/// How long a shared jump host is watched for a late answer to a channel
/// request the dial gave up on: longer than sshd's own connect to the
/// target can take (Linux gives up on an unanswered SYN after about
/// 127 s), so that a late confirmation is seen and closed.
const LATE_ANSWER: Duration = Duration::from_secs(150);

/// How long past the deadline a failed dial may wait for the rest of its
/// `ProxyCommand`'s stderr.
const STDERR_WAIT: Duration = Duration::from_millis(10);

/// One dial in progress: the phases in order, each a method that returns
/// what the next needs or the dial's error.
pub(super) struct Attempt<'a> {
    /// The settings of the connection being made: a jump host's own, or
    /// the target's.
    pub(super) config: &'a Config,
    pub(super) start: Instant,
    pub(super) deadline: Instant,
    pub(super) label: &'a str,
    /// The jump hosts, as `a:22,b:22`, if the dial goes through any.
    pub(super) via: Option<String>,
    /// The jump host being dialed, while one is.
    pub(super) hop: Option<String>,
    pub(super) remote_addr: Option<std::net::SocketAddr>,
    /// When the phase under way began.
    pub(super) lap: Instant,
    /// The remote forwards' queues of the connection being made.
    pub(super) inbound: crate::handshake::Inbound,
    /// The stderr of the `ProxyCommand` carrying the connection being
    /// made, if one does.
    pub(super) stderr: Option<Stderr>,
}

impl<'a> Attempt<'a> {
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

    pub(super) async fn run(
        mut self,
        target: &Target,
        user: &str,
        auth: Auth,
        hops: &'a [Hop],
        mut via: Option<Arc<Client>>,
        proxy: Option<&str>,
    ) -> Result<Client, DialError> {
        let mut timings = DialTimings::default();
        let credentials = self.load(&auth).await?;
        timings.auth = self.lap();
        let target_config = self.config;
        // The chain so far, as the key of a shared jump host.
        let mut chain = String::new();
        for (i, hop) in hops.iter().enumerate() {
            self.hop = Some(hop.target.display());
            self.config = hop.config.as_deref().unwrap_or(target_config);
            chain.push_str(&format!("{}@{}>", hop.user, hop.target.display()));
            if let Some(shared) = self.config.jump_hosts.as_ref().and_then(|j| j.get(&chain)) {
                tracing::debug!(jump_host = %hop.target.display(), "sharing a jump host connection");
                via = Some(shared);
                continue;
            }
            let own;
            let hop_credentials = match &hop.auth {
                Some(auth) => {
                    own = self.load(auth).await?;
                    &own
                }
                None => {
                    own = credentials
                        .iter()
                        .filter(|c| !c.is_secret())
                        .cloned()
                        .collect();
                    if own.is_empty() {
                        return Err(self.fail(
                            Phase::Auth,
                            Kind::NoCredentials(
                                "a password or keyboard-interactive answers given for the target are never offered to a jump host: give it a key of its own (JumpHost::with_auth, or an IdentityFile in ssh_config)"
                                    .into(),
                            ),
                        ));
                    }
                    &own
                }
            };
            let mut ignored = DialTimings::default();
            // Boxed, as the target's leg below.
            let leg = self.leg(
                &hop.target,
                &hop.user,
                hop_credentials,
                via.take(),
                proxy.filter(|_| i == 0),
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
        self.config = target_config;
        // Boxed: only the leg under way takes memory, and the dial future
        // stays small.
        let proxy = proxy.filter(|_| hops.is_empty());
        let leg = self.leg(target, user, &credentials, via, proxy, &mut timings);
        let client = Box::pin(leg).await?;
        tracing::debug!(elapsed = ?timings.auth, "authenticated");
        Ok(client)
    }

    /// One SSH connection of the dial: to the target, or to a jump host,
    /// over TCP, through the jump host before it (`via`), or carried by a
    /// `ProxyCommand` (`proxy`, the first connection only). On failure
    /// `via` is aborted unless other clients share it.
    async fn leg(
        &mut self,
        target: &Target,
        user: &str,
        credentials: &[Credential],
        via: Option<Arc<Client>>,
        proxy: Option<&str>,
        timings: &mut DialTimings,
    ) -> Result<Client, DialError> {
        self.inbound = crate::handshake::Inbound::default();
        self.stderr = None;
        let credentials = self.config.methods.apply(credentials.to_vec());
        let connected = match (&via, proxy) {
            (None, None) => self.direct(target, timings).await,
            // Boxed: a channel stream's handshake is larger than a TCP
            // one, and direct legs should not carry its room.
            (Some(jump), _) => Box::pin(self.through(jump, target, timings)).await,
            (None, Some(line)) => Box::pin(self.proxied(line, target, timings)).await,
        };
        let authed = match connected {
            Ok((handle, mut switch, armed, remote)) => self
                .authenticate(handle, &mut switch, armed, user, &credentials)
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
                return Err(self.with_stderr(e).await);
            }
        };
        timings.auth += self.lap();
        Ok(Client::new(
            Session {
                handle,
                switch,
                inbound: std::mem::take(&mut self.inbound),
            },
            self.hop.clone().unwrap_or_else(|| self.label.to_owned()),
            remote,
            Settings {
                exec_timeout: self.config.exec_timeout,
                open_timeout: self.config.open_timeout,
                tunnel_stall: self.config.tunnel_stall,
                max_output: self.config.max_output,
                close_timeout: self.config.close_timeout,
            },
            *timings,
            via,
        ))
    }

    /// `e` with what the `ProxyCommand` of the failed connection wrote to
    /// its stderr, if one carried it. By now the command's process group
    /// has been killed (its stream dropped), so its stderr ends at once;
    /// the wait is bounded all the same (a daemon it left could hold
    /// stderr open), and goes no more than 10 ms past the deadline.
    async fn with_stderr(&mut self, e: DialError) -> DialError {
        let Some(stderr) = self.stderr.take() else {
            return e;
        };
        let now = Instant::now();
        let until = (self.deadline + STDERR_WAIT)
            .min(now + Duration::from_millis(100))
            .max(now + STDERR_WAIT);
        e.with_proxy_stderr(stderr.text_by(until).await)
    }

    /// The connection carried by a `ProxyCommand`: `line` run by
    /// `/bin/sh -c` (counted as connect), and the handshake over its stdin
    /// and stdout. The command's process group is killed when the
    /// connection ends: at the deadline, on an error, or with the client.
    async fn proxied(
        &mut self,
        line: &str,
        target: &Target,
        timings: &mut DialTimings,
    ) -> Result<(Handle<ClientHandler>, Switch, Armed, Option<SocketAddr>), DialError> {
        self.remote_addr = None;
        let stream = ProxyStream::spawn(line)
            .map_err(|e| self.fail(Phase::Connect, Kind::ProxyCommandSpawn(e)))?;
        self.stderr = Some(stream.stderr());
        timings.connect = self.lap();
        tracing::debug!(command = %crate::text::Escaped(line), "ProxyCommand started");
        let (handle, switch, armed) = self.handshake(target, stream, None, timings).await?;
        Ok((handle, switch, armed, None))
    }

    /// Resolve, TCP connect and handshake.
    async fn direct(
        &mut self,
        target: &Target,
        timings: &mut DialTimings,
    ) -> Result<(Handle<ClientHandler>, Switch, Armed, Option<SocketAddr>), DialError> {
        self.remote_addr = None;
        let addrs = self.resolve(target).await?;
        timings.resolve = self.lap();
        let (tcp, remote) = self.connect(&addrs).await?;
        timings.connect = self.lap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        let (handle, switch, armed) = self.handshake(target, tcp, Some(fd), timings).await?;
        Ok((handle, switch, armed, Some(remote)))
    }

    /// A `direct-tcpip` channel from the jump host to `target` (counted as
    /// connect), and the handshake over it.
    async fn through(
        &mut self,
        jump: &Arc<Client>,
        target: &Target,
        timings: &mut DialTimings,
    ) -> Result<(Handle<ClientHandler>, Switch, Armed, Option<SocketAddr>), DialError> {
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
            Ok(Ok(c)) => Ok(c),
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
        let (name, port) = match &self.config.host_key_alias {
            // The alias names the key without a port, as in OpenSSH.
            Some(alias) => (alias.as_str(), 22),
            None => (target.host(), target.port()),
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
            self.inbound.clone(),
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
