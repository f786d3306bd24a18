//! The `dial` example, run as a user would run it.

mod support;

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
