//! Killing a local command's process group: `Match exec` and `ProxyCommand`
//! run in a group of their own (`process_group(0)`), so that what they
//! start dies with them.

/// Sends `SIGKILL` to the process group that `leader` leads: a child
/// spawned with `process_group(0)`, whose pid is the group's id. Call it
/// before the leader is reaped: until then its pid, and so the group's id,
/// cannot have been reused.
pub(crate) fn kill(leader: u32) {
    // SAFETY: killpg(2) has no memory preconditions.
    unsafe {
        libc::killpg(leader as libc::pid_t, libc::SIGKILL);
    }
}
