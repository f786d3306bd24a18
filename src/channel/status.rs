//! How a remote command ended, as its channel says.

use std::fmt;

use crate::text::PeerText;

/// How a remote command ended.
///
/// The server's word where it gave one ([`Code`](Self::Code),
/// [`Signal`](Self::Signal)); otherwise whether ssh-dial ended the command
/// ([`EndedByUs`](Self::EndedByUs)) or the server closed the channel without
/// saying ([`NotSent`](Self::NotSent)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It exited with this status (the server's `exit-status`).
    Code(i32),
    /// A signal ended it (the server's `exit-signal`).
    Signal {
        /// The signal's name as the server sent it, without `SIG`: `"KILL"`,
        /// `"TERM"`, `"SEGV"`.
        name: String,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// ssh-dial ended it before the server said how it ended: the command
    /// was sent `KILL` and its channel closed.
    EndedByUs(EndReason),
    /// The server closed the channel without saying how the command ended
    /// (some servers and network devices never send an exit status).
    NotSent,
}

/// Why ssh-dial ended a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// Its deadline passed ([`Command::timeout`](crate::Command::timeout)).
    Deadline,
    /// Its output passed the cap and
    /// [`kill_at_max_output`](crate::Command::kill_at_max_output) was set.
    MaxOutput,
    /// [`RemoteProcess::kill`](crate::RemoteProcess::kill) or
    /// [`start_kill`](crate::RemoteProcess::start_kill).
    Kill,
}

impl ExitStatus {
    /// True for exit status 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit status, if the command exited rather than being killed.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            _ => None,
        }
    }

    /// The name of the signal that ended the command, as the server sent
    /// it (`"KILL"`), if one did.
    pub fn signal(&self) -> Option<&str> {
        match self {
            ExitStatus::Signal { name, .. } => Some(name),
            _ => None,
        }
    }

    /// True if a signal ended the command and it dumped core.
    pub fn core_dumped(&self) -> bool {
        matches!(
            self,
            ExitStatus::Signal {
                core_dumped: true,
                ..
            }
        )
    }

    /// Why ssh-dial ended the command, if it did.
    pub fn ended_by_us(&self) -> Option<EndReason> {
        match self {
            ExitStatus::EndedByUs(why) => Some(*why),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal { name, core_dumped } => {
                write!(f, "killed by signal {}", PeerText::new(name))?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            ExitStatus::EndedByUs(EndReason::Deadline) => {
                f.write_str("ended by ssh-dial at its deadline")
            }
            ExitStatus::EndedByUs(EndReason::MaxOutput) => {
                f.write_str("ended by ssh-dial at its output cap")
            }
            ExitStatus::EndedByUs(EndReason::Kill) => f.write_str("killed by ssh-dial"),
            ExitStatus::NotSent => f.write_str("no exit status sent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_tell_code_signal_ours_and_none_apart() {
        let killed = ExitStatus::Signal {
            name: "SEGV".into(),
            core_dumped: true,
        };
        assert_eq!(
            (killed.code(), killed.signal(), killed.core_dumped()),
            (None, Some("SEGV"), true)
        );
        assert_eq!(killed.to_string(), "killed by signal SEGV (core dumped)");
        assert!(ExitStatus::Code(0).success() && !ExitStatus::Code(1).success());
        assert_eq!(ExitStatus::Code(-1).code(), Some(-1));
        let ours = ExitStatus::EndedByUs(EndReason::MaxOutput);
        assert_eq!(ours.ended_by_us(), Some(EndReason::MaxOutput));
        assert!(!ours.success() && ours.code().is_none() && ours.signal().is_none());
        assert_eq!(ExitStatus::NotSent.ended_by_us(), None);
        // A forged signal name is shown escaped.
        let forged = ExitStatus::Signal {
            name: "X\n\x1b[2Jok".into(),
            core_dumped: false,
        };
        assert_eq!(forged.to_string(), "killed by signal X\\n\\u{1b}[2Jok");
    }
}
