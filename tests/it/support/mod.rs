//! Shared by the integration tests: resource counting, waiting for
//! conditions.
#![allow(dead_code)]

pub mod alloc;

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

/// Set in the process a test reruns itself in (see [`rerun_alone`]).
const ALONE: &str = "SSH_DIAL_TEST_ALONE";

/// The full name of the test `name` in the calling test's module: tests
/// run in threads named after themselves (`process::some_test`).
pub fn sibling_test(name: &str) -> String {
    let current = std::thread::current();
    match current.name().and_then(|n| n.rsplit_once("::")) {
        Some((module, _)) => format!("{module}::{name}"),
        None => name.to_owned(),
    }
}

/// Runs the calling test again, alone, in a process of its own, and returns
/// true once it has passed there (the caller then returns); in that
/// process, returns false and the test goes on. For tests that count the
/// process's descriptors or set process-wide state, which the other tests
/// of this binary, running beside them, would disturb.
pub fn rerun_alone() -> bool {
    if std::env::var_os(ALONE).is_some() {
        return false;
    }
    let current = std::thread::current();
    let name = current
        .name()
        .expect("tests run in threads named after them");
    run_test_alone(name, &[]);
    true
}

/// Serializes tests that count the process's file descriptors (within the
/// process a test reran itself in, there is only one).
static FD_COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `test` on a fresh runtime, in a process of its own where no other
/// test runs (see [`rerun_alone`]): a runtime's own descriptors, and every
/// other test's, would disturb the count.
pub fn counting_fds<F: std::future::Future<Output = ()>>(
    multi_thread: bool,
    test: impl FnOnce() -> F,
) {
    if rerun_alone() {
        return;
    }
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

/// What a client made of a server's host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    Changed,
    Revoked,
    Unknown,
}

/// What the real `ssh` makes of `known_hosts` (as its only
/// `UserKnownHostsFile`, with `global` as `GlobalKnownHostsFile`) when
/// connecting to `host` on the sshd's port with `StrictHostKeyChecking`
/// set to `strict`, and its stderr.
pub fn ssh_verdict(
    sshd: &ssh_dial::testing::Sshd,
    host: &str,
    known_hosts: &std::path::Path,
    global: Option<&std::path::Path>,
    strict: &str,
    extra: &[&str],
) -> (Verdict, String) {
    let out = std::process::Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "CheckHostIP=no",
        ])
        .args(["-o", "UpdateHostKeys=no", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "ConnectTimeout=10"])
        // The key exchange does not change the verdict; curve25519 costs
        // ssh far less CPU than its default sntrup761.
        .args(["-o", "KexAlgorithms=curve25519-sha256"])
        .arg("-o")
        .arg(format!("StrictHostKeyChecking={strict}"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-o")
        .arg(format!(
            "GlobalKnownHostsFile={}",
            global.map_or("/dev/null".into(), |g| g.display().to_string())
        ))
        .args(extra)
        .arg("-i")
        .arg(sshd.user_key_path())
        .args(["-p", &sshd.addr().port().to_string()])
        .arg(format!("{}@{host}", sshd.user()))
        .arg("true")
        .stdin(std::process::Stdio::null())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("ssh runs (install openssh-client)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The last word counts: a key revoked for the plain host name warns,
    // then ssh goes on to find `[host]:port` unknown.
    let verdict = if out.status.success() {
        Verdict::Trusted
    } else if stderr.contains("host key is known for") {
        Verdict::Unknown
    } else if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        Verdict::Changed
    } else if stderr.contains("REVOKED HOST KEY") {
        Verdict::Revoked
    } else if stderr.contains("Host key verification failed") {
        Verdict::Unknown
    } else {
        panic!("ssh failed for another reason: {stderr}");
    };
    (verdict, stderr)
}

/// What ssh-dial makes of the host key of the sshd, dialed as `host` on
/// its port under `policy`, and the error if it refused.
pub async fn dial_verdict(
    sshd: &ssh_dial::testing::Sshd,
    host: &str,
    policy: ssh_dial::HostKeys,
    certificates: bool,
) -> (Verdict, Option<ssh_dial::DialError>) {
    let result = ssh_dial::Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(policy)
        .host_certificates(certificates)
        .build()
        .dial(
            (host, sshd.addr().port()),
            sshd.user(),
            ssh_dial::Auth::key(sshd.user_key().clone()),
        )
        .await;
    match result {
        Ok(_) => (Verdict::Trusted, None),
        Err(e) if e.is_host_key_revoked() => (Verdict::Revoked, Some(e)),
        Err(e) if e.is_host_key_mismatch() => (Verdict::Changed, Some(e)),
        Err(e) if e.is_host_key() => (Verdict::Unknown, Some(e)),
        Err(e) => panic!("the dial failed for another reason: {e}"),
    }
}

/// Whether these OpenSSH programs are installed (on `PATH` or in an sbin
/// directory). Without them a test says in one line that it was skipped and
/// what to install, and passes; with `CI` set they are required, and the
/// test fails.
pub fn openssh(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| ssh_dial::testing::find_program(p).is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let hint = "apt-get install -y openssh-server openssh-client netcat-openbsd";
    assert!(
        std::env::var_os("CI").is_none(),
        "{} required in CI: {hint}",
        missing.join(", ")
    );
    // Past the test harness's capture, so that it shows on a passing run.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped: needs {} ({hint})",
        missing.join(", ")
    );
    false
}

/// Runs `ip ARGS` (iproute2), for the tests that make network namespaces.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` ({e}); install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A client of `sshd`, which it trusts by its known_hosts line, logged in
/// with the authorized key, with `builder`'s other settings (10 s deadline).
pub async fn connect_sshd(
    sshd: &ssh_dial::testing::Sshd,
    builder: ssh_dial::DialerBuilder,
) -> ssh_dial::Client {
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    builder
        .timeout(Duration::from_secs(10))
        .host_keys(ssh_dial::HostKeys::known_hosts(known))
        .build()
        .dial(
            sshd.addr(),
            sshd.user(),
            ssh_dial::Auth::key(sshd.user_key().clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()))
}

/// xorshift64*, so that a generated case replays from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// A network namespace of the test's own, with files of its own under
/// `/etc/netns/NAME/` (which `ip netns exec` mounts over `/etc/`), its
/// loopback up; deleted with its files when dropped.
pub struct Namespace {
    pub name: String,
    etc: std::path::PathBuf,
}

impl Namespace {
    /// `prefix` and this process's id name it; `files` are `(name, text)`.
    pub fn create(prefix: &str, files: &[(&str, &str)]) -> Result<Namespace, String> {
        let name = format!("{prefix}-{}", std::process::id() % 100_000);
        ip(&["netns", "add", &name])?;
        let etc = std::path::Path::new("/etc/netns").join(&name);
        let ns = Namespace { name, etc };
        ns.ip(&["link", "set", "lo", "up"])?;
        std::fs::create_dir_all(&ns.etc).map_err(|e| e.to_string())?;
        for (file, text) in files {
            std::fs::write(ns.etc.join(file), text).map_err(|e| e.to_string())?;
        }
        Ok(ns)
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs this test binary's test `test` inside the namespace, with
    /// `env` set (the child's cue that it is the child), and returns its
    /// stdout; fails with both outputs if it fails.
    pub fn run_test(&self, test: &str, env: &str) -> String {
        let out = self
            .command(&std::env::current_exe().expect("test binary path"))
            .args([
                "--exact",
                &sibling_test(test),
                "--include-ignored",
                "--nocapture",
            ])
            .env(env, "1")
            .output()
            .expect("ip netns exec runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `program`, to be run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.etc);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Runs this test binary's test `test` alone in a child process, with
/// `env` set (the child's cue that it is the child, and its inputs), and
/// returns its stdout; fails with both outputs if it fails. For
/// measurements no other test may disturb (the process's RSS).
pub fn run_alone(test: &str, env: &[(&str, String)]) -> String {
    run_test_alone(&sibling_test(test), env)
}

fn run_test_alone(full_name: &str, env: &[(&str, String)]) -> String {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", full_name, "--include-ignored", "--nocapture"])
        .env(ALONE, "1")
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// This process's resident set size, in bytes.
pub fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmRSS in /proc/self/status")
        * 1024
}

/// Processes on this machine whose command line contains `marker`.
pub fn processes_with(marker: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| {
            cmdline
                .split(|&b| b == 0)
                .any(|arg| String::from_utf8_lossy(arg).contains(marker))
        })
        .count()
}

/// This process's children that have exited and not been reaped: zombies.
pub fn zombie_children() -> usize {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // `pid (comm) state ppid ...`; comm may hold anything, so the
            // fields are read after its last `)`.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str())
        })
        .count()
}

/// Waits (2 s at most) until the runtime's tasks and the process's fds are
/// back to `tasks` and `fds`; fails naming `what` if they are not.
pub async fn back_to_baseline(tasks: usize, fds: usize, what: &str) {
    assert!(
        wait_until(Duration::from_secs(2), || alive_tasks() <= tasks
            && open_fds() <= fds)
        .await,
        "{what}: tasks {} (was {tasks}), fds {} (was {fds})",
        alive_tasks(),
        open_fds()
    );
}
