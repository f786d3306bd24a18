//! Servers to test SSH clients against: misbehaving ones, a well-behaved
//! one that runs commands, and the real OpenSSH `sshd` and `ssh-agent`.
//!
//! Enabled by the cargo feature `testing`. Every server listens on
//! `127.0.0.1:0` and runs on a thread and Tokio runtime of its own, so its
//! tasks never show in the caller's runtime metrics, and it closes its side
//! of a connection as soon as the client closes its own. After a client that
//! cleans up, the process's open file descriptors return to where they were;
//! after one that leaks, the server's side stays open too. Dropping a server
//! stops it and closes every connection it holds.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use ssh_dial::testing::{MisbehavingServer, Mode};
//! use ssh_dial::{Auth, Dialer, HostKeys, Phase};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let server = MisbehavingServer::start(Mode::StallAfterBanner)?;
//! let dialer = Dialer::builder()
//!     .timeout(Duration::from_millis(300))
//!     .host_keys(HostKeys::insecure_accept_any())
//!     .build();
//! let err = dialer.dial(server.addr(), "test", Auth::password("test")).await.unwrap_err();
//! assert!(err.is_timeout());
//! assert_eq!(err.phase(), Phase::KeyExchange);
//! # Ok(()) }
//! ```

#[cfg(feature = "metrics")]
mod metrics;
mod misbehaving;
mod openssh;
mod server;
mod socket;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use metrics::MetricsRecorder;
pub use misbehaving::{MisbehavingServer, Mode};
pub use openssh::{find_program, ssh_keygen, ssh_keygen_certify, SshAgent, Sshd, SshdBuilder};
pub use server::{TestServer, TestServerBuilder};
pub use socket::SocketOptions;

use std::future::Future;
use std::io;
use std::thread::JoinHandle;

use russh::keys::PrivateKey;
use tokio::sync::oneshot;

/// The lines of a known_hosts file that speak for `host` on `port`, as
/// ssh-dial reads the file when it checks a host key (the lines
/// `ssh-keygen -F` finds, whose key parses): their 1-based numbers, in
/// file order. For checking a file, or ssh-dial's reading of one, without
/// a server.
///
/// ```
/// let text = b"web1,web2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILg4zKcoTwbt5lqhVGjk64meBdTzYRuV14vdclMQCvs6\n";
/// assert_eq!(ssh_dial::testing::known_hosts_lines(text, "web2", 22), [1]);
/// assert!(ssh_dial::testing::known_hosts_lines(text, "web3", 22).is_empty());
/// ```
pub fn known_hosts_lines(text: &[u8], host: &str, port: u16) -> Vec<usize> {
    let indexed = crate::known_hosts::Indexed::new(text.to_vec());
    let mut found = crate::known_hosts::Found::default();
    found.load_indexed(&indexed, &crate::known_hosts::host_port(host, port), 0);
    found.entries.iter().map(|e| e.line).collect()
}

/// A fresh random Ed25519 private key, for host keys and user keys in tests.
///
/// # Errors
///
/// If the operating system's random source fails.
pub fn ed25519_key() -> io::Result<PrivateKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(io::Error::other)?;
    let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    Ok(PrivateKey::from(pair))
}

/// A server's own thread and runtime; stopping it closes every socket its
/// tasks hold.
#[derive(Debug)]
struct ServerThread {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `serve(listener)` on a new thread until the server is dropped.
    fn spawn<F, Fut>(name: &str, listener: std::net::TcpListener, serve: F) -> io::Result<Self>
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (tx, rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = serve(listener) => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime drops every connection task.
                drop(runtime);
            })?;
        Ok(ServerThread {
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections for ever, handing each to `handle` in its own task.
async fn accept_loop<F, Fut>(listener: tokio::net::TcpListener, handle: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                // As sshd does for sessions: a reply's packets never wait
                // for the ACK of the one before (Nagle against the
                // client's delayed ACK costs 40 ms a command).
                let _ = socket.set_nodelay(true);
                tokio::spawn(handle(socket));
            }
            // Out of descriptors, most likely: let some close.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// Reads and discards until the peer closes or the connection fails.
async fn drain<R: tokio::io::AsyncRead + Unpin>(mut reader: R) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}
