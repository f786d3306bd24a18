//! Shared by the integration tests: resource counting, waiting for
//! conditions.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

/// The path of an example binary. `cargo test` builds the examples next to
/// the test binaries; fails clearly if this one was not.
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built; run the tests with `cargo test`",
        path.display()
    );
    path
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .count()
}

/// This process's sockets connected to `peer`: the client side of every
/// connection to that server, and nothing the server holds.
pub fn sockets_to(peer: SocketAddr) -> Vec<RawFd> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .flatten()
    {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .map(|l| l.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if !is_socket {
            continue;
        }
        // SAFETY: the fd was open a moment ago and is only borrowed for a
        // getpeername(2); if it closed since, the call fails harmlessly.
        let fd_ref = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd_ref);
        if sock.peer_addr().ok().and_then(|a| a.as_socket()) == Some(peer) {
            found.push(fd);
        }
    }
    found
}

/// Tasks alive in the current Tokio runtime.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Polls `check` every 5 ms until it returns true or `limit` passes.
/// Returns whether it did.
pub async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Serializes tests that count the process's file descriptors.
static FD_COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `test` on a fresh runtime while no other test of this binary runs
/// one: the lock is taken before the runtime exists and released after it
/// is gone, since a runtime's own descriptors would disturb the count.
pub fn counting_fds<F: std::future::Future<Output = ()>>(
    multi_thread: bool,
    test: impl FnOnce() -> F,
) {
    let _serial = FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    runtime.block_on(test());
    drop(runtime);
}
