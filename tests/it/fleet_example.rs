//! The `fleet` example, run as a user would: JSON lines and exit status.

use crate::support;

use std::process::Command;

use ssh_dial::testing::{MisbehavingServer, Mode, TestServer};

#[test]
fn json_lines_carry_every_field_and_the_exit_status_tells() {
    let good = TestServer::builder().password("u", "p").start().unwrap();
    let silent = MisbehavingServer::start(Mode::Silent).unwrap();
    let garbage = MisbehavingServer::start(Mode::Garbage).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "# a comment\nu@{}\n\nu@{}  # stalls\nu@{}\n",
            good.addr(),
            silent.addr(),
            garbage.addr()
        ),
    )
    .unwrap();
    let out = Command::new(support::example("fleet"))
        .args([
            "--json",
            "--accept-any-host-key",
            "--timeout",
            "1",
            "--password-env",
            "PW",
            "--hosts",
        ])
        .arg(&hosts)
        .args(["--", "echo", "hello"])
        .env("PW", "p")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "some hosts failed");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        for field in [
            "host",
            "ok",
            "phase",
            "error",
            "exit_status",
            "stdout",
            "elapsed_ms",
        ] {
            assert!(l.get(field).is_some(), "{field} missing in {l}");
        }
    }
    let find = |addr: std::net::SocketAddr| {
        lines
            .iter()
            .find(|l| l["host"] == format!("u@{addr}"))
            .unwrap()
    };
    let g = find(good.addr());
    assert_eq!(
        (
            g["ok"].as_bool(),
            g["stdout"].as_str(),
            g["exit_status"].as_u64()
        ),
        (Some(true), Some("hello\n"), Some(0))
    );
    assert!(g["phase"].is_null() && g["error"].is_null());
    let s = find(silent.addr());
    assert_eq!(
        (s["ok"].as_bool(), s["phase"].as_str()),
        (Some(false), Some("version-exchange"))
    );
    assert!(s["error"].as_str().unwrap().contains("timed out"));
    let g2 = find(garbage.addr());
    assert_eq!(g2["phase"].as_str(), Some("version-exchange"));
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("3 hosts: 1 ok"), "{summary}");

    // Every host fine: exit 0.
    std::fs::write(&hosts, format!("u@{}\n", good.addr())).unwrap();
    let out = Command::new(support::example("fleet"))
        .args(["--accept-any-host-key", "--password-env", "PW", "--hosts"])
        .arg(&hosts)
        .args(["--", "true"])
        .env("PW", "p")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 hosts: 1 ok"));
}

#[test]
fn output_is_capped_streamed_as_lines_and_written_per_host() {
    let a = TestServer::builder().password("u", "p").start().unwrap();
    let b = TestServer::builder().password("u", "p").start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, format!("u@{}\nu@{}\n", a.addr(), b.addr())).unwrap();
    let out_dir = dir.path().join("out");
    let run = |extra: &[&str], command: &str| {
        Command::new(support::example("fleet"))
            .args([
                "--accept-any-host-key",
                "--timeout",
                "5",
                "--password-env",
                "PW",
            ])
            .args(extra)
            .arg("--hosts")
            .arg(&hosts)
            .args(["--", command])
            .env("PW", "p")
            .output()
            .unwrap()
    };

    let out = run(&["--stream"], "echo one; echo two; echo oops >&2");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for server in [&a, &b] {
        let host = format!("u@{}", server.addr());
        // Each host's lines in order; the hosts' lines may interleave.
        let prefix = format!("[{host}] ");
        let lines: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect();
        assert_eq!(lines, ["one", "two"], "{stdout}");
        assert!(stderr.contains(&format!("[{host}] oops")), "{stderr}");
    }

    let out = run(
        &["--output-dir", &out_dir.display().to_string()],
        "echo to-file; echo err-file >&2",
    );
    assert!(out.status.success(), "{out:?}");
    for server in [&a, &b] {
        let file = format!("u@127.0.0.1_{}", server.addr().port());
        assert_eq!(
            std::fs::read(out_dir.join(format!("{file}.out"))).unwrap(),
            b"to-file\n"
        );
        assert_eq!(
            std::fs::read(out_dir.join(format!("{file}.err"))).unwrap(),
            b"err-file\n"
        );
    }

    let out = run(&["--json", "--max-output", "4"], "echo 0123456789");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["truncated"], true, "{l}");
        assert_eq!(l["stdout"], "0123", "{l}");
    }
}

/// A hosts file of ssh_config aliases behind a bastion (`-F`), and the same
/// hosts by address with `-J`: every host answers through the bastion.
#[test]
fn aliases_from_ssh_config_and_jump_hosts_reach_every_host() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    use ssh_dial::testing::Sshd;
    let bastion = Sshd::start().unwrap();
    let targets = [Sshd::start().unwrap(), Sshd::start().unwrap()];
    for t in &targets {
        t.authorize(&bastion.user_key_path().with_extension("pub"))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_hosts");
    let mut lines = vec![bastion.known_hosts_line()];
    lines.extend(targets.iter().map(|t| t.known_hosts_line()));
    std::fs::write(&known, lines.join("\n") + "\n").unwrap();
    let key = bastion.user_key_path();
    let mut cfg = format!(
        "Host bastion\n  HostName 127.0.0.1\n  Port {}\n\nHost app-*\n  ProxyJump bastion\n",
        bastion.addr().port()
    );
    for (i, t) in targets.iter().enumerate() {
        cfg += &format!(
            "Host app-{i}\n  HostName 127.0.0.1\n  Port {}\n",
            t.addr().port()
        );
    }
    cfg += &format!(
        "Host *\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  \
         GlobalKnownHostsFile none\n",
        bastion.user(),
        key.display(),
        known.display()
    );
    let config = dir.path().join("config");
    std::fs::write(&config, cfg).unwrap();
    let aliases = dir.path().join("aliases");
    std::fs::write(&aliases, "app-0\napp-1\n").unwrap();
    let by_address = dir.path().join("by_address");
    std::fs::write(
        &by_address,
        targets
            .iter()
            .map(|t| t.addr().to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let jump = format!("{}@{}", bastion.user(), bastion.addr());
    for extra in [
        vec!["--hosts", aliases.to_str().unwrap()],
        vec![
            "--hosts",
            by_address.to_str().unwrap(),
            "-J",
            jump.as_str(),
            "-i",
            key.to_str().unwrap(),
        ],
    ] {
        let out = Command::new(support::example("fleet"))
            .args(["--json", "--timeout", "10", "-F", config.to_str().unwrap()])
            .args(&extra)
            .args(["--", "echo", "$SSH_CONNECTION"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{extra:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.lines().count(), 2, "{stdout}");
        for t in &targets {
            // The target's sshd saw a connection ending at its own port.
            let port = format!(" {}\\n", t.addr().port());
            assert!(stdout.contains(&port), "{extra:?}: {stdout}");
        }
    }
}
