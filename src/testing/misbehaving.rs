//! Peers that accept a connection and then misbehave in one chosen way.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{accept_loop, drain, ServerThread};
use crate::Phase;

/// The version line the misbehaving peers send.
const BANNER: &[u8] = b"SSH-2.0-OpenSSH_9.6\r\n";

/// Time between two bytes in [`Mode::Drip`].
const DRIP_INTERVAL: Duration = Duration::from_millis(250);

/// How a [`MisbehavingServer`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Accepts the connection and never writes a byte.
    Silent,
    /// Sends its version line one byte every 250 ms (about 5 s in all),
    /// then nothing more.
    Drip,
    /// Sends its version line, then nothing: key exchange never starts.
    StallAfterBanner,
    /// Sends its version line and a valid `KEXINIT`, then nothing: key
    /// exchange never finishes.
    StallAfterKexInit,
    /// A real russh server whose authentication never answers.
    StallAuth,
    /// Sends its version line, then resets the connection (`SO_LINGER` 0).
    ResetAfterBanner,
    /// Answers with text that is not SSH, then nothing.
    Garbage,
    /// A listener whose accept queue is full, so the kernel drops the SYNs
    /// of new connections and `connect` never completes.
    BlackHole,
    /// A real russh server that offers only keyboard-interactive
    /// authentication and answers every response with another prompt, for
    /// ever: a client must give up, not loop or hang.
    KeyboardInteractiveStorm,
    /// Sends a version line whose comment is not UTF-8 (Latin-1
    /// `SSH-2.0-OpenSSH_9.6 D\xe9bian`), then nothing. russh skips such a
    /// line as text before the banner, so the version exchange never ends.
    NonUtf8Banner,
    /// Answers key exchange with a host key whose algorithm name is a
    /// forged log line: a terminal escape, a newline and
    /// `dial 10.9.9.9:22: ok`. A client must not print it raw.
    ForgedKeyName,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 11] = [
        Mode::Silent,
        Mode::Drip,
        Mode::StallAfterBanner,
        Mode::StallAfterKexInit,
        Mode::StallAuth,
        Mode::ResetAfterBanner,
        Mode::Garbage,
        Mode::BlackHole,
        Mode::KeyboardInteractiveStorm,
        Mode::NonUtf8Banner,
        Mode::ForgedKeyName,
    ];

    /// A short name, e.g. `"stall-after-kexinit"`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Silent => "silent",
            Mode::Drip => "drip",
            Mode::StallAfterBanner => "stall-after-banner",
            Mode::StallAfterKexInit => "stall-after-kexinit",
            Mode::StallAuth => "stall-auth",
            Mode::ResetAfterBanner => "reset-after-banner",
            Mode::Garbage => "garbage",
            Mode::BlackHole => "black-hole",
            Mode::KeyboardInteractiveStorm => "keyboard-interactive-storm",
            Mode::NonUtf8Banner => "non-utf8-banner",
            Mode::ForgedKeyName => "forged-key-name",
        }
    }

    /// True for the modes that stall, so that a dial against them times
    /// out; false for those that fail it outright (reset, garbage, a
    /// keyboard-interactive storm the client gives up on).
    pub fn stalls(self) -> bool {
        !matches!(
            self,
            Mode::ResetAfterBanner
                | Mode::Garbage
                | Mode::KeyboardInteractiveStorm
                | Mode::ForgedKeyName
        )
    }

    /// The phase a dial against this mode fails in. For
    /// [`Mode::ResetAfterBanner`] it is [`Phase::KeyExchange`] when the
    /// banner is read before the reset arrives, which is the usual case,
    /// and [`Phase::VersionExchange`] otherwise.
    pub fn expected_phase(self) -> Phase {
        match self {
            Mode::Silent | Mode::Drip | Mode::Garbage | Mode::NonUtf8Banner => {
                Phase::VersionExchange
            }
            Mode::StallAfterBanner
            | Mode::StallAfterKexInit
            | Mode::ResetAfterBanner
            | Mode::ForgedKeyName => Phase::KeyExchange,
            Mode::StallAuth | Mode::KeyboardInteractiveStorm => Phase::Auth,
            Mode::BlackHole => Phase::Connect,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A peer on `127.0.0.1` that misbehaves as its [`Mode`] says, with every
/// connection it accepts. Stopped when dropped.
#[derive(Debug)]
pub struct MisbehavingServer {
    addr: SocketAddr,
    mode: Mode,
    _running: Running,
}

#[derive(Debug)]
enum Running {
    Thread {
        _thread: ServerThread,
    },
    /// The listener and the connection that fills its accept queue.
    BlackHole {
        _listener: socket2::Socket,
        _filler: std::net::TcpStream,
    },
}

impl MisbehavingServer {
    /// Starts a server in `mode` on `127.0.0.1` and an unused port.
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound, the runtime or thread cannot be
    /// started, or (for [`Mode::BlackHole`]) the accept queue cannot be filled.
    pub fn start(mode: Mode) -> io::Result<Self> {
        if mode == Mode::BlackHole {
            return black_hole();
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let running = if mode == Mode::StallAuth {
            let config = Arc::new(super::server::russh_config(super::ed25519_key()?));
            ServerThread::spawn("ssh-dial-stall-auth", listener, move |l| {
                accept_loop(l, move |s| stall_auth(config.clone(), s))
            })?
        } else if mode == Mode::KeyboardInteractiveStorm {
            let mut config = super::server::russh_config(super::ed25519_key()?);
            config.methods = [russh::MethodKind::KeyboardInteractive][..].into();
            let config = Arc::new(config);
            ServerThread::spawn("ssh-dial-storm", listener, move |l| {
                accept_loop(l, move |s| {
                    let config = config.clone();
                    async move {
                        if let Ok(session) = russh::server::run_stream(config, s, Storm).await {
                            let _ = session.await;
                        }
                    }
                })
            })?
        } else {
            ServerThread::spawn("ssh-dial-misbehaving", listener, move |l| {
                accept_loop(l, move |s| misbehave(mode, s))
            })?
        };
        Ok(MisbehavingServer {
            addr,
            mode,
            _running: Running::Thread { _thread: running },
        })
    }

    /// The address to dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mode it was started in.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

fn black_hole() -> io::Result<MisbehavingServer> {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    listener.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    // A backlog of 0 lets one connection wait in the queue (Linux:
    // `sk_acceptq_is_full` is `ack_backlog > max`); it is never accepted.
    listener.listen(0)?;
    let addr = listener
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener has no inet address"))?;
    let filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    // Prove the queue is full: a further connect must not complete.
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
        Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {}
        Ok(_) => return Err(io::Error::other(
            "the kernel accepted a connection past the listen backlog; cannot make a black hole",
        )),
        Err(e) => return Err(e),
    }
    Ok(MisbehavingServer {
        addr,
        mode: Mode::BlackHole,
        _running: Running::BlackHole {
            _listener: listener,
            _filler: filler,
        },
    })
}

/// One connection of the raw modes. Ends, closing the socket, when the
/// client closes its side.
async fn misbehave(mode: Mode, mut socket: TcpStream) {
    match mode {
        Mode::Silent => drain(socket).await,
        Mode::StallAfterBanner => {
            if socket.write_all(BANNER).await.is_ok() {
                drain(socket).await
            }
        }
        Mode::StallAfterKexInit => {
            let mut hello = BANNER.to_vec();
            hello.extend_from_slice(&kexinit_packet());
            if socket.write_all(&hello).await.is_ok() {
                drain(socket).await
            }
        }
        Mode::Garbage => {
            let junk = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n\r\n"
                .iter()
                .chain([b'<'; 300].iter())
                .copied()
                .collect::<Vec<u8>>();
            if socket.write_all(&junk).await.is_ok() {
                drain(socket).await
            }
        }
        Mode::Drip => {
            let (reader, mut writer) = socket.into_split();
            let drip = async move {
                for byte in BANNER {
                    tokio::time::sleep(DRIP_INTERVAL).await;
                    if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
                        return;
                    }
                }
                std::future::pending::<()>().await
            };
            tokio::select! {
                () = drip => {}
                () = drain(reader) => {}
            }
        }
        Mode::ResetAfterBanner => {
            if socket.write_all(BANNER).await.is_ok() {
                // Wait for the client's version line, so the reset lands
                // after the banner has been delivered.
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 256];
                let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
                let _ = socket.set_zero_linger();
            }
        }
        Mode::ForgedKeyName => {
            let mut hello = BANNER.to_vec();
            hello.extend_from_slice(&kexinit_packet());
            if socket.write_all(&hello).await.is_err() {
                return;
            }
            // The client's version line, KEXINIT and key exchange init.
            if read_line_and_packets(&mut socket, 2).await.is_ok()
                && socket.write_all(&forged_kex_reply()).await.is_ok()
            {
                drain(socket).await
            }
        }
        Mode::NonUtf8Banner => {
            if socket
                .write_all(b"SSH-2.0-OpenSSH_9.6 D\xe9bian\r\n")
                .await
                .is_ok()
            {
                drain(socket).await
            }
        }
        Mode::StallAuth | Mode::BlackHole | Mode::KeyboardInteractiveStorm => {
            unreachable!("served elsewhere")
        }
    }
}

/// A `KEXINIT` packet (RFC 4253 §7.1) offering what russh and OpenSSH speak.
fn kexinit_packet() -> Vec<u8> {
    let mut payload = vec![20u8]; // SSH_MSG_KEXINIT
    payload.extend_from_slice(&[0x5a; 16]); // cookie
    let lists = [
        "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256",
        "ssh-ed25519,rsa-sha2-256,rsa-sha2-512,ecdsa-sha2-nistp256",
        "chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
        "hmac-sha2-256-etm@openssh.com,hmac-sha2-256",
        "hmac-sha2-256-etm@openssh.com,hmac-sha2-256",
        "none",
        "none",
        "",
        "",
    ];
    for list in lists {
        payload.extend_from_slice(&(list.len() as u32).to_be_bytes());
        payload.extend_from_slice(list.as_bytes());
    }
    payload.push(0); // first_kex_packet_follows
    payload.extend_from_slice(&0u32.to_be_bytes());
    packet(&payload)
}

/// An SSH string: length, then bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A `KEX_ECDH_REPLY` whose host key names its algorithm with a forged
/// log line.
fn forged_kex_reply() -> Vec<u8> {
    let mut key = Vec::new();
    put_string(&mut key, b"\x1b[32m\ndial 10.9.9.9:22: ok\x1b[0m");
    put_string(&mut key, &[7u8; 32]);
    let mut signature = Vec::new();
    put_string(&mut signature, b"ssh-ed25519");
    put_string(&mut signature, &[9u8; 64]);
    let mut payload = vec![31u8]; // SSH_MSG_KEX_ECDH_REPLY
    put_string(&mut payload, &key);
    put_string(&mut payload, &[5u8; 32]);
    put_string(&mut payload, &signature);
    packet(&payload)
}

/// Reads a version line, then `count` binary packets (unencrypted).
async fn read_line_and_packets(socket: &mut TcpStream, count: usize) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    loop {
        socket.read_exact(&mut byte).await?;
        if byte[0] == b'\n' {
            break;
        }
    }
    for _ in 0..count {
        let mut len = [0u8; 4];
        socket.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > 64 * 1024 {
            return Err(io::Error::other("packet too long"));
        }
        let mut body = vec![0u8; len];
        socket.read_exact(&mut body).await?;
    }
    Ok(())
}

/// Frames `payload` as an unencrypted binary packet (RFC 4253 §6).
fn packet(payload: &[u8]) -> Vec<u8> {
    let mut padding = 8 - (5 + payload.len()) % 8;
    if padding < 4 {
        padding += 8;
    }
    let mut packet = Vec::with_capacity(5 + payload.len() + padding);
    packet.extend_from_slice(&((1 + payload.len() + padding) as u32).to_be_bytes());
    packet.push(padding as u8);
    packet.extend_from_slice(payload);
    packet.resize(packet.len() + padding, 0);
    packet
}

/// One connection of [`Mode::StallAuth`]: a real russh server whose auth
/// handlers wait until the client is gone.
///
/// While a russh server awaits a handler it does not read its socket, so it
/// would never see the client close. The socket is therefore relayed through
/// an in-memory pipe; the relay does see the close, drops the socket, and
/// releases the stalled handler.
async fn stall_auth(config: Arc<russh::server::Config>, socket: TcpStream) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (gone_tx, gone_rx) = tokio::sync::watch::channel(false);
    let session = tokio::spawn(async move {
        if let Ok(running) = russh::server::run_stream(config, theirs, StallAuth(gone_rx)).await {
            let _ = running.await;
        }
    });
    let (mut client_r, mut client_w) = socket.into_split();
    let (mut server_r, mut server_w) = tokio::io::split(ours);
    tokio::select! {
        _ = tokio::io::copy(&mut client_r, &mut server_w) => {}
        _ = tokio::io::copy(&mut server_r, &mut client_w) => {}
    }
    // Close both pipes: a session still in key exchange sees EOF, one
    // stalled in auth is released.
    drop((client_r, client_w, server_r, server_w));
    let _ = gone_tx.send(true);
    let _ = session.await;
}

struct StallAuth(tokio::sync::watch::Receiver<bool>);

impl StallAuth {
    async fn stall(&mut self) -> Result<russh::server::Auth, russh::Error> {
        let _ = self.0.wait_for(|gone| *gone).await;
        Err(russh::Error::Disconnect)
    }
}

impl russh::server::Handler for StallAuth {
    type Error = russh::Error;

    async fn auth_none(&mut self, _: &str) -> Result<russh::server::Auth, Self::Error> {
        self.stall().await
    }

    async fn auth_password(
        &mut self,
        _: &str,
        _: &str,
    ) -> Result<russh::server::Auth, Self::Error> {
        self.stall().await
    }

    async fn auth_publickey_offered(
        &mut self,
        _: &str,
        _: russh::server::PublicKeyOffer<'_>,
    ) -> Result<russh::server::Auth, Self::Error> {
        self.stall().await
    }

    async fn auth_publickey(
        &mut self,
        _: &str,
        _: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<russh::server::Auth, Self::Error> {
        self.stall().await
    }
}

/// [`Mode::KeyboardInteractiveStorm`]: every answer earns another prompt.
struct Storm;

impl russh::server::Handler for Storm {
    type Error = russh::Error;

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _: &str,
        _: &str,
        _: Option<russh::server::Response<'a>>,
    ) -> Result<russh::server::Auth, Self::Error> {
        Ok(russh::server::Auth::Partial {
            name: "".into(),
            instructions: "".into(),
            prompts: vec![("Password: ".into(), false)].into(),
        })
    }
}
