//! The examples as a user runs them: every one answers `--help` with its
//! flags and exits 0; the quickstart dials, runs and tells failures apart.

use crate::support;

use std::process::Command;

use ssh_dial::testing::{MisbehavingServer, Mode, TestServer};

#[test]
fn every_example_answers_help() {
    for (name, flags) in [
        ("copy", &["-r", "--timeout", "--stall-timeout", "-J"][..]),
        ("demo", &[][..]),
        ("dial", &["--timeout", "--known-hosts", "--accept-new"][..]),
        (
            "fleet",
            &[
                "--hosts",
                "--concurrency",
                "--retries",
                "--json",
                "--put",
                "--get",
            ][..],
        ),
        (
            "poll",
            &[
                "--hosts",
                "--every",
                "--for",
                "--repeat",
                "--max-sessions-per-connection",
            ][..],
        ),
        ("prometheus", &[][..]),
        ("quickstart", &[][..]),
    ] {
        let out = Command::new(support::example(name))
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {out:?}");
        assert!(help.contains("Usage:"), "{name}: {help}");
        for flag in flags {
            assert!(help.contains(flag), "{name}: {flag} missing from\n{help}");
        }
    }
}

#[test]
fn the_quickstart_runs_a_command_and_names_what_failed() {
    let server = TestServer::builder().password("u", "pw").start().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    std::fs::write(
        home.path().join(".ssh/known_hosts"),
        format!("{}\n", server.known_hosts_line()),
    )
    .unwrap();
    let quickstart = |destination: String, password: &str| {
        Command::new(support::example("quickstart"))
            .args([destination.as_str(), "echo hello"])
            .env("HOME", home.path())
            .env("SSH_PASSWORD", password)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
    };
    let out = quickstart(format!("u@{}", server.addr()), "pw");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hello\n");

    let out = quickstart(format!("u@{}", server.addr()), "wrong");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not let in"),
        "{out:?}"
    );

    let unknown = TestServer::builder().password("u", "pw").start().unwrap();
    let out = quickstart(format!("u@{}", unknown.addr()), "pw");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not the host we know"), "{stderr}");
    assert_eq!(unknown.auth_attempts(), 0);

    let refused = MisbehavingServer::start(Mode::Garbage).unwrap();
    let out = quickstart(format!("u@{}", refused.addr()), "pw");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not an SSH server"), "{stderr}");
}

/// The prometheus example serves the series while it dials.
#[test]
fn the_prometheus_example_serves_the_series() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(support::example("prometheus"))
        .arg(&listen)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let scrape = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(&listen).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = String::new();
    while std::time::Instant::now() < end {
        last = scrape().unwrap_or_default();
        if last.contains("ssh_dial_dials_total{outcome=\"ok\"") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        last.contains("ssh_dial_dials_total{outcome=\"ok\""),
        "{last}"
    );
    assert!(last.contains("ssh_dial_dials_in_flight"), "{last}");
}
