//! The `dial` example, run as a user would run it.

use crate::support;

use std::process::{Command, Output};

use ssh_dial::testing::{MisbehavingServer, Mode, TestServer};

fn run(args: &[&str]) -> Output {
    Command::new(support::example("dial"))
        .args(args)
        .env("DIAL_TEST_PASSWORD", "pw")
        .output()
        .expect("example runs")
}

fn known_hosts(server: &TestServer) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, server.known_hosts_line()).unwrap();
    let p = path.display().to_string();
    (dir, p)
}

#[test]
fn runs_a_command_and_passes_output_and_status_through() {
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let (_dir, kh) = known_hosts(&server);
    let target = format!("alice@{}", server.addr());
    let out = run(&[
        "--password-env",
        "DIAL_TEST_PASSWORD",
        "--known-hosts",
        &kh,
        &target,
        "echo",
        "hi;",
        "echo",
        "err",
        ">&2;",
        "exit",
        "3",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn without_a_command_says_whom_it_reached() {
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let (_dir, kh) = known_hosts(&server);
    let out = run(&[
        "--password-env",
        "DIAL_TEST_PASSWORD",
        "--known-hosts",
        &kh,
        "-p",
        &server.addr().port().to_string(),
        "alice@127.0.0.1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("connected to 127.0.0.1:"));
}

#[test]
fn a_timeout_is_one_error_line_with_the_phase_and_exit_255() {
    let server = MisbehavingServer::start(Mode::StallAfterKexInit).unwrap();
    let out = run(&[
        "--timeout",
        "0.5",
        "--accept-any-host-key",
        "--password-env",
        "DIAL_TEST_PASSWORD",
        &format!("u@{}", server.addr()),
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("key-exchange timed out"),
        "{stderr}"
    );
}

#[test]
fn an_exec_timeout_is_an_error_line_and_exit_255() {
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let (_dir, kh) = known_hosts(&server);
    let out = run(&[
        "--exec-timeout",
        "0.3",
        "--password-env",
        "DIAL_TEST_PASSWORD",
        "--known-hosts",
        &kh,
        &format!("alice@{}", server.addr()),
        "sleep",
        "5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr.starts_with("error: exec timed out"), "{stderr}");
}

#[test]
fn bad_arguments_and_unknown_hosts_fail_cleanly() {
    let out = run(&["--timeout", "soon", "host"]);
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("--timeout"),
        "{stderr}"
    );

    let out = run(&["--password-env", "DIAL_TEST_PASSWORD", "u@bad:port"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resolve"),
        "{:?}",
        out
    );

    // A host missing from the known_hosts file: refused in key exchange.
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let out = run(&[
        "--password-env",
        "DIAL_TEST_PASSWORD",
        "--known-hosts",
        &empty.display().to_string(),
        &format!("alice@{}", server.addr()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr.starts_with("error: ") && stderr.contains("key-exchange"),
        "{stderr}"
    );
    assert_eq!(server.auth_attempts(), 0);
}

#[test]
fn help_lists_every_flag_and_exits_0() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "-p",
        "-i",
        "--passphrase-env",
        "--password-env",
        "--timeout",
        "--connect-timeout",
        "--exec-timeout",
        "--known-hosts",
        "--accept-new",
        "--accept-any-host-key",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

/// `dial -G` prints what `ssh -G` prints for every key ssh-dial honours
/// that the config sets, and ssh-dial's own defaults where it sets none.
#[test]
fn dash_g_prints_the_resolved_config_as_ssh_g_does() {
    if !support::openssh(&["ssh"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::write(
        &cfg,
        "Host web*\n  HostName %h.internal\n  Port 2200\n  User deploy\n  ProxyJump jump1,ops@jump2:2222\n\
         \x20 IdentityFile ~/.ssh/web_%r\n  ConnectTimeout 7\n  ServerAliveInterval 20\n\
         \x20 StrictHostKeyChecking accept-new\n  UserKnownHostsFile ~/.ssh/kh_%h\n\
         Match originalhost web2\n  AddressFamily inet6\nHost *\n  BatchMode yes\n",
    )
    .unwrap();
    let lines = |out: &Output| -> Vec<(String, String)> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(' ').unwrap_or((l, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    };
    let options: &[&str] = &[
        "-o",
        "CertificateFile=~/.ssh/web_%r-cert.pub",
        "-o",
        "ProxyCommand=ssh -W %h:%p ops@jump3",
        "-o",
        "CertificateFile /certs/%h.pub",
    ];
    for (host, options) in [
        ("web1", &[][..]),
        ("alice@web2", &[][..]),
        ("web1", options),
        ("ops@web3", options),
    ] {
        let args: Vec<&str> = ["-G", "-F", cfg.to_str().unwrap()]
            .iter()
            .chain(options)
            .chain(&[host])
            .copied()
            .collect();
        let ours = run(&args);
        assert_eq!(ours.status.code(), Some(0), "{ours:?}");
        let theirs = Command::new("ssh").args(&args).output().unwrap();
        if !options.is_empty() {
            let text = String::from_utf8_lossy(&ours.stdout);
            assert!(text.contains("\ncertificatefile /certs/%h.pub\n"), "{text}");
            // The option, obtained first, wins over web1's ProxyJump.
            assert!(
                text.contains("\nproxycommand ssh -W %h:%p ops@jump3\n")
                    && !text.contains("\nproxyjump "),
                "{text}"
            );
        }
        let theirs = lines(&theirs);
        let ours = lines(&ours);
        assert!(ours.len() >= 18, "{ours:?}");
        for (key, value) in &ours {
            let all: Vec<&String> = theirs
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v)
                .collect();
            assert!(
                all.contains(&value),
                "{host} {key}: dial {value:?}, ssh {all:?}"
            );
        }
    }
    // Unset: ssh-dial's own defaults, not ssh's.
    let ours = lines(&run(&["-G", "-F", "none", "plain"]));
    assert!(
        ours.contains(&("serveraliveinterval".into(), "15".into())),
        "{ours:?}"
    );
    assert!(
        ours.contains(&("stricthostkeychecking".into(), "true".into())),
        "{ours:?}"
    );
}

/// `dial -J`: through a real sshd bastion to a real sshd, and, to a target
/// that stalls key exchange behind the healthy bastion, one error line by
/// the deadline naming both.
#[test]
fn dash_j_goes_through_a_bastion_under_one_deadline() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let bastion = ssh_dial::testing::Sshd::start().unwrap();
    let target = ssh_dial::testing::Sshd::start().unwrap();
    target
        .authorize(&bastion.user_key_path().with_extension("pub"))
        .unwrap();
    let key = bastion.user_key_path().display().to_string();
    let jump = format!("{}@{}", bastion.user(), bastion.addr());
    let dest = format!("{}@{}", target.user(), target.addr());
    let out = run(&[
        "-F",
        "none",
        "-J",
        &jump,
        "-i",
        &key,
        "--accept-any-host-key",
        &dest,
        "echo",
        "hopped",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hopped\n", "{out:?}");

    let stall = MisbehavingServer::start(Mode::StallAfterKexInit).unwrap();
    let dest = format!("test@{}", stall.addr());
    let start = std::time::Instant::now();
    let out = run(&[
        "-F",
        "none",
        "--timeout",
        "1",
        "-J",
        &jump,
        "-i",
        &key,
        "--accept-any-host-key",
        &dest,
        "true",
    ]);
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        err.starts_with(&format!(
            "error: dial {} via {}: key-exchange timed out after 1.0",
            stall.addr(),
            bastion.addr()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(took < std::time::Duration::from_millis(1500), "{took:?}");
}

/// `-N -L` and `-D` forward through the server until the process is told
/// to stop; each listener is printed as `forwarding ADDR`.
#[test]
fn forwards_local_ports_and_socks_with_dash_n() {
    use std::io::{BufRead, Read, Write};
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let (_dir, kh) = known_hosts(&server);
    // A target on this machine that answers "pong" and closes.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = target.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in target.incoming().flatten() {
            let _ = conn.write_all(b"pong");
        }
    });
    let mut child = Command::new(support::example("dial"))
        .args(["--password-env", "DIAL_TEST_PASSWORD", "--known-hosts", &kh])
        .args([
            "-N",
            "-L",
            &format!("0:127.0.0.1:{target_port}"),
            "-D",
            "127.0.0.1:0",
        ])
        .arg(format!("alice@{}", server.addr()))
        .env("DIAL_TEST_PASSWORD", "pw")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut listening = Vec::new();
    for line in lines.by_ref().take(2) {
        let line = line.unwrap();
        let addr = line.strip_prefix("forwarding ").expect(&line);
        listening.push(addr.parse::<std::net::SocketAddr>().unwrap());
    }
    let mut pong = String::new();
    std::net::TcpStream::connect(listening[0])
        .unwrap()
        .read_to_string(&mut pong)
        .unwrap();
    assert_eq!(pong, "pong");
    // Through the SOCKS one, SOCKS 4 to the same target.
    let mut socks = std::net::TcpStream::connect(listening[1]).unwrap();
    let mut request = vec![4, 1];
    request.extend_from_slice(&target_port.to_be_bytes());
    request.extend_from_slice(&[127, 0, 0, 1, 0]);
    socks.write_all(&request).unwrap();
    let mut reply = [0u8; 8];
    socks.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0x5a);
    let mut pong = String::new();
    socks.read_to_string(&mut pong).unwrap();
    assert_eq!(pong, "pong");
    let _ = child.kill();
    let _ = child.wait();
    // -R: the server's port reaches the same target through us.
    let mut child = Command::new(support::example("dial"))
        .args(["--password-env", "DIAL_TEST_PASSWORD", "--known-hosts", &kh])
        .args(["-N", "-R", &format!("0:127.0.0.1:{target_port}")])
        .arg(format!("alice@{}", server.addr()))
        .env("DIAL_TEST_PASSWORD", "pw")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let port: u16 = line
        .strip_prefix("forwarding remote port ")
        .expect(&line)
        .parse()
        .unwrap();
    let mut pong = String::new();
    std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap()
        .read_to_string(&mut pong)
        .unwrap();
    assert_eq!(pong, "pong");
    let _ = child.kill();
    let _ = child.wait();
    // A port that cannot be listened on is an error, as ExitOnForwardFailure.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(&[
        "--password-env",
        "DIAL_TEST_PASSWORD",
        "--known-hosts",
        &kh,
        "-N",
        "-L",
        &format!("{}:127.0.0.1:9", taken.local_addr().unwrap().port()),
        &format!("alice@{}", server.addr()),
    ]);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen"),
        "{out:?}"
    );
}
