//! What a command printed and how it ended.

use crate::channel::ExitStatus;

/// What a command printed and how it ended, as collected by
/// [`Client::exec`](crate::Client::exec), [`Command::output`](crate::Command::output)
/// or [`RemoteProcess::wait_with_output`](crate::RemoteProcess::wait_with_output).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Output {
    /// What the command wrote to standard output, up to the output cap.
    pub stdout: Vec<u8>,
    /// What the command wrote to standard error, up to the output cap.
    pub stderr: Vec<u8>,
    /// How the command ended.
    pub status: ExitStatus,
    /// True if a stream passed the output cap and was cut there (see
    /// [`Command::max_output`](crate::Command::max_output)); the rest of
    /// that stream was read and discarded.
    pub truncated: bool,
}
