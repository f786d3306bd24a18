//! SSH dials with one deadline, that leave nothing behind.
//!
//! A [`Dialer`] bounds the whole of an SSH dial, from DNS through TCP
//! connect, version exchange and key exchange to authentication, by one
//! deadline. When it fires, or when the caller drops the dial, the error
//! names the [`Phase`], the address and the elapsed time, and the socket and
//! russh's session task are already gone. After the dial, dead peers are
//! noticed by TCP keepalive, `TCP_USER_TIMEOUT` and SSH keepalive, and each
//! [`Client::exec`] runs under its own deadline.
//!
//! Hosts can be reached the way `ssh` reaches them: [`SshConfig`] resolves
//! `~/.ssh/config` as `ssh -G` does, jump hosts
//! ([`DialerBuilder::proxy_jump`], `ProxyJump`) are dialed hop by hop under
//! the same one deadline, each a host of its own, and a `ProxyCommand`
//! ([`DialerBuilder::proxy_command`]) runs under it too, killed with its
//! process group when the dial gives up. Commands ([`Client::command`]) have the shape of
//! `tokio::process`, each bounded in time and memory, and every channel is
//! closed whatever future is dropped when.
//!
//! The [`guide`] has a page per topic: [design](guide::design),
//! [trust](guide::trust), [reach](guide::reach),
//! [processes](guide::processes), [forwarding](guide::forwarding),
//! [sftp](guide::sftp), [fleet](guide::fleet), [pool](guide::pool),
//! [testing](guide::testing) and [performance](guide::performance).
//!
//! A service that runs commands on the same hosts again and again keeps
//! its connections in a [`pool::Pool`]: one handshake per host, sshd's
//! `MaxSessions` counted, dead connections never handed out, sick hosts
//! failed fast.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use ssh_dial::{Auth, Dialer, HostKeys};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let dialer = Dialer::builder()
//!     .timeout(Duration::from_secs(10))
//!     .host_keys(HostKeys::known_hosts("/home/deploy/.ssh/known_hosts"))
//!     .build();
//! let client = dialer
//!     .dial("build-7.example.net:22", "deploy", Auth::key_file("id_ed25519", None))
//!     .await?;
//! let out = client.exec("uptime").await?;
//! print!("{}", String::from_utf8_lossy(&out.stdout));
//! # Ok(()) }
//! ```
//!
//! # Cargo features
//!
//! No feature is on by default.
//!
//! - `testing`: the [`testing`] module: peers that misbehave in every way a
//!   sick host does, a well-behaved in-process server, and a harness for a
//!   real OpenSSH `sshd`, to test your own code against.
//! - `metrics`: dial and session metrics through the
//!   [`metrics`](https://docs.rs/metrics) facade, so any exporter works:
//!
//!   | name | type | labels |
//!   |---|---|---|
//!   | `ssh_dial_dials_in_flight` | gauge | |
//!   | `ssh_dial_sessions_open` | gauge | |
//!   | `ssh_dial_dials_total` | counter | `outcome` (`ok`, `timeout`, `error`), `phase` (`none` or the failing phase) |
//!   | `ssh_dial_dial_duration_seconds` | histogram | `outcome` |
//!   | `ssh_dial_phase_duration_seconds` | histogram | `phase` (successful dials) |
//!   | `ssh_dial_pool_connections` | gauge | |
//!   | `ssh_dial_pool_idle_connections` | gauge | |
//!   | `ssh_dial_pool_waiters` | gauge | |
//!   | `ssh_dial_pool_open_circuits` | gauge | |
//!   | `ssh_dial_pool_checkouts_total` | counter | `outcome` (`hit`, `waited`, `timeout`, `circuit_open`, `busy`, `error`, `closed`) |
//!   | `ssh_dial_pool_dials_total` | counter | `outcome` (`ok`, `error`) |
//!   | `ssh_dial_pool_connections_closed_total` | counter | `reason` (`broken`, `idle`, `lifetime`, `excess`, `evicted`, `closed`) |
//!   | `ssh_dial_pool_sessions_refused_total` | counter | |
//!   | `ssh_dial_pool_retries_total` | counter | |
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
mod certificate;
mod channel;
mod client;
mod deadline;
mod dialer;
mod error;
pub mod fleet;
mod forward;
pub mod guide;
mod handshake;
mod host_keys;
mod known_hosts;
mod metrics;
mod pattern;
pub mod pool;
mod process;
mod process_group;
mod proxy_command;
mod resolve;
mod sftp;
mod ssh_config;
mod target;
mod tcp;
mod text;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use auth::{Auth, Challenge, Prompt};
pub use channel::{EndReason, ExitStatus};
pub use client::{Client, DialTimings};
pub use dialer::{Dialer, DialerBuilder};
pub use error::{DialError, Phase};
pub use forward::{LocalForward, RemoteForward, Tunnel, TunnelError};
pub use handshake::ClientHandler;
pub use host_keys::{HostKeys, InvalidHostKey};
pub use process::{
    Command, ExecError, Output, ProcessStderr, ProcessStdin, ProcessStdout, RemoteProcess, Signal,
    Stdio,
};
pub use sftp::{
    DirEntry, File, FileType, FsStats, Metadata, OpenOptions, Sftp, SftpBuilder, SftpError,
};
pub use ssh_config::{ConfigError, HostConfig, JumpHost, SshConfig, StrictHostKeyChecking};
pub use target::{InvalidTarget, Target, ToTarget};
pub use tcp::AddressFamily;

/// russh, as used by this crate: for [`Client::handle`] and private keys.
pub use russh;

/// The README's code blocks, compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
