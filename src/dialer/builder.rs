//! [`DialerBuilder`]: every setting of a [`Dialer`], with its default.

use std::sync::Arc;
use std::time::Duration;

use super::shared_jumps::SharedJumps;
use super::{Config, Dialer};
use crate::host_keys::HostKeys;
use crate::resolve::Resolver;
use crate::ssh_config::{JumpHost, SshConfig};
use crate::tcp::AddressFamily;

/// Builds a [`Dialer`]. Every setting has a default; see each method.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct DialerBuilder {
    config: Config,
    // Read only by `build`, which puts them in the russh config.
    russh: Option<russh::client::Config>,
    ssh_keepalive_interval: Option<Duration>,
    ssh_keepalive_max: usize,
    channel_window: u32,
    host_certificates: bool,
}

/// The SSH channel window a dialer advertises unless told otherwise.
const DEFAULT_CHANNEL_WINDOW: u32 = 8 << 20;
/// The smallest window [`DialerBuilder::channel_window`] takes: one packet
/// of russh's default maximum size.
const MIN_CHANNEL_WINDOW: u32 = 32 << 10;

impl Default for DialerBuilder {
    fn default() -> Self {
        DialerBuilder {
            config: Config::default(),
            russh: None,
            ssh_keepalive_interval: Some(Duration::from_secs(15)),
            ssh_keepalive_max: 3,
            channel_window: DEFAULT_CHANNEL_WINDOW,
            host_certificates: false,
        }
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

    /// How many bytes each channel (a command, an SFTP session, a tunnel)
    /// lets the server send ahead of what the client has taken in: the
    /// window advertised when the channel opens and topped up to as it is
    /// used. Over a round trip `rtt`, a channel reads at most `window /
    /// rtt` from the server, in practice nearer half that (russh tops a
    /// window up only once half of it is used): SFTP downloads through a
    /// 50 ms delay line ran at 17.6 MiB/s with 2 MiB, 56.4 MiB/s with
    /// 8 MiB. The client's memory does not grow with it: data a caller has
    /// not read stops the connection's reading once russh's channel buffer
    /// is full.
    ///
    /// Default is 8 MiB (russh's own default is 2 MiB, which held SFTP
    /// downloads at 50 ms to 0.56 of OpenSSH's `sftp`; OpenSSH keeps its
    /// 2 MiB window nearly full by topping it up every 96 KiB, which russh
    /// does not do). Values under 32 KiB are raised to 32 KiB.
    pub fn channel_window(mut self, bytes: u32) -> Self {
        self.channel_window = bytes.max(MIN_CHANNEL_WINDOW);
        self
    }

    /// The russh client configuration for everything ssh-dial does not set
    /// itself (algorithms, packet sizes, client version string, ...). Its
    /// `keepalive_interval` and `keepalive_max` are replaced by this
    /// builder's [`ssh_keepalive_interval`](Self::ssh_keepalive_interval)
    /// and [`ssh_keepalive_max`](Self::ssh_keepalive_max), its
    /// `window_size` by [`channel_window`](Self::channel_window); its
    /// `nodelay` is unused (see [`tcp_nodelay`](Self::tcp_nodelay)).
    ///
    /// Default is `russh::client::Config::default()` (with the window
    /// above).
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

    /// How long a tunnel's channel may take to open
    /// ([`Client::connect_tcp`](crate::Client::connect_tcp), and each
    /// connection of a forward): the server answers once it has connected
    /// to the target.
    ///
    /// If `None`, as long as the server takes. Default is 10 seconds.
    pub fn open_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.open_timeout = timeout.into();
        self
    }

    /// How long a tunnel whose reader has fallen 4 MiB behind may wait for
    /// it to read before the tunnel is closed (see
    /// [`Tunnel`](crate::Tunnel): while it waits, the connection pauses).
    /// Default is 30 seconds.
    pub fn tunnel_stall_timeout(mut self, timeout: Duration) -> Self {
        self.config.tunnel_stall = timeout;
        self
    }

    /// Default deadline of the client's commands (see
    /// [`Command::timeout`](crate::Command::timeout)), from asking for the
    /// channel to the exit status.
    ///
    /// If `None`, commands may run forever. Default is 60 seconds.
    pub fn exec_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.exec_timeout = timeout.into();
        self
    }

    /// Default output cap per stream of the client's commands (see
    /// [`Command::max_output`](crate::Command::max_output)): what
    /// [`Client::exec`](crate::Client::exec) keeps, and what a spawned
    /// command may buffer unread.
    ///
    /// If `None`, unbounded. Default is 16 MiB.
    pub fn max_output(mut self, max: impl Into<Option<usize>>) -> Self {
        self.config.max_output = max.into();
        self
    }

    /// How long [`Client::close`](crate::Client::close) waits for the server
    /// to end the session before closing the socket anyway. Default is 5
    /// seconds.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// Jump hosts every dial goes through, first hop first (`ssh -J`,
    /// OpenSSH's `ProxyJump`): the dial connects to the first, opens a
    /// `direct-tcpip` channel through it to the next, and so on to the
    /// target, each hop with its own host key check under its own name,
    /// as the jump host's user or the dial's, with the credentials and
    /// host keys it was given ([`JumpHost::with_auth`],
    /// [`JumpHost::with_host_keys`]) or else the dial's keys and the
    /// dialer's host keys (never the dial's password or
    /// keyboard-interactive answers). One deadline covers every hop; an error names the hop that
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

    /// A local command whose stdin and stdout carry each dial's
    /// connection instead of TCP, as OpenSSH's `ProxyCommand` (and
    /// `ssh -o ProxyCommand=…`): `ssh -W %h:%p bastion`, `nc %h %p`,
    /// `aws ssm start-session …`, `tbot ssh-proxy-command …`.
    ///
    /// Run as `ssh` runs it, `exec` and the command given to `/bin/sh -c`
    /// (`ssh` uses `$SHELL`; a service should not depend on its user's
    /// login shell), with `%h` (the host name to connect to), `%p`, `%r`
    /// (the user), `%n` (the host as given), `%k` (`HostKeyAlias`, or the
    /// host as given) and `%%` expanded; any other token fails the dial.
    /// A host or user name that a shell would read as more than a name
    /// (metacharacters, blanks, a leading `-`) is refused wherever the
    /// command uses it, as OpenSSH 9.6 refuses them on its command line.
    ///
    /// The command runs under the dial's one deadline, in a process group
    /// of its own: at the deadline, on any failure, when the dial is
    /// dropped and when the client goes, the whole group is killed and the
    /// command reaped (one that is ending by itself, its stdout closed, is
    /// given 50 ms to finish writing why). The last 2 KiB of its stderr is
    /// kept and shown in a
    /// failed dial's error
    /// ([`DialError::proxy_command_stderr`](crate::DialError::proxy_command_stderr)).
    /// The host key is checked under the target's name, as for a TCP
    /// connection; [`Client::remote_addr`](crate::Client::remote_addr) is
    /// `None`.
    ///
    /// With an [`ssh_config`](Self::ssh_config), this wins over the file's
    /// `ProxyCommand` and `ProxyJump` for the target, as `-o` does. With
    /// [`proxy_jump`](Self::proxy_jump) as well, every dial fails as
    /// invalid input (`ssh`'s "inconsistent options"); a jump host's own
    /// `ProxyCommand` in ssh_config carries the connection to it.
    ///
    /// Default is none: dials connect over TCP.
    pub fn proxy_command(mut self, command: impl Into<String>) -> Self {
        self.config.proxy_command = Some(command.into());
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
    /// `HostKeyAlias`), `PreferredAuthentications`,
    /// `PubkeyAuthentication` and `PasswordAuthentication`, and
    /// `ProxyCommand` (see [`proxy_command`](Self::proxy_command)). Each
    /// jump host is resolved as a host of its own, as `ssh -J` resolves
    /// it: its own host key settings, `User`, `IdentityFile`s,
    /// `CertificateFile`s, `IdentitiesOnly` and agent, and, for the first
    /// hop, its own `ProxyJump` (nested bastions; a loop is refused) or
    /// `ProxyCommand`. Whatever this
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
        russh.window_size = self.channel_window;
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
