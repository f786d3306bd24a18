//! What a command printed and how it ended.

use std::fmt;

/// What a command printed and how it ended, as collected by
/// [`Client::exec`](crate::Client::exec) or
/// [`Command::output`](crate::Command::output).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Output {
    /// What the command wrote to standard output, up to the output cap.
    pub stdout: Vec<u8>,
    /// What the command wrote to standard error, up to the output cap.
    pub stderr: Vec<u8>,
    /// The exit status, the signal that ended it, or that the server sent
    /// neither.
    pub status: ExitStatus,
    /// True if a stream reached the output cap and was cut there (see
    /// [`Command::max_output`](crate::Command::max_output)).
    pub truncated: bool,
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It exited with this status.
    Code(u32),
    /// A signal ended it; the name is as the server sent it, e.g. `"KILL"`.
    Signal(String),
    /// The server closed the channel without saying how the command ended
    /// (some servers and network devices never send an exit status; a
    /// command closed for exceeding its output cap has none either).
    NotSent,
}

impl ExitStatus {
    /// True for exit status 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit status, if the command exited rather than being killed.
    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal(s) => {
                write!(f, "killed by signal {}", crate::text::PeerText::new(s))
            }
            ExitStatus::NotSent => f.write_str("no exit status sent"),
        }
    }
}
