//! Host keys as OpenSSH keeps them: files written by `ssh-keyscan` and
//! hashed by `ssh-keygen -H`, `@revoked`, `[host]:port`, and accept-new,
//! checked against a real sshd and the real `ssh` client.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ssh_dial::testing::TestServer;
use ssh_dial::testing::{ssh_keygen, Sshd};
use ssh_dial::{Auth, DialError, Dialer, HostKeys, Phase};

async fn dial(sshd: &Sshd, host_keys: HostKeys) -> Result<ssh_dial::Client, DialError> {
    Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(host_keys)
        .build()
        .dial(sshd.addr(), sshd.user(), Auth::key(sshd.user_key().clone()))
        .await
}

/// `ssh-keyscan -p PORT 127.0.0.1`, all key types.
fn keyscan(sshd: &Sshd) -> String {
    let out = Command::new("ssh-keyscan")
        .args(["-p", &sshd.addr().port().to_string(), "127.0.0.1"])
        .output()
        .expect("ssh-keyscan runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("ssh-ed25519"),
        "ssh-keyscan found no key: {text}"
    );
    text
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn files_written_by_ssh_keyscan_and_hashed_by_ssh_keygen_verify() {
    let sshd = Sshd::start().unwrap();
    let path = sshd.dir().join("scanned");
    std::fs::write(&path, keyscan(&sshd)).unwrap();
    dial(&sshd, HostKeys::known_hosts(&path))
        .await
        .expect("keyscan output verifies");

    run_ok(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&path));
    let hashed = std::fs::read_to_string(&path).unwrap();
    assert!(
        hashed
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.starts_with("|1|")),
        "{hashed}"
    );
    assert!(!hashed.contains("127.0.0.1"), "{hashed}");
    dial(&sshd, HostKeys::known_hosts(&path))
        .await
        .expect("hashed file verifies");
}

#[tokio::test]
async fn bracketed_entries_match_only_their_port() {
    let sshd = Sshd::start().unwrap();
    let other_port = sshd.addr().port() + 1;
    let path = sshd
        .write_file(
            "other_port",
            &format!("[127.0.0.1]:{other_port} {}", sshd.host_key()),
        )
        .unwrap();
    let err = dial(&sshd, HostKeys::known_hosts(&path)).await.unwrap_err();
    assert!(err.is_host_key() && !err.is_host_key_mismatch(), "{err}");
    // Without brackets an entry means port 22, not this one.
    let path = sshd
        .write_file("no_port", &format!("127.0.0.1 {}", sshd.host_key()))
        .unwrap();
    let err = dial(&sshd, HostKeys::known_hosts(&path)).await.unwrap_err();
    assert!(err.is_host_key() && !err.is_host_key_mismatch(), "{err}");
}

#[tokio::test]
async fn revoked_key_is_refused_even_when_listed() {
    let sshd = Sshd::start().unwrap();
    let text = format!(
        "{}\n@revoked * {}\n",
        sshd.known_hosts_line(),
        sshd.host_key()
    );
    let path = sshd.write_file("revoked", &text).unwrap();
    let err = dial(&sshd, HostKeys::known_hosts(&path)).await.unwrap_err();
    assert_eq!(err.phase(), Phase::KeyExchange);
    assert!(err.is_host_key_revoked(), "{err}");
    assert!(err.to_string().contains("revoked:2"), "{err}");
    assert!(
        !sshd.log().contains("userauth-request"),
        "auth reached a revoked host"
    );
}

#[tokio::test]
async fn user_and_global_files_are_read_together() {
    let sshd = Sshd::start().unwrap();
    let user = sshd.write_file("user", "# nothing here\n").unwrap();
    let global = sshd.write_file("global", &sshd.known_hosts_line()).unwrap();
    dial(&sshd, HostKeys::known_hosts_files([&user, &global]))
        .await
        .expect("found in the global file");
}

/// What the real `ssh` makes of a known_hosts file: exit status 0 when it
/// trusts the host (StrictHostKeyChecking=yes) and the command ran.
fn openssh_accepts(sshd: &Sshd, known_hosts: &Path) -> bool {
    Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(sshd.user_key_path())
        .args(["-p", &sshd.addr().port().to_string()])
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg("true")
        .status()
        .expect("ssh runs")
        .success()
}

#[tokio::test]
async fn accept_new_adds_a_line_openssh_trusts_and_refuses_an_impostor() {
    for hashed in [false, true] {
        let sshd = Sshd::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        assert!(
            !openssh_accepts(&sshd, &path),
            "control: ssh refuses an unknown host"
        );

        let tofu = HostKeys::accept_new(&path).hash_new_entries(hashed);
        dial(&sshd, tofu.clone())
            .await
            .expect("first dial learns the host");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(text.starts_with("|1|"), hashed, "{text}");
        assert!(
            openssh_accepts(&sshd, &path),
            "ssh does not trust the line: {text}"
        );
        dial(&sshd, tofu.clone()).await.expect("second dial");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "a known host is not added twice"
        );

        // Another server, another key, the same address.
        let port = sshd.addr().port();
        drop(sshd);
        let impostor = Sshd::builder().port(port).start().unwrap();
        let err = dial(&impostor, tofu).await.unwrap_err();
        assert_eq!(err.phase(), Phase::KeyExchange);
        assert!(err.is_host_key_mismatch(), "{err}");
        assert!(
            err.to_string().contains(&format!("{}:1", path.display())),
            "{err}"
        );
        assert!(
            !impostor.log().contains("userauth-request"),
            "a credential reached the impostor"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}

/// Checks a file learned from `servers`: one well-formed line each.
async fn assert_one_line_each(path: &Path, servers: &[TestServer]) {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.lines().count(), servers.len(), "{text}");
    let strict = Dialer::builder()
        .host_keys(HostKeys::known_hosts(path))
        .build();
    for server in servers {
        assert_eq!(
            text.matches(&server.known_hosts_line()).count(),
            1,
            "{} missing or doubled",
            server.addr()
        );
        strict
            .dial(server.addr(), "u", Auth::password("p"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_dials_from_one_process_add_one_line_each() {
    let servers: Vec<TestServer> = (0..100)
        .map(|_| TestServer::builder().password("u", "p").start().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(20))
        .host_keys(HostKeys::accept_new(&path))
        .build();
    let mut set = tokio::task::JoinSet::new();
    for server in &servers {
        let (dialer, addr) = (dialer.clone(), server.addr());
        set.spawn(async move { dialer.dial(addr, "u", Auth::password("p")).await.map(drop) });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    assert_one_line_each(&path, &servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_dials_from_many_processes_add_one_line_each() {
    // Each host is dialed by two processes at once (the `dial` example),
    // 50 hosts, 100 processes in all.
    let servers: Vec<TestServer> = (0..50)
        .map(|_| TestServer::builder().password("u", "p").start().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let example = support::example("dial");
    let mut children = Vec::new();
    for server in servers.iter().chain(servers.iter()) {
        children.push(
            tokio::process::Command::new(&example)
                .args(["--accept-new", "--known-hosts"])
                .arg(&path)
                .args(["--timeout", "20", "--password-env", "PW"])
                .arg(format!("u@{}", server.addr()))
                .env("PW", "p")
                .output(),
        );
    }
    for child in children {
        let out = child.await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_one_line_each(&path, &servers).await;
}

/// A CA key pair and the `@cert-authority` line for `pattern`.
fn certificate_authority(dir: &Path, pattern: &str) -> (std::path::PathBuf, String) {
    let ca = dir.join("host_ca");
    ssh_keygen(&ca, "ed25519", "").unwrap();
    let public = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    (
        ca,
        format!("@cert-authority {pattern} {}", public.join(" ")),
    )
}

async fn dial_asking_for_certificates(
    sshd: &Sshd,
    known_hosts: &Path,
) -> Result<ssh_dial::Client, DialError> {
    Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_certificates(true)
        .host_keys(HostKeys::known_hosts(known_hosts))
        .build()
        .dial(sshd.addr(), sshd.user(), Auth::key(sshd.user_key().clone()))
        .await
}

#[tokio::test]
async fn a_cert_authority_vouches_for_host_certificates() {
    let ca_dir = tempfile::tempdir().unwrap();
    let (ca, line) = certificate_authority(ca_dir.path(), "[127.0.0.1]:*");
    let sshd = Sshd::builder()
        .host_certificate(&ca, "127.0.0.1")
        .start()
        .unwrap();
    let path = sshd.write_file("ca_only", &line).unwrap();

    dial_asking_for_certificates(&sshd, &path)
        .await
        .expect("the CA vouches for the host");

    // Without asking for certificates the server shows its plain key, which
    // the file does not list.
    let err = dial(&sshd, HostKeys::known_hosts(&path)).await.unwrap_err();
    assert!(err.is_host_key() && !err.is_host_key_mismatch(), "{err}");

    // A revoked authority vouches for nothing.
    let ca_public = line.trim_start_matches("@cert-authority [127.0.0.1]:* ");
    let revoked = sshd
        .write_file("ca_revoked", &format!("{line}\n@revoked * {ca_public}"))
        .unwrap();
    let auths_before = sshd.log().matches("userauth-request").count();
    assert!(auths_before > 0, "control: the first dial authenticated");
    let err = dial_asking_for_certificates(&sshd, &revoked)
        .await
        .unwrap_err();
    assert!(err.is_host_key_revoked(), "{err}");
    assert_eq!(sshd.log().matches("userauth-request").count(), auths_before);
}

#[tokio::test]
async fn a_host_certificate_for_another_name_is_refused() {
    let ca_dir = tempfile::tempdir().unwrap();
    let (ca, line) = certificate_authority(ca_dir.path(), "[127.0.0.1]:*");
    let sshd = Sshd::builder()
        .host_certificate(&ca, "other.example")
        .start()
        .unwrap();
    let path = sshd.write_file("ca_only", &line).unwrap();
    let err = dial_asking_for_certificates(&sshd, &path)
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::KeyExchange);
    assert!(err.is_host_key(), "{err}");
    assert!(
        err.to_string().contains("not valid for this host name"),
        "{err}"
    );
    assert!(
        !sshd.log().contains("userauth-request"),
        "auth reached a host with a bad certificate"
    );
}
