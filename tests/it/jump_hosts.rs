//! Jump hosts (`ProxyJump`): real OpenSSH sshd bastions on loopback in
//! front of a real sshd and of every misbehaving peer, under one deadline.

use crate::support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh_dial::testing::{MisbehavingServer, Mode, Sshd};
use ssh_dial::{Auth, Dialer, HostKeys, JumpHost, Phase};

const DEADLINE: Duration = Duration::from_secs(2);
/// How far past the deadline a dial may return.
const SLACK: Duration = Duration::from_millis(150);

/// Sshds that let each other's user key in, and a known_hosts file that
/// trusts all of them.
struct Fleet {
    servers: Vec<Sshd>,
    known_hosts: PathBuf,
}

fn fleet(n: usize) -> Fleet {
    let servers: Vec<Sshd> = (0..n)
        .map(|_| Sshd::start().expect("sshd starts"))
        .collect();
    for s in &servers {
        for other in &servers {
            s.authorize(&other.user_key_path().with_extension("pub"))
                .unwrap();
        }
    }
    let lines: Vec<String> = servers.iter().map(|s| s.known_hosts_line()).collect();
    let known_hosts = servers[0]
        .write_file("known_hosts_all", &lines.join("\n"))
        .unwrap();
    Fleet {
        servers,
        known_hosts,
    }
}

fn hop(addr: SocketAddr) -> JumpHost {
    JumpHost::parse(&addr.to_string()).unwrap()
}

/// Connections any process on this machine has open to `addr` (as seen by
/// `ss`): a bastion's connections to a target, in any state but listening.
fn connections_to(addr: SocketAddr) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-Htan", "dst", &addr.to_string()])
        .output()
        .expect("ss (iproute2) runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("TIME-WAIT") && !l.starts_with("LISTEN"))
        .count()
}

#[tokio::test]
async fn a_target_behind_a_bastion_runs_commands_and_closes_with_it() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let f = fleet(2);
    let (bastion, target) = (&f.servers[0], &f.servers[1]);
    let dialer = Dialer::builder()
        .timeout(DEADLINE)
        .host_keys(HostKeys::known_hosts(&f.known_hosts))
        .proxy_jump([hop(bastion.addr())])
        .build();
    let client = dialer
        .dial(
            target.addr(),
            target.user(),
            Auth::key(bastion.user_key().clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", bastion.log()));
    assert_eq!(
        client.jump_host().unwrap().target(),
        bastion.addr().to_string()
    );
    assert_eq!(client.remote_addr(), Some(bastion.addr()));
    let out = client.exec("echo through").await.unwrap();
    assert_eq!(out.stdout, b"through\n");
    // The target saw the bastion's channel, not a direct connection.
    assert!(bastion.log().contains("direct-tcpip"), "{}", bastion.log());
    assert_eq!(connections_to(target.addr()), 1);
    client.close().await;
    assert!(
        support::wait_until(Duration::from_secs(5), || connections_to(target.addr())
            == 0
            && connections_to(bastion.addr()) == 0)
        .await,
        "connections left after close"
    );
}

#[tokio::test]
async fn two_and_three_hop_chains_reach_the_target() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let f = fleet(4);
    let s = &f.servers;
    for hops in [
        vec![s[0].addr(), s[1].addr()],
        vec![s[0].addr(), s[1].addr(), s[2].addr()],
    ] {
        let dialer = Dialer::builder()
            .timeout(Duration::from_secs(10))
            .host_keys(HostKeys::known_hosts(&f.known_hosts))
            .proxy_jump(hops.iter().map(|a| hop(*a)))
            .build();
        let client = dialer
            .dial(s[3].addr(), s[3].user(), Auth::key(s[0].user_key().clone()))
            .await
            .unwrap_or_else(|e| panic!("{} hops: {e}", hops.len()));
        let out = client.exec("echo far").await.unwrap();
        assert_eq!(out.stdout, b"far\n");
        let mut depth = 0;
        let mut at = client.jump_host();
        while let Some(j) = at {
            depth += 1;
            at = j.jump_host();
        }
        assert_eq!(depth, hops.len());
        client.close().await;
    }
}

/// Every misbehaving peer behind a healthy bastion: the dial fails in the
/// peer's phase by the deadline, names the target and the bastion, and
/// leaves no task, no descriptor and no bastion connection to the peer.
#[test]
fn every_misbehaving_target_behind_a_bastion_fails_on_time_leaving_nothing() {
    // Counted in a process of its own, where no other test runs.
    if support::rerun_alone() {
        return;
    }
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let bastion = Sshd::start().unwrap();
    for mode in Mode::ALL {
        let server = MisbehavingServer::start(mode).unwrap();
        support::counting_fds(true, || async {
            let dialer = Dialer::builder()
                .timeout(DEADLINE)
                // The peers past key exchange have keys of their own.
                .host_keys(HostKeys::insecure_accept_any())
                .proxy_jump([
                    JumpHost::parse(&format!("{}@{}", bastion.user(), bastion.addr())).unwrap(),
                ])
                .build();
            let tasks = support::alive_tasks();
            let fds = support::open_fds();
            let peer_conns = connections_to(server.addr());
            let start = Instant::now();
            let err = dialer
                .dial(server.addr(), "test", Auth::key(bastion.user_key().clone()))
                .await
                .expect_err("a misbehaving target cannot be dialed");
            let took = start.elapsed();
            let msg = err.to_string();
            assert!(
                support::sockets_to(bastion.addr()).is_empty(),
                "{mode}: the bastion connection is still open as the dial returns"
            );
            assert!(took <= DEADLINE + SLACK, "{mode}: took {took:?}: {msg}");
            assert_eq!(err.jump_host(), None, "{mode}: {msg}");
            if mode == Mode::ResetAfterBanner {
                assert!(matches!(
                    err.phase(),
                    Phase::VersionExchange | Phase::KeyExchange
                ));
            } else {
                assert_eq!(err.phase(), mode.expected_phase(), "{mode}: {msg}");
            }
            assert_eq!(err.is_timeout(), mode.stalls(), "{mode}: {msg}");
            assert!(
                msg.starts_with(&format!("dial {} via {}: ", server.addr(), bastion.addr())),
                "{mode}: {msg}"
            );
            support::back_to_baseline(tasks, fds, mode.name()).await;
            // The bastion's connection to the peer goes with the bastion
            // connection (sshd's session process exits).
            assert!(
                support::wait_until(Duration::from_secs(5), || connections_to(server.addr())
                    <= peer_conns)
                .await,
                "{mode}: the bastion still holds {} connections to the peer",
                connections_to(server.addr())
            );
        });
    }
}

/// A bastion that stalls: the error names it and its phase.
#[tokio::test]
async fn a_stalled_bastion_times_out_naming_the_hop() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let target = Sshd::start().unwrap();
    for mode in [Mode::Silent, Mode::StallAfterKexInit, Mode::BlackHole] {
        let bastion = MisbehavingServer::start(mode).unwrap();
        let dialer = Dialer::builder()
            .timeout(DEADLINE)
            .host_keys(HostKeys::insecure_accept_any())
            .proxy_jump([hop(bastion.addr())])
            .build();
        let start = Instant::now();
        let err = dialer
            .dial(
                target.addr(),
                target.user(),
                Auth::key(target.user_key().clone()),
            )
            .await
            .unwrap_err();
        let took = start.elapsed();
        let msg = err.to_string();
        assert!(
            took >= DEADLINE && took <= DEADLINE + SLACK,
            "{mode}: {took:?}: {msg}"
        );
        assert!(err.is_timeout(), "{msg}");
        assert_eq!(err.jump_host(), Some(bastion.addr().to_string().as_str()));
        assert_eq!(err.phase(), mode.expected_phase(), "{msg}");
        assert!(
            msg.starts_with(&format!(
                "dial {} via {}: jump host {}",
                target.addr(),
                bastion.addr(),
                bastion.addr()
            )),
            "{msg}"
        );
    }
    assert!(!target.log().contains("Accepted publickey"));
}

/// The bastion's host key is not on file: the dial stops there, and the
/// target never hears of it.
#[tokio::test]
async fn a_bastion_whose_host_key_does_not_verify_gets_no_credential_for_the_target() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let bastion = Sshd::start().unwrap();
    let target = Sshd::start().unwrap();
    let known = target
        .write_file("known_hosts", &target.known_hosts_line())
        .unwrap();
    // The log of the harness's own probe of the port, complete.
    assert!(
        support::wait_until(Duration::from_secs(5), || target
            .log()
            .contains("Connection closed"))
        .await
    );
    let target_log = target.log();
    let err = Dialer::builder()
        .timeout(DEADLINE)
        .host_keys(HostKeys::known_hosts(&known))
        .proxy_jump([hop(bastion.addr())])
        .build()
        .dial(
            target.addr(),
            target.user(),
            Auth::key(target.user_key().clone()),
        )
        .await
        .unwrap_err();
    assert!(err.is_host_key(), "{err}");
    assert_eq!(err.jump_host(), Some(bastion.addr().to_string().as_str()));
    assert!(!bastion.log().contains("userauth"), "{}", bastion.log());
    assert_eq!(target.log(), target_log, "the target heard of the dial");
}

/// Several targets through one shared bastion connection: one handshake
/// with the bastion, and the bastion stays up until its last client goes.
#[tokio::test]
async fn clients_can_share_one_bastion_connection() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let f = fleet(3);
    let (bastion, t1, t2) = (&f.servers[0], &f.servers[1], &f.servers[2]);
    let dialer = Dialer::builder()
        .timeout(DEADLINE)
        .host_keys(HostKeys::known_hosts(&f.known_hosts))
        .build();
    let key = Auth::key(bastion.user_key().clone());
    let jump = Arc::new(
        dialer
            .dial(bastion.addr(), bastion.user(), key.clone())
            .await
            .unwrap(),
    );
    let c1 = dialer
        .dial_via(&jump, t1.addr(), t1.user(), key.clone())
        .await
        .unwrap();
    let c2 = dialer
        .dial_via(&jump, t2.addr(), t2.user(), key.clone())
        .await
        .unwrap();
    drop(jump);
    assert_eq!(connections_to(bastion.addr()), 1);
    assert_eq!(c1.exec("echo 1").await.unwrap().stdout, b"1\n");
    c1.close().await;
    assert_eq!(c2.exec("echo 2").await.unwrap().stdout, b"2\n");
    assert_eq!(
        connections_to(bastion.addr()),
        1,
        "the bastion closed under c2"
    );
    c2.close().await;
    assert!(
        support::wait_until(Duration::from_secs(5), || connections_to(bastion.addr())
            == 0)
        .await
    );
    assert_eq!(bastion.log().matches("Accepted publickey").count(), 1);
}

/// Dropping a dial that is under way behind a bastion leaves nothing: no
/// task, no descriptor, no bastion connection to the peer.
#[test]
fn a_dropped_dial_behind_a_bastion_leaves_nothing() {
    // Counted in a process of its own, where no other test runs.
    if support::rerun_alone() {
        return;
    }
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let bastion = Sshd::start().unwrap();
    let server = MisbehavingServer::start(Mode::StallAfterKexInit).unwrap();
    support::counting_fds(true, || async {
        let tasks = support::alive_tasks();
        let fds = support::open_fds();
        let dialer = Dialer::builder()
            .timeout(Duration::from_secs(60))
            .host_keys(HostKeys::insecure_accept_any())
            .proxy_jump([
                JumpHost::parse(&format!("{}@{}", bastion.user(), bastion.addr())).unwrap(),
            ])
            .build();
        let mut dial =
            Box::pin(dialer.dial(server.addr(), "test", Auth::key(bastion.user_key().clone())));
        // Until the bastion has opened its connection to the peer.
        let reached = async {
            while connections_to(server.addr()) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            r = &mut dial => panic!("the dial ended: {:?}", r.err()),
            () = reached => {}
        }
        drop(dial);
        support::back_to_baseline(tasks, fds, "dropped dial").await;
        assert!(
            support::wait_until(Duration::from_secs(5), || connections_to(server.addr())
                == 0)
            .await,
            "the bastion still holds a connection to the peer"
        );
    });
}

/// Through a shared bastion, a channel the bastion confirms after the dial
/// gave up is closed: the target's accept queue is full while the dial
/// runs, and frees up after; the bastion's retried connect then succeeds,
/// and the channel (and so the bastion's connection) is closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_confirmed_after_the_deadline_is_closed() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    use std::io::Read;
    let bastion = Sshd::start().unwrap();
    let known = bastion
        .write_file("known_hosts", &bastion.known_hosts_line())
        .unwrap();
    // A listener whose accept queue a first connection fills.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let _filler = std::net::TcpStream::connect(addr).unwrap();

    let dialer = Dialer::builder()
        .timeout(Duration::from_millis(800))
        .host_keys(HostKeys::known_hosts(&known))
        .build();
    let key = Auth::key(bastion.user_key().clone());
    let jump = Arc::new(
        dialer
            .with_timeout(Duration::from_secs(10))
            .dial(bastion.addr(), bastion.user(), key.clone())
            .await
            .unwrap(),
    );
    let err = dialer.dial_via(&jump, addr, "test", key).await.unwrap_err();
    assert!(err.is_timeout() && err.phase() == Phase::Connect, "{err}");

    // Free the queue: the bastion's next SYN is accepted, and it confirms
    // the channel nobody waits for any more.
    let (_first, _) = listener.accept().unwrap();
    let (late, _) = tokio::task::spawn_blocking(move || listener.accept())
        .await
        .unwrap()
        .unwrap();
    late.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut late: std::net::TcpStream = late.into();
    let mut buf = [0u8; 64];
    let start = Instant::now();
    let n = tokio::task::spawn_blocking(move || late.read(&mut buf))
        .await
        .unwrap()
        .expect("the bastion closes the connection, not a read timeout");
    assert_eq!(n, 0, "EOF");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!jump.is_closed(), "the shared bastion stays up");
}

/// `share_jump_hosts`: dials through the same bastion share one connection
/// to it while any client goes through it; then it closes, and the next
/// dial makes a new one.
#[tokio::test]
async fn a_dialer_shares_its_jump_host_connections_while_in_use() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let f = fleet(3);
    let (bastion, t1, t2) = (&f.servers[0], &f.servers[1], &f.servers[2]);
    let dialer = Dialer::builder()
        .timeout(DEADLINE)
        .host_keys(HostKeys::known_hosts(&f.known_hosts))
        .proxy_jump([JumpHost::parse(&format!("{}@{}", bastion.user(), bastion.addr())).unwrap()])
        .share_jump_hosts(true)
        .build();
    let key = Auth::key(bastion.user_key().clone());
    let logins = || bastion.log().matches("Accepted publickey").count();
    let c1 = dialer
        .dial(t1.addr(), t1.user(), key.clone())
        .await
        .unwrap();
    let c2 = dialer
        .dial(t2.addr(), t2.user(), key.clone())
        .await
        .unwrap();
    assert_eq!(c1.exec("echo 1").await.unwrap().stdout, b"1\n");
    assert_eq!(c2.exec("echo 2").await.unwrap().stdout, b"2\n");
    assert_eq!(logins(), 1, "one bastion connection for both");
    assert_eq!(connections_to(bastion.addr()), 1);
    c1.close().await;
    assert_eq!(c2.exec("echo 2").await.unwrap().stdout, b"2\n");
    c2.close().await;
    assert!(
        support::wait_until(Duration::from_secs(5), || connections_to(bastion.addr())
            == 0)
        .await,
        "the bastion connection outlived its clients"
    );
    let c3 = dialer.dial(t1.addr(), t1.user(), key).await.unwrap();
    assert_eq!(logins(), 2, "a new connection once the old one is gone");
    c3.close().await;
}
