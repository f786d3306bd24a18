//! Shared by the benchmark programs that compare ssh-dial with another
//! client or with itself: the algorithms both sides are pinned to.

use std::borrow::Cow;

use ssh_dial::russh::{cipher, kex, keys::Algorithm, Preferred};

/// What the pinned comparisons state in their output.
pub const PINNED: &str = "curve25519-sha256, ssh-ed25519, chacha20-poly1305@openssh.com";

/// A russh client configuration that offers only [`PINNED`]: key exchange
/// `curve25519-sha256`, host key `ssh-ed25519`, cipher
/// `chacha20-poly1305@openssh.com`.
pub fn pinned() -> ssh_dial::russh::client::Config {
    ssh_dial::russh::client::Config {
        preferred: Preferred {
            kex: Cow::Owned(vec![kex::CURVE25519]),
            key: Cow::Owned(vec![Algorithm::Ed25519]),
            cipher: Cow::Owned(vec![cipher::CHACHA20_POLY1305]),
            ..Preferred::default()
        },
        ..Default::default()
    }
}
