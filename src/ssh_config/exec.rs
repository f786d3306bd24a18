//! `Match exec`: the command run as `ssh` runs it, but only with names a
//! shell reads as names, and given up (its process group killed and the
//! shell reaped) at the dial's deadline or when the dial is dropped.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shown;
use crate::process_group;
use crate::target::{ssh_hostname_problem, ssh_user_problem};

/// When to give up on a `Match exec` command: a deadline, and a flag the
/// dial sets when it is dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct Until {
    pub(crate) deadline: Option<Instant>,
    pub(crate) dropped: Option<Arc<AtomicBool>>,
}

impl Until {
    /// Why to give up now, if so.
    fn expired(&self) -> Option<&'static str> {
        if self
            .dropped
            .as_ref()
            .is_some_and(|d| d.load(Ordering::Acquire))
        {
            return Some("the dial was dropped");
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Some("the dial's deadline passed"),
            _ => None,
        }
    }
}

/// Why a `Match` line failed.
pub(super) enum Refused {
    /// The line is wrong, or a command could not run.
    Line(String),
    /// A command was given up at the deadline.
    Deadline(String),
}

/// A command for a shell (`Match exec`, `ProxyCommand`) must not hand it a
/// name it would read as more than a name: each `%h`, `%n` and `%k` it
/// uses must pass `ssh`'s host name rule, and `%r` its user name rule.
/// (OpenSSH checks only the names from its command line; these may also
/// come from the file.) `what` names the command in the error.
pub(super) fn check_names<S: AsRef<str>>(
    what: &str,
    command: &[u8],
    tokens: &[(u8, S)],
) -> Result<(), String> {
    let mut i = 0;
    while i + 1 < command.len() {
        if command[i] != b'%' {
            i += 1;
            continue;
        }
        let token = command[i + 1];
        i += 2;
        let Some(value) = tokens
            .iter()
            .find(|(k, _)| *k == token)
            .map(|(_, v)| v.as_ref())
        else {
            continue;
        };
        let problem = match token {
            b'h' | b'n' | b'k' => ssh_hostname_problem(value),
            b'r' => ssh_user_problem(value),
            _ => None,
        };
        if let Some(why) = problem {
            return Err(format!("{what} not run: %{} would be {why}", token as char));
        }
    }
    Ok(())
}

/// Runs a `Match exec` command as OpenSSH's `execute_in_shell` does (`sh
/// -c`, stdin and stdout on `/dev/null`, stderr shared), in a process group
/// of its own so that whatever it starts can be killed with it. Waits for
/// it, checking `until` every few milliseconds; when it expires, the group
/// is killed and the shell reaped before this returns.
pub(super) fn run_exec(command: &[u8], until: &Until) -> Result<bool, Refused> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let shown_command = shown(command);
    if let Some(why) = until.expired() {
        return Err(Refused::Deadline(format!(
            "match exec {shown_command} not run: {why}"
        )));
    }
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(OsStr::from_bytes(command))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            Refused::Line(format!(
                "match exec {shown_command}: {}",
                crate::text::fmt_io(&e)
            ))
        })?;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.success()),
            Ok(None) => {}
            Err(e) => {
                kill_group(&mut child);
                return Err(Refused::Line(format!(
                    "match exec {shown_command}: {}",
                    crate::text::fmt_io(&e)
                )));
            }
        }
        if let Some(why) = until.expired() {
            kill_group(&mut child);
            return Err(Refused::Deadline(format!(
                "match exec {shown_command} killed: {why}"
            )));
        }
        let mut nap = pause;
        if let Some(deadline) = until.deadline {
            nap = nap.min(deadline.saturating_duration_since(Instant::now()));
        }
        std::thread::sleep(nap);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Kills the child's process group (the shell and all it started that
/// stayed in it) and reaps the shell.
fn kill_group(child: &mut std::process::Child) {
    // The shell is not reaped yet (that is next), so its pid is still the
    // group's id.
    process_group::kill(child.id());
    let _ = child.wait();
}
