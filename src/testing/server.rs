//! A well-behaved in-process SSH server that runs a tiny shell.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Sig};
use tokio::sync::oneshot;

use super::{accept_loop, ServerThread};
use crate::HostKeys;

/// The russh server configuration the test servers share: answer at once,
/// never time out on their own.
pub(super) fn russh_config(host_key: PrivateKey) -> server::Config {
    server::Config {
        keys: vec![host_key],
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: None,
        ..Default::default()
    }
}

/// A real SSH server (russh) on `127.0.0.1`, with a random Ed25519 host key,
/// the users you give it, and a tiny shell for `exec`. Stopped when dropped.
///
/// The shell runs `;`-separated commands and exits with the status of the
/// last one:
///
/// | command | does |
/// |---|---|
/// | `echo WORDS` | prints `WORDS` and a newline; `echo WORDS >&2` prints to stderr |
/// | `exit N` | stops, with status `N` |
/// | `exit-no-close N` | sends status `N` and EOF but never closes the channel |
/// | `close-without-status` | sends EOF and closes the channel, with no exit status |
/// | `sleep SECS` | waits (fractions allowed) |
/// | `true`, `false` | status 0, 1 |
/// | `kill SIG` | ends the command by signal `SIG` (e.g. `KILL`) |
/// | `cat` | echoes stdin to stdout; at stdin's EOF exits with status 0 |
/// | (a `signal` request) | ends the command by that signal |
/// | `status-only N` | sends status `N`, then neither EOF nor close |
/// | `flood` | writes to stdout without end |
/// | `no-reply` | never answers the exec request |
/// | `flood-no-reply` | writes to stdout without end, never answering the exec request |
/// | anything else | `sh: NAME: not found` on stderr, status 127 |
///
/// `direct-tcpip` channels (`ssh -W`, `-L`, `-D`) are served too: the
/// server connects to the target on this machine and carries the bytes
/// both ways; and `tcpip-forward` requests (`ssh -R`): it listens on
/// `127.0.0.1` and brings each connection to the client (both refused,
/// with [`TestServerBuilder::forwarding`]`(false)`).
///
/// [`open_channels`](TestServer::open_channels) counts the channels the
/// client has not closed, and [`TestServerBuilder::channel_open_delay`]
/// makes the server slow (or silent) in confirming them: channel-level
/// misbehaviour, for testing that a client closes every channel whatever
/// it cancels.
///
/// # Examples
///
/// ```
/// use ssh_dial::testing::TestServer;
/// use ssh_dial::{Auth, Dialer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TestServer::builder().password("alice", "pw").start()?;
/// let dialer = Dialer::builder().host_keys(server.host_keys()).build();
/// let client = dialer.dial(server.addr(), "alice", Auth::password("pw")).await?;
/// let out = client.exec("echo hi; exit 3").await?;
/// assert_eq!(out.stdout, b"hi\n");
/// assert_eq!(out.status.code(), Some(3));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    host_key: PublicKey,
    auth_attempts: Arc<AtomicUsize>,
    open_channels: Arc<AtomicUsize>,
    opened_channels: Arc<AtomicUsize>,
    received: Arc<Mutex<Received>>,
    _thread: ServerThread,
}

/// Configures a [`TestServer`].
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct TestServerBuilder {
    users: Users,
    host_key: Option<PrivateKey>,
    open_delay: Option<Duration>,
    no_forwarding: bool,
}

/// Keyboard-interactive rounds, each prompt a (text, echo, expected answer).
type Rounds = Vec<Vec<(String, bool, String)>>;

#[derive(Clone, Default)]
struct Users {
    passwords: HashMap<String, String>,
    keys: HashMap<String, Vec<PublicKey>>,
    keyboard: HashMap<String, Rounds>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("password_users", &self.passwords.keys().collect::<Vec<_>>())
            .field("key_users", &self.keys.keys().collect::<Vec<_>>())
            .field("keyboard_users", &self.keyboard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Users {
    /// The methods the server offers: those some user can pass.
    fn methods(&self) -> MethodSet {
        let mut methods = MethodSet::empty();
        if !self.passwords.is_empty() {
            methods.push(MethodKind::Password);
        }
        if !self.keys.is_empty() {
            methods.push(MethodKind::PublicKey);
        }
        if !self.keyboard.is_empty() {
            methods.push(MethodKind::KeyboardInteractive);
        }
        methods
    }
}

/// What a [`TestServer`] received, in order, for tests that must show what
/// a client sent or withheld.
#[derive(Debug, Default)]
struct Received {
    /// Each authentication request's method: `none`, `password`, ...
    methods: Vec<String>,
    /// Every keyboard-interactive answer.
    answers: Vec<String>,
    /// Every exec request's command line.
    commands: Vec<String>,
}

impl TestServerBuilder {
    /// Lets `user` in with `password`.
    pub fn password(mut self, user: &str, password: &str) -> Self {
        self.users
            .passwords
            .insert(user.to_owned(), password.to_owned());
        self
    }

    /// Lets `user` in with the private key matching `key`.
    pub fn authorized_key(mut self, user: &str, key: PublicKey) -> Self {
        self.users
            .keys
            .entry(user.to_owned())
            .or_default()
            .push(key);
        self
    }

    /// Lets `user` in through keyboard-interactive authentication after
    /// `rounds` of prompts, each prompt a `(text, echo, expected answer)`.
    /// Any wrong answer ends the attempt.
    pub fn keyboard_interactive(mut self, user: &str, rounds: &[&[(&str, bool, &str)]]) -> Self {
        let rounds = rounds
            .iter()
            .map(|round| {
                round
                    .iter()
                    .map(|&(p, echo, a)| (p.to_owned(), echo, a.to_owned()))
                    .collect()
            })
            .collect();
        self.users.keyboard.insert(user.to_owned(), rounds);
        self
    }

    /// Confirms each session channel only `delay` after the client asked
    /// for it; `Duration::MAX` never confirms one (nor refuses it). Default
    /// is at once.
    pub fn channel_open_delay(mut self, delay: Duration) -> Self {
        self.open_delay = Some(delay);
        self
    }

    /// Whether `direct-tcpip` channels are served (as sshd's
    /// `AllowTcpForwarding`). Default is `true`.
    pub fn forwarding(mut self, allowed: bool) -> Self {
        self.no_forwarding = !allowed;
        self
    }

    /// Uses this host key instead of a random Ed25519 one.
    pub fn host_key(mut self, key: PrivateKey) -> Self {
        self.host_key = Some(key);
        self
    }

    /// Starts the server on `127.0.0.1` and an unused port.
    ///
    /// # Errors
    ///
    /// If no key can be generated, or the listener, runtime or thread
    /// cannot be started.
    pub fn start(self) -> io::Result<TestServer> {
        let host_key = match self.host_key {
            Some(k) => k,
            None => super::ed25519_key()?,
        };
        let public = host_key.public_key().clone();
        let mut config = russh_config(host_key);
        config.methods = self.users.methods();
        let config = Arc::new(config);
        let users = Arc::new(self.users);
        let auth_attempts = Arc::new(AtomicUsize::new(0));
        let counter = auth_attempts.clone();
        let received = Arc::new(Mutex::new(Received::default()));
        let record = received.clone();
        let open_channels = Arc::new(AtomicUsize::new(0));
        let open_count = open_channels.clone();
        let opened_channels = Arc::new(AtomicUsize::new(0));
        let opened_count = opened_channels.clone();
        let open_delay = self.open_delay;
        let no_forwarding = self.no_forwarding;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let thread = ServerThread::spawn("ssh-dial-test-server", listener, move |l| {
            accept_loop(l, move |socket| {
                let config = config.clone();
                let handler = Shell {
                    users: users.clone(),
                    auth_attempts: counter.clone(),
                    received: record.clone(),
                    keyboard_round: 0,
                    running: HashMap::new(),
                    channels: Arc::new(Channels {
                        global: open_count.clone(),
                        total: opened_count.clone(),
                        open: Mutex::new(HashSet::new()),
                    }),
                    open_delay,
                    no_forwarding,
                    unanswered: Vec::new(),
                    cat: HashSet::new(),
                    listening: HashMap::new(),
                    ends: HashMap::new(),
                };
                async move {
                    if let Ok(session) = server::run_stream(config, socket, handler).await {
                        let _ = session.await;
                    }
                }
            })
        })?;
        Ok(TestServer {
            addr,
            host_key: public,
            auth_attempts,
            open_channels,
            opened_channels,
            received,
            _thread: thread,
        })
    }
}

impl TestServer {
    /// Starts configuring a server.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// The address to dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's host key.
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// How many authentication requests (of any method, accepted or not)
    /// the server has received. A client that refuses the host key must
    /// leave this at zero.
    pub fn auth_attempts(&self) -> usize {
        self.auth_attempts.load(Ordering::SeqCst)
    }

    /// Session channels the server has opened and the client has not
    /// closed, over every connection (a connection's channels count until
    /// it ends). A client that closes every channel brings this back to 0.
    pub fn open_channels(&self) -> usize {
        self.open_channels.load(Ordering::SeqCst)
    }

    /// Session channels the server has opened (confirmed) since it started.
    pub fn channels_opened(&self) -> usize {
        self.opened_channels.load(Ordering::SeqCst)
    }

    /// The method of each authentication request received, in order
    /// (`"none"`, `"password"`, `"publickey"`, `"keyboard-interactive"`).
    pub fn auth_methods(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .methods
            .clone()
    }

    /// Every keyboard-interactive answer received, in order.
    pub fn keyboard_answers(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .answers
            .clone()
    }

    /// The command line of every exec request received, in order (answered
    /// or not).
    pub fn exec_requests(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .commands
            .clone()
    }

    /// A policy that trusts exactly this server's host key.
    pub fn host_keys(&self) -> HostKeys {
        HostKeys::pinned_keys([self.host_key.clone()])
    }

    /// The server's line for a `known_hosts` file: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        let key = self.host_key.to_openssh().unwrap_or_default();
        format!("[{}]:{} {}", self.addr.ip(), self.addr.port(), key)
    }
}

/// One connection's handler. Commands run in tasks of their own; each
/// stops when its channel closes or the connection ends (this handler, and
/// with it the stop senders, is dropped).
struct Shell {
    users: Arc<Users>,
    auth_attempts: Arc<AtomicUsize>,
    received: Arc<Mutex<Received>>,
    /// The keyboard-interactive round under way.
    keyboard_round: usize,
    running: HashMap<ChannelId, oneshot::Sender<()>>,
    channels: Arc<Channels>,
    open_delay: Option<Duration>,
    no_forwarding: bool,
    /// Channel opens never to be answered (held until the connection ends).
    unanswered: Vec<ChannelOpenHandle>,
    /// Channels running `cat`.
    cat: HashSet<ChannelId>,
    /// Remote forwards' listeners, by port; they stop when dropped.
    listening: HashMap<u32, oneshot::Sender<()>>,
    /// Each open channel's own end, for the floods (which must wait for the
    /// client's window).
    ends: HashMap<ChannelId, Channel<Msg>>,
}

/// One connection's open channels, counted into the server's total.
#[derive(Debug)]
struct Channels {
    global: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    open: Mutex<HashSet<ChannelId>>,
}

impl Channels {
    fn opened(&self, id: ChannelId) {
        if self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
        {
            self.global.fetch_add(1, Ordering::SeqCst);
            self.total.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn closed(&self, id: ChannelId) {
        if self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
        {
            self.global.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Channels {
    fn drop(&mut self) {
        let left = self.open.lock().unwrap_or_else(|e| e.into_inner()).len();
        self.global.fetch_sub(left, Ordering::SeqCst);
    }
}

impl server::Handler for Shell {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        self.attempt("none");
        Ok(self.reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.attempt("password");
        Ok(match self.users.passwords.get(user) {
            Some(p) if p == password => Auth::Accept,
            _ => self.reject(),
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.attempt("publickey");
        Ok(self.key_auth(user, offer.public_key))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(rounds) = self.users.keyboard.get(user).cloned() else {
            self.attempt("keyboard-interactive");
            return Ok(self.reject());
        };
        match response {
            None => {
                self.attempt("keyboard-interactive");
                self.keyboard_round = 0;
            }
            Some(response) => {
                let answers: Vec<String> = response
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .collect();
                self.received
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .answers
                    .extend(answers.iter().cloned());
                let expected = rounds
                    .get(self.keyboard_round)
                    .map(|round| round.iter().map(|(_, _, a)| a.clone()).collect::<Vec<_>>());
                if expected.as_ref() != Some(&answers) {
                    return Ok(self.reject());
                }
                self.keyboard_round += 1;
            }
        }
        match rounds.get(self.keyboard_round) {
            None => Ok(Auth::Accept),
            Some(round) => Ok(Auth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: round
                    .iter()
                    .map(|(p, echo, _)| (p.clone().into(), *echo))
                    .collect::<Vec<_>>()
                    .into(),
            }),
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.key_auth(user, key.public_key))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let id = channel.id();
        self.ends.insert(id, channel);
        match self.open_delay {
            None => {
                reply.accept().await;
                self.channels.opened(id);
            }
            Some(Duration::MAX) => self.unanswered.push(reply),
            Some(delay) => {
                let channels = self.channels.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    reply.accept().await;
                    channels.opened(id);
                });
            }
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.no_forwarding {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        if self.open_delay == Some(Duration::MAX) {
            self.unanswered.push(reply);
            return Ok(());
        }
        let (id, delay, channels) = (channel.id(), self.open_delay, self.channels.clone());
        let target = format!("{host}:{port}");
        tokio::spawn(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let Ok(tcp) = tokio::net::TcpStream::connect(&target).await else {
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
                return;
            };
            reply.accept().await;
            channels.opened(id);
            let mut stream = channel.into_stream();
            let mut tcp = tcp;
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
            // The client's close (or the connection's end) decrements.
        });
        Ok(())
    }

    /// `ssh -R`: listens on 127.0.0.1 and opens a `forwarded-tcpip`
    /// channel to the client for each connection.
    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if self.no_forwarding {
            return Ok(false);
        }
        let Ok(wanted) = u16::try_from(*port) else {
            return Ok(false);
        };
        let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", wanted)).await else {
            return Ok(false);
        };
        let bound = listener
            .local_addr()
            .map(|a| u32::from(a.port()))
            .unwrap_or(0);
        *port = bound;
        let (stop_tx, mut stop_rx) = oneshot::channel();
        self.listening.insert(bound, stop_tx);
        let (handle, address) = (session.handle(), address.to_owned());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = &mut stop_rx => return,
                };
                let Ok((tcp, peer)) = accepted else { continue };
                let (handle, address) = (handle.clone(), address.clone());
                tokio::spawn(async move {
                    let channel = handle
                        .channel_open_forwarded_tcpip(
                            address,
                            bound,
                            peer.ip().to_string(),
                            u32::from(peer.port()),
                        )
                        .await;
                    if let Ok(channel) = channel {
                        let mut stream = channel.into_stream();
                        let mut tcp = tcp;
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
                    }
                });
            }
        });
        Ok(true)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        _address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(self.listening.remove(&port).is_some())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let script = String::from_utf8_lossy(data).into_owned();
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .commands
            .push(script.clone());
        let handle = session.handle();
        let end = self.ends.remove(&channel);
        match script.trim() {
            "cat" => {
                session.channel_success(channel)?;
                self.cat.insert(channel);
                return Ok(());
            }
            "no-reply" => return Ok(()),
            "flood" => session.channel_success(channel)?,
            "flood-no-reply" => {}
            _ => {
                session.channel_success(channel)?;
                let channels = self.channels.clone();
                let (stop_tx, stop_rx) = oneshot::channel();
                self.running.insert(channel, stop_tx);
                tokio::spawn(async move {
                    tokio::select! {
                        () = run_script(&script, channel, &handle) => {}
                        _ = stop_rx => return,
                    }
                    // The script closed the channel.
                    channels.closed(channel);
                });
                return Ok(());
            }
        }
        // Floods: as fast as the client's window allows (russh's session
        // would buffer without limit what the window does not take), the
        // channel's incoming messages drained meanwhile.
        let Some(end) = end else {
            return Ok(());
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        self.running.insert(channel, stop_tx);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut read, write) = end.split();
            let mut writer = write.make_writer();
            let chunk = vec![b'y'; 32 * 1024];
            let flood = async { while writer.write_all(&chunk).await.is_ok() {} };
            let drain = async { while read.wait().await.is_some() {} };
            tokio::select! {
                () = flood => {}
                () = drain => {}
                _ = stop_rx => {}
            }
        });
        Ok(())
    }

    /// A signal ends the command running on the channel, by that signal.
    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.running.remove(&channel).is_some() || self.cat.remove(&channel) {
            session.exit_signal_request(channel, signal, false, "", "")?;
            session.eof(channel)?;
            session.close(channel)?;
            self.channels.closed(channel);
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.cat.contains(&channel) {
            session.data(channel, data.to_vec())?;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.cat.remove(&channel) {
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
            self.channels.closed(channel);
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        self.running.remove(&channel);
        self.ends.remove(&channel);
        self.cat.remove(&channel);
        self.channels.closed(channel);
        Ok(())
    }
}

impl Shell {
    /// A rejection that lists every method still offered, as OpenSSH's
    /// sshd does (russh's own default would drop the method just tried).
    fn reject(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(self.users.methods()),
            partial_success: false,
        }
    }

    fn attempt(&self, method: &str) {
        self.auth_attempts.fetch_add(1, Ordering::SeqCst);
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .methods
            .push(method.to_owned());
    }

    fn key_auth(&self, user: &str, key: &PublicKey) -> Auth {
        let ok = self
            .users
            .keys
            .get(user)
            .is_some_and(|keys| keys.iter().any(|k| k.key_data() == key.key_data()));
        if ok {
            Auth::Accept
        } else {
            self.reject()
        }
    }
}

async fn run_script(script: &str, channel: ChannelId, handle: &server::Handle) {
    let mut status = 0u32;
    for command in script.split(';').map(str::trim).filter(|c| !c.is_empty()) {
        let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
        let rest = rest.trim();
        status = match name {
            "echo" => match rest.strip_suffix(">&2") {
                Some(text) => {
                    let _ = handle
                        .extended_data(channel, 1, format!("{}\n", text.trim_end()))
                        .await;
                    0
                }
                None => {
                    let _ = handle.data(channel, format!("{rest}\n")).await;
                    0
                }
            },
            "exit" => {
                status = rest.parse().unwrap_or(255);
                break;
            }
            "close-without-status" => {
                let _ = handle.eof(channel).await;
                let _ = handle.close(channel).await;
                return;
            }
            "exit-no-close" => {
                let status = rest.parse().unwrap_or(255);
                let _ = handle.exit_status_request(channel, status).await;
                let _ = handle.eof(channel).await;
                // Never CHANNEL_CLOSE: held until the client closes it.
                return std::future::pending().await;
            }
            "status-only" => {
                let status = rest.parse().unwrap_or(255);
                let _ = handle.exit_status_request(channel, status).await;
                // Neither EOF nor CHANNEL_CLOSE.
                return std::future::pending().await;
            }
            "sleep" => {
                let secs = rest.parse::<f64>().unwrap_or(0.0).clamp(0.0, 3600.0);
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                0
            }
            "true" => 0,
            "false" => 1,
            "kill" => {
                let sig = match rest {
                    "KILL" => Sig::KILL,
                    "TERM" => Sig::TERM,
                    "INT" => Sig::INT,
                    other => Sig::Custom(other.to_owned()),
                };
                let _ = handle
                    .exit_signal_request(channel, sig, false, String::new(), String::new())
                    .await;
                let _ = handle.eof(channel).await;
                let _ = handle.close(channel).await;
                return;
            }
            other => {
                let _ = handle
                    .extended_data(channel, 1, format!("sh: {other}: not found\n"))
                    .await;
                127
            }
        };
    }
    let _ = handle.exit_status_request(channel, status).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}
