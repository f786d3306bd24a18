//! The `fleet` example, run as a user would: JSON lines and exit status.

mod support;

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
        assert!(
            stdout.contains(&format!("[{host}] one\n[{host}] two\n")),
            "{stdout}"
        );
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
