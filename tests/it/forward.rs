//! Tunnels and forwards: `connect_tcp` (`ssh -W`), local forwarding
//! (`ssh -L`) and SOCKS (`ssh -D`) through a real sshd to servers on this
//! machine; refusals typed; an open the server never confirms bounded, and
//! one it confirms late closed; thousands of connections leave nothing
//! behind on either side; a reader that stops pauses its tunnel without
//! growing memory.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ssh_dial::testing::{Sshd, TestServer};
use ssh_dial::{Auth, Client, Dialer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support;

/// A server on this machine that reads each connection to its EOF, then
/// answers it in upper case and closes: what a tunnel must carry both
/// ways, with a half-close in between.
async fn upper_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                if tcp.read_to_end(&mut got).await.is_ok() {
                    let _ = tcp.write_all(&got.to_ascii_uppercase()).await;
                }
            });
        }
    });
    addr
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn client_of(server: &TestServer, builder: ssh_dial::DialerBuilder) -> Client {
    builder
        .host_keys(server.host_keys())
        .build()
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .unwrap()
}

/// Sends `text` through `addr`, half-closes, and reads the answer.
async fn round_trip(addr: SocketAddr, text: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(text).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn a_tunnel_carries_bytes_both_ways_and_half_closes() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let upper = upper_server().await;
    let mut tunnel = client.connect_tcp("127.0.0.1", upper.port()).await.unwrap();
    assert_eq!(tunnel.target(), format!("127.0.0.1:{}", upper.port()));
    tunnel.write_all(b"through sshd").await.unwrap();
    // EOF to the far end, which answers only then: reading goes on.
    tunnel.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tunnel.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"THROUGH SSHD");
    // The server resolves names, as ssh -W.
    let mut by_name = client.connect_tcp("localhost", upper.port()).await.unwrap();
    by_name.write_all(b"x").await.unwrap();
    by_name.shutdown().await.unwrap();
    let mut answer = Vec::new();
    by_name.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"X");
}

#[tokio::test]
async fn refusals_are_typed_and_quick() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let off = Sshd::builder()
        .config_line("AllowTcpForwarding no")
        .start()
        .unwrap();
    let client = support::connect_sshd(&off, Dialer::builder()).await;
    let start = Instant::now();
    let err = client.connect_tcp("127.0.0.1", 9).await.unwrap_err();
    assert!(err.is_refused() && !err.is_timeout(), "{err}");
    assert!(
        err.to_string().contains("administratively prohibited"),
        "{err}"
    );
    // Within a round trip on loopback.
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );

    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let err = client
        .connect_tcp("127.0.0.1", closed_port())
        .await
        .unwrap_err();
    assert!(err.is_connect_failed() && !err.is_refused(), "{err}");
    for bad in ["", "a\nb", &"x".repeat(300)] {
        let err = client.connect_tcp(bad, 80).await.unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
    }
    // The client is as good as new.
    assert!(client.exec("true").await.unwrap().status.success());
}

/// An open the server never answers fails at the open timeout; one it
/// answers after the caller gave up is closed when it does.
#[tokio::test]
async fn unanswered_and_late_opens_are_bounded_and_closed() {
    let silent = TestServer::builder()
        .password("u", "p")
        .channel_open_delay(Duration::MAX)
        .start()
        .unwrap();
    let client = client_of(
        &silent,
        Dialer::builder().open_timeout(Duration::from_millis(200)),
    )
    .await;
    let start = Instant::now();
    let err = client.connect_tcp("127.0.0.1", 9).await.unwrap_err();
    let took = start.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(220),
        "{took:?}"
    );
    assert!(
        err.to_string().contains("had not opened the channel"),
        "{err}"
    );

    let late = TestServer::builder()
        .password("u", "p")
        .channel_open_delay(Duration::from_millis(150))
        .start()
        .unwrap();
    let client = client_of(
        &late,
        Dialer::builder().open_timeout(Duration::from_millis(20)),
    )
    .await;
    let upper = upper_server().await;
    let tasks = support::alive_tasks();
    let err = client
        .connect_tcp("127.0.0.1", upper.port())
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let closed = |opened| {
        let late = &late;
        async move {
            let closed = support::wait_until(Duration::from_secs(3), || {
                late.channels_opened() == opened && late.open_channels() == 0
            })
            .await;
            assert!(
                closed,
                "opened {} (not {opened}), still open {}",
                late.channels_opened(),
                late.open_channels()
            );
        }
    };
    closed(1).await;
    // A dropped open is closed too.
    assert!(tokio::time::timeout(
        Duration::from_millis(20),
        client.connect_tcp("127.0.0.1", upper.port())
    )
    .await
    .is_err());
    closed(2).await;
    assert!(support::wait_until(Duration::from_secs(2), || support::alive_tasks() <= tasks).await);
}

/// Many short connections through `-L` (and `-D`): each answered, and
/// afterwards no task, descriptor, or connection on sshd's side is left.
#[test]
fn many_connections_through_a_forward_leave_nothing() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let count: usize = std::env::var("SSH_DIAL_FORWARD_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let sshd = Sshd::start().unwrap();
    support::counting_fds(true, || async {
        let client = support::connect_sshd(&sshd, Dialer::builder()).await;
        let upper = upper_server().await;
        let (tasks, fds) = (support::alive_tasks(), support::open_fds());
        let forward = client
            .forward_local("127.0.0.1:0".parse().unwrap(), "127.0.0.1", upper.port())
            .await
            .unwrap();
        let addr = forward.local_addr();
        let start = Instant::now();
        let mut rounds = tokio::task::JoinSet::new();
        for worker in 0..8 {
            rounds.spawn(async move {
                for i in (worker..count).step_by(8) {
                    let text = format!("c{i}");
                    assert_eq!(
                        round_trip(addr, text.as_bytes()).await,
                        text.to_uppercase().as_bytes()
                    );
                }
            });
        }
        while let Some(done) = rounds.join_next().await {
            done.unwrap();
        }
        println!(
            "{count} connections through -L in {:.2}s",
            start.elapsed().as_secs_f64()
        );
        assert_eq!((forward.accepted(), forward.failed()), (count as u64, 0));
        forward.close().await;
        // sshd's side: its connections to the target are gone.
        let gone = support::wait_until(Duration::from_secs(5), || connections_to(upper) == 0).await;
        assert!(
            gone,
            "{} connections from sshd to the target",
            connections_to(upper)
        );
        let back = support::wait_until(Duration::from_secs(5), || {
            support::alive_tasks() <= tasks + 1 && support::open_fds() <= fds + 1
        })
        .await;
        // (+1: the upper server's listener and its task.)
        assert!(
            back,
            "tasks {} (was {tasks}), fds {} (was {fds})",
            support::alive_tasks(),
            support::open_fds()
        );
        assert!(client.exec("true").await.unwrap().status.success());
    });
}

/// Established connections to `addr` on this machine (`ss`), but listeners.
fn connections_to(addr: SocketAddr) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-Htan", "state", "established", "dst", &addr.to_string()])
        .output()
        .expect("ss (iproute2) runs");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn socks_4a_and_5_reach_their_targets_and_get_the_right_codes() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let upper = upper_server().await;
    let socks = client
        .forward_dynamic("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let port = upper.port().to_be_bytes();

    // SOCKS 5, by name.
    let mut tcp = TcpStream::connect(socks.local_addr()).await.unwrap();
    tcp.write_all(&[5, 1, 0]).await.unwrap();
    let mut method = [0u8; 2];
    tcp.read_exact(&mut method).await.unwrap();
    assert_eq!(method, [5, 0]);
    let mut request = vec![5, 1, 0, 3, 9];
    request.extend_from_slice(b"localhost");
    request.extend_from_slice(&port);
    tcp.write_all(&request).await.unwrap();
    let mut reply = [0u8; 10];
    tcp.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[1], 0, "{reply:?}");
    tcp.write_all(b"socks five").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"SOCKS FIVE");

    // SOCKS 4a, by name.
    let mut tcp = TcpStream::connect(socks.local_addr()).await.unwrap();
    let mut request = vec![4, 1];
    request.extend_from_slice(&port);
    request.extend_from_slice(&[0, 0, 0, 1, b'u', 0]);
    request.extend_from_slice(b"localhost\0");
    tcp.write_all(&request).await.unwrap();
    let mut reply = [0u8; 8];
    tcp.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[1], 0x5a, "{reply:?}");
    tcp.write_all(b"four a").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"FOUR A");

    // SOCKS 5 to a closed port: connection refused (5).
    let mut tcp = TcpStream::connect(socks.local_addr()).await.unwrap();
    tcp.write_all(&[5, 1, 0]).await.unwrap();
    tcp.read_exact(&mut method).await.unwrap();
    let mut request = vec![5, 1, 0, 1, 127, 0, 0, 1];
    request.extend_from_slice(&closed_port().to_be_bytes());
    tcp.write_all(&request).await.unwrap();
    tcp.read_exact(&mut reply[..2]).await.unwrap();
    assert_eq!(reply[1], 5, "{reply:?}");

    // Not SOCKS at all: closed, counted.
    let mut tcp = TcpStream::connect(socks.local_addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;
    assert!(support::wait_until(Duration::from_secs(2), || socks.failed() == 2).await);
    assert!(
        socks.last_failure().unwrap().contains("not SOCKS"),
        "{:?}",
        socks.last_failure()
    );
}

/// A far end that sends without end, a reader that stops: the tunnel
/// pauses the connection at 4 MiB unread (memory stays put), goes on when
/// the reader reads, and is closed when it stops for the stall time.
#[test]
fn a_reader_that_stops_pauses_its_tunnel_without_growing() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    if support::rerun_alone() {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = support::connect_sshd(
            &sshd,
            Dialer::builder().tunnel_stall_timeout(Duration::from_millis(800)),
        )
        .await;
        // Writes without end to whoever connects.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let source = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let chunk = vec![b'z'; 64 * 1024];
                    while tcp.write_all(&chunk).await.is_ok() {}
                });
            }
        });
        let before = support::rss();
        let mut tunnel = client
            .connect_tcp("127.0.0.1", source.port())
            .await
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        tunnel.read_exact(&mut buf).await.unwrap();
        // Not reading: it pauses; memory stays within the buffer and
        // russh's queue, and other channels wait too.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let growth = support::rss().saturating_sub(before);
        assert!(growth < 16 << 20, "RSS grew {growth} bytes");
        // Reading again: it goes on.
        for _ in 0..64 {
            tunnel.read_exact(&mut buf).await.unwrap();
        }
        // Stopping past the stall time: the tunnel is closed.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let err = loop {
            match tunnel.read(&mut buf).await {
                Ok(0) => panic!("ended without an error"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        drop(tunnel);
        assert!(client.exec("true").await.unwrap().status.success());
    });
}

/// `ssh -R`: the server listens, and its connections come here as tunnels
/// (taken one by one, or carried to a local address); closing the forward
/// stops the server listening.
#[tokio::test]
async fn a_remote_forward_brings_the_servers_connections_here() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let mut forward = client.forward_remote("127.0.0.1", 0).await.unwrap();
    let port = forward.port();
    assert_ne!(port, 0);
    let there = SocketAddr::from(([127, 0, 0, 1], port));
    // A connection to the server's port, from elsewhere.
    let peer = tokio::spawn(round_trip(there, b"from afar"));
    let mut tunnel = forward.accept().await.unwrap();
    let mut got = Vec::new();
    tunnel.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"from afar");
    tunnel.write_all(b"answered").await.unwrap();
    tunnel.shutdown().await.unwrap();
    assert_eq!(peer.await.unwrap(), b"answered");
    forward.close().await;
    assert!(
        support::wait_until(Duration::from_secs(2), || std::net::TcpStream::connect(
            there
        )
        .is_err())
        .await,
        "the server still listens after close"
    );

    // Carried to a local address.
    let upper = upper_server().await;
    let forward = client.forward_remote("127.0.0.1", 0).await.unwrap();
    let there = SocketAddr::from(([127, 0, 0, 1], forward.port()));
    let carrying = tokio::spawn(forward.connect_to(upper));
    for text in ["one", "two", "three"] {
        assert_eq!(
            round_trip(there, text.as_bytes()).await,
            text.to_uppercase().as_bytes()
        );
    }
    // Dropping it stops the forward.
    carrying.abort();
    assert!(
        support::wait_until(Duration::from_secs(2), || std::net::TcpStream::connect(
            there
        )
        .is_err())
        .await,
        "the server still listens after drop"
    );
    assert!(client.exec("true").await.unwrap().status.success());
}

#[tokio::test]
async fn a_remote_forward_the_server_refuses_is_typed() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let local_only = Sshd::builder()
        .config_line("AllowTcpForwarding local")
        .start()
        .unwrap();
    let client = support::connect_sshd(&local_only, Dialer::builder()).await;
    let err = client.forward_remote("127.0.0.1", 0).await.unwrap_err();
    assert!(err.is_refused(), "{err}");
    assert!(err.to_string().contains("refused to listen"), "{err}");
    assert!(client.exec("true").await.unwrap().status.success());
}

/// Connections nobody accepts wait, at most 16; the server's next ones are
/// refused (and their peers see the connection end).
#[tokio::test]
async fn connections_nobody_accepts_are_bounded() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let mut forward = client.forward_remote("127.0.0.1", 0).await.unwrap();
    let there = SocketAddr::from(([127, 0, 0, 1], forward.port()));
    let mut peers = Vec::new();
    for _ in 0..40 {
        let mut tcp = TcpStream::connect(there).await.unwrap();
        tcp.write_all(b"x").await.unwrap();
        peers.push(tcp);
    }
    // The server offers them all; those past the bound are refused, and
    // sshd closes them: at least 23 of the 40 see their connection end.
    let closed = |peers: &[TcpStream]| {
        peers
            .iter()
            .filter(|p| match p.try_read(&mut [0u8; 1]) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            })
            .count()
    };
    assert!(
        support::wait_until(Duration::from_secs(5), || closed(&peers) >= 23).await,
        "{} of 40 refused",
        closed(&peers)
    );
    let mut waiting = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), forward.accept()).await
    {
        waiting += 1;
    }
    // 16, and the one on its way from the server to the queue.
    assert!((1..=17).contains(&waiting), "{waiting} waited");
}

/// A subsystem as a stream: sshd's SFTP server answers SSH_FXP_INIT with
/// its version; the channel counts as a session until it closes.
#[tokio::test]
async fn a_subsystem_is_a_stream_and_a_session() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    assert_eq!(client.sessions_in_use(), 0);
    let mut sftp = client.subsystem("sftp").await.unwrap();
    assert_eq!(client.sessions_in_use(), 1);
    // SSH_FXP_INIT, version 3: length 5, type 1, version 3.
    sftp.write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3]).await.unwrap();
    let mut head = [0u8; 9];
    sftp.read_exact(&mut head).await.unwrap();
    assert_eq!(head[4], 2, "SSH_FXP_VERSION: {head:?}");
    assert_eq!(u32::from_be_bytes([head[5], head[6], head[7], head[8]]), 3);
    drop(sftp);
    assert!(support::wait_until(Duration::from_secs(2), || client.sessions_in_use() == 0).await);
    let err = client.subsystem("no-such-thing").await.unwrap_err();
    assert!(err.to_string().contains("subsystem no-such-thing"), "{err}");
}

/// `connect_unix` (`direct-streamlocal@openssh.com`, as `ssh -W
/// /path`): a socket on the server's side, carried both ways with a
/// half-close; a path nothing listens on is a typed failure.
#[tokio::test]
async fn a_unix_socket_on_the_server_is_reached() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upper.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                if s.read_to_end(&mut got).await.is_ok() {
                    let _ = s.write_all(&got.to_ascii_uppercase()).await;
                }
            });
        }
    });
    let mut tunnel = client.connect_unix(path.to_str().unwrap()).await.unwrap();
    tunnel.write_all(b"over a unix socket").await.unwrap();
    tunnel.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tunnel.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"OVER A UNIX SOCKET");
    let missing = dir.path().join("missing.sock");
    let e = client
        .connect_unix(missing.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(e.is_connect_failed(), "{e}");
    assert_eq!(client.exec("true").await.unwrap().status.code(), Some(0));
}

/// Dropping a local forward while connections are open through it closes
/// every one of them: the callers see their connections end, sshd's
/// connections to the target go, and the client holds nothing more.
#[test]
fn dropping_a_forward_closes_its_tunnels_in_flight() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    support::counting_fds(true, || async {
        let client = support::connect_sshd(&sshd, Dialer::builder()).await;
        // A target that holds each connection open and counts the bytes.
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = {
            let received = received.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((tcp, _)) = target.accept().await {
                    let received = received.clone();
                    held.push(tokio::spawn(async move {
                        let mut tcp = tcp;
                        let mut buf = [0u8; 64];
                        while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                            received.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                        }
                    }));
                }
            })
        };
        let (tasks, fds) = (support::alive_tasks(), support::open_fds());
        let forward = client
            .forward_local(
                "127.0.0.1:0".parse().unwrap(),
                "127.0.0.1",
                target_addr.port(),
            )
            .await
            .unwrap();
        let mut callers = Vec::new();
        for _ in 0..5 {
            let mut tcp = TcpStream::connect(forward.local_addr()).await.unwrap();
            tcp.write_all(b"hello").await.unwrap();
            callers.push(tcp);
        }
        let arrived = support::wait_until(Duration::from_secs(5), || {
            received.load(std::sync::atomic::Ordering::SeqCst) == 25
                && connections_to(target_addr) == 5
        })
        .await;
        assert!(
            arrived,
            "{} bytes arrived",
            received.load(std::sync::atomic::Ordering::SeqCst)
        );
        drop(forward);
        for mut tcp in callers {
            let mut buf = [0u8; 8];
            let end = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
                .await
                .expect("the caller's connection ends");
            assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
        }
        let gone =
            support::wait_until(Duration::from_secs(5), || connections_to(target_addr) == 0).await;
        assert!(
            gone,
            "{} connections from sshd to the target",
            connections_to(target_addr)
        );
        let back = support::wait_until(Duration::from_secs(5), || {
            support::alive_tasks() <= tasks && support::open_fds() <= fds
        })
        .await;
        assert!(
            back,
            "tasks {} (was {tasks}), fds {} (was {fds})",
            support::alive_tasks(),
            support::open_fds()
        );
        server.abort();
        assert!(client.exec("true").await.unwrap().status.success());
    });
}
