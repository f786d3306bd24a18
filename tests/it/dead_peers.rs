//! Peers that die after the dial: a frozen sshd (noticed by SSH keepalive)
//! and a host that vanishes without FIN or RST (noticed by TCP keepalive
//! and `TCP_USER_TIMEOUT`). Either way the session task and socket go.

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{alive_tasks, sockets_to, wait_until};
use ssh_dial::testing::Sshd;
use ssh_dial::Dialer;

/// Every process below `pid`, children first found first.
pub(crate) fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((child, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

fn signal(pids: &[u32], sig: libc::c_int) {
    for &pid in pids {
        // SAFETY: kill(2) on a pid we found as sshd's descendant.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Kills whatever it was given when dropped, so that a failing test leaves
/// no stopped sshd behind.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        signal(&self.0, libc::SIGKILL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_sshd_is_noticed_by_ssh_keepalive() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    const INTERVAL: Duration = Duration::from_secs(1);
    const MAX: usize = 2;
    let bound = INTERVAL * (MAX as u32 + 1) + Duration::from_secs(1);

    let sshd = Sshd::start().unwrap();
    let tasks_before = alive_tasks();
    let builder = || {
        Dialer::builder()
            .ssh_keepalive_interval(Some(INTERVAL))
            .ssh_keepalive_max(MAX)
            .exec_timeout(None)
    };
    let idle = support::connect_sshd(&sshd, builder()).await;
    let busy = support::connect_sshd(&sshd, builder()).await;
    let running = tokio::spawn(async move {
        let result = busy.exec("sleep 60").await;
        (result, busy)
    });
    // The command runs once a `sleep` process exists under sshd.
    let started = wait_until(Duration::from_secs(5), || {
        descendants(sshd.pid()).iter().any(|&p| comm(p) == "sleep")
    })
    .await;
    assert!(started, "the remote command never started");

    // Freeze every process serving the two connections. The kernel still
    // acknowledges TCP, so only SSH-level keepalive can tell.
    let frozen = descendants(sshd.pid());
    let _cleanup = KillOnDrop(frozen.clone());
    signal(&frozen, libc::SIGSTOP);
    let start = Instant::now();

    assert!(
        wait_until(bound, || idle.is_closed()).await,
        "idle client still open {:?} after the freeze",
        start.elapsed()
    );
    let (result, busy) = tokio::time::timeout(bound, running)
        .await
        .expect("the exec in flight did not fail within the bound")
        .unwrap();
    let err = result.expect_err("an exec against a frozen peer cannot succeed");
    assert!(err.is_closed() && !err.is_timeout(), "{err}");
    let noticed = start.elapsed();
    assert!(
        noticed <= bound,
        "noticed after {noticed:?}, bound {bound:?}"
    );

    // The sessions ended by themselves: sockets and tasks are gone while
    // the clients are still held.
    let addr = sshd.addr();
    assert!(
        wait_until(Duration::from_secs(1), || sockets_to(addr).is_empty()).await,
        "socket left"
    );
    assert!(
        wait_until(Duration::from_secs(1), || alive_tasks() <= tasks_before).await,
        "task left"
    );
    drop((idle, busy));
}

/// A network namespace joined to this one by a veth pair, with link-local
/// addresses (169.254.0.0/16: neither private nor public). Deleted, with
/// everything running in it, when dropped.
struct Netns {
    name: String,
    host_if: String,
    host_ip: std::net::Ipv4Addr,
    ns_ip: std::net::Ipv4Addr,
    ns_if: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let id = std::process::id() % 100_000;
        let name = format!("ssh-dial-{id}");
        let (host_if, ns_if) = (format!("sdh{id}"), format!("sdn{id}"));
        let octet = (id % 250 + 1) as u8;
        let host_ip = std::net::Ipv4Addr::new(169, 254, octet, 1);
        let ns_ip = std::net::Ipv4Addr::new(169, 254, octet, 2);
        support::ip(&["netns", "add", &name])?;
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip,
            ns_ip,
            ns_if: ns_if.clone(),
        };
        support::ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ])?;
        support::ip(&["link", "set", &ns_if, "netns", &name])?;
        support::ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
        support::ip(&["link", "set", &host_if, "up"])?;
        ns.exec(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if])?;
        ns.exec(&["ip", "link", "set", &ns_if, "up"])?;
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        support::ip(&all)
    }

    /// Silently drops everything on the link from inside: the namespace's
    /// end goes down, and the veth pair discards what either side sends,
    /// with no RST and no error to the sender.
    fn cut(&self) {
        self.exec(&["ip", "link", "set", &self.ns_if, "down"])
            .expect("link down");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<u32>() {
                    signal(&[pid], libc::SIGKILL);
                }
            }
        }
        // Deleting either end of a veth pair deletes both; the namespace
        // itself may outlive its deletion while orphaned sockets in it
        // time out, so the link is not left to go with it.
        let _ = support::ip(&["link", "del", &self.host_if]);
        let _ = support::ip(&["netns", "del", &self.name]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and network namespaces (ip netns); .ci/run runs it with --ignored"]
async fn a_vanished_host_is_noticed_by_tcp_keepalive_and_user_timeout() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let ns = Netns::create().unwrap_or_else(|why| {
        panic!("this test needs root and network namespaces, and could not make one: {why}")
    });
    let sshd = Sshd::builder()
        .listen(ns.ns_ip.into())
        .port(22)
        .wrapper(["ip", "netns", "exec", ns.name.as_str()])
        .start()
        .unwrap();
    let _ = ns.host_ip;

    // Keepalive after 1 s idle, every 1 s, 2 probes; TCP_USER_TIMEOUT
    // follows (3 s). SSH keepalive off: only TCP can notice.
    let bound = Duration::from_secs(3);
    let guarded = support::connect_sshd(
        &sshd,
        Dialer::builder()
            .tcp_keepalive(Some(Duration::from_secs(1)))
            .tcp_keepalive_interval(Some(Duration::from_secs(1)))
            .tcp_keepalive_retries(Some(2))
            .ssh_keepalive_interval(None),
    )
    .await;
    // The seed incident's settings: nothing that would notice.
    let unguarded = support::connect_sshd(
        &sshd,
        Dialer::builder()
            .tcp_keepalive(None)
            .tcp_user_timeout(None)
            .ssh_keepalive_interval(None),
    )
    .await;
    assert!(!guarded.is_closed() && !unguarded.is_closed());

    ns.cut();
    let start = Instant::now();
    let slack = Duration::from_secs(1);
    assert!(
        wait_until(bound + slack, || guarded.is_closed()).await,
        "the guarded session was still open {:?} after the host vanished",
        start.elapsed()
    );
    let noticed = start.elapsed();
    assert!(
        noticed >= Duration::from_secs(1),
        "torn down before keepalive could have fired: {noticed:?}"
    );

    // The control: the unguarded session, left twice as long, never notices.
    tokio::time::sleep((bound + slack) * 2 - start.elapsed()).await;
    assert!(
        !unguarded.is_closed(),
        "the unguarded session noticed; the test proves nothing"
    );
    eprintln!(
        "guarded session torn down after {noticed:?}; unguarded still open after {:?}",
        start.elapsed()
    );
    let addr = sshd.addr();
    assert_eq!(
        sockets_to(addr).len(),
        1,
        "only the unguarded client's socket is left"
    );
    drop(unguarded);
    assert!(wait_until(Duration::from_secs(1), || sockets_to(addr).is_empty()).await);
}
