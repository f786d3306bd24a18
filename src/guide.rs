//! The guide: each topic in depth, with what was measured and how.
//!
//! These pages are the files in the repository's `docs/` folder; their
//! code examples are compiled as doc tests.
//!
//! - [`design`]: what ssh-dial promises and how each promise is kept.
//! - [`trust`]: host keys and authentication, as OpenSSH judges them.
//! - [`reach`]: ssh_config, jump hosts and Happy Eyeballs, as `ssh` does.
//! - [`processes`]: commands as `tokio::process`, bounded and closed.
//! - [`forwarding`]: tunnels, `-L`, `-R` and SOCKS, bounded the same way.
//! - [`sftp`]: files over SFTP, as fast as OpenSSH's `sftp`, bounded the same way.
//! - [`fleet`]: one command on many hosts, metrics and tracing.
//! - [`pool`]: connections reused across commands, `MaxSessions` counted,
//!   sick hosts failed fast.
//! - [`testing`]: misbehaving servers and a real `sshd` for your own tests.
//! - [`performance`]: every number, and the command that measures it.

#[doc = include_str!("../docs/design.md")]
pub mod design {}

#[doc = include_str!("../docs/trust.md")]
pub mod trust {}

#[doc = include_str!("../docs/reach.md")]
pub mod reach {}

#[doc = include_str!("../docs/processes.md")]
pub mod processes {}

#[doc = include_str!("../docs/forwarding.md")]
pub mod forwarding {}

#[doc = include_str!("../docs/sftp.md")]
pub mod sftp {}

#[doc = include_str!("../docs/fleet.md")]
pub mod fleet {}

#[doc = include_str!("../docs/pool.md")]
pub mod pool {}

#[doc = include_str!("../docs/testing.md")]
pub mod testing {}

#[doc = include_str!("../docs/PERFORMANCE.md")]
pub mod performance {}
