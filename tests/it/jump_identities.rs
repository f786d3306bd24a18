//! Each jump host a host of its own: its own user, keys, host key policy
//! and `ProxyJump`, as `ssh -J` resolves it; differential against the real
//! `ssh` on the same configurations, and the target's password never
//! offered to a bastion (a recording server and sshd's own log say so).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ssh_dial::testing::{ssh_keygen, Sshd, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys, JumpHost, SshConfig};

/// A key pair made by `ssh-keygen` in `dir`.
fn key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    ssh_keygen(&path, "ed25519", "").unwrap();
    path
}

fn public(path: &Path) -> russh::keys::PublicKey {
    russh::keys::load_public_key(path.with_extension("pub")).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// What `ssh -F config destination true` made of it: whether it logged in,
/// and its stderr.
fn ssh_logs_in(config: &Path, destination: &str) -> (bool, String) {
    let out = std::process::Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args([destination, "true"])
        .stdin(Stdio::null())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The bastion (an in-process server that takes user `jumper` with key A
/// and carries `direct-tcpip`), the target (a real sshd that takes this
/// user with its own key B), and the files each configuration names.
struct Setup {
    dir: tempfile::TempDir,
    bastion: TestServer,
    target: Sshd,
    key_a: PathBuf,
    key_b: PathBuf,
    known_a: PathBuf,
    known_b: PathBuf,
    empty: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key_a = key(dir.path(), "key_a");
    let target = Sshd::start().unwrap();
    let bastion = TestServer::builder()
        .authorized_key("jumper", public(&key_a))
        .password("jumper", "target-secret")
        .start()
        .unwrap();
    let known_a = write(dir.path(), "known_a", &bastion.known_hosts_line());
    let known_b = write(dir.path(), "known_b", &target.known_hosts_line());
    let empty = write(dir.path(), "known_empty", "");
    Setup {
        key_b: target.user_key_path(),
        dir,
        bastion,
        target,
        key_a,
        known_a,
        known_b,
        empty,
    }
}

/// One configuration: what the bastion's and the target's blocks say.
struct Case {
    name: &'static str,
    bastion_key: fn(&Setup) -> &Path,
    bastion_known: fn(&Setup) -> &Path,
    target_key: fn(&Setup) -> &Path,
    target_known: fn(&Setup) -> &Path,
    target_strict: &'static str,
}

fn config(s: &Setup, case: &Case) -> String {
    format!(
        "Host bastion\n  HostName 127.0.0.1\n  Port {}\n  User jumper\n  IdentityFile {}\n  \
         UserKnownHostsFile {}\n\
         Host target\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  ProxyJump bastion\n  \
         IdentityFile {}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking {}\n\
         Host *\n  IdentitiesOnly yes\n  IdentityAgent none\n  StrictHostKeyChecking yes\n  \
         GlobalKnownHostsFile none\n  BatchMode yes\n  PasswordAuthentication no\n  \
         KbdInteractiveAuthentication no\n",
        s.bastion.addr().port(),
        (case.bastion_key)(s).display(),
        (case.bastion_known)(s).display(),
        s.target.addr().port(),
        s.target.user(),
        (case.target_key)(s).display(),
        (case.target_known)(s).display(),
        case.target_strict,
    )
}

const CASES: &[Case] = &[
    Case {
        name: "each hop its own key, user and known_hosts",
        bastion_key: |s| &s.key_a,
        bastion_known: |s| &s.known_a,
        target_key: |s| &s.key_b,
        target_known: |s| &s.known_b,
        target_strict: "yes",
    },
    Case {
        name: "the target's key offered to the bastion",
        bastion_key: |s| &s.key_b,
        bastion_known: |s| &s.known_a,
        target_key: |s| &s.key_b,
        target_known: |s| &s.known_b,
        target_strict: "yes",
    },
    Case {
        name: "the bastion's key offered to the target",
        bastion_key: |s| &s.key_a,
        bastion_known: |s| &s.known_a,
        target_key: |s| &s.key_a,
        target_known: |s| &s.known_b,
        target_strict: "yes",
    },
    Case {
        name: "the bastion unknown, the target not checked",
        bastion_key: |s| &s.key_a,
        bastion_known: |s| &s.empty,
        target_key: |s| &s.key_b,
        target_known: |s| &s.empty,
        target_strict: "no",
    },
    Case {
        name: "the bastion known only in the target's file",
        bastion_key: |s| &s.key_a,
        bastion_known: |s| &s.known_b,
        target_key: |s| &s.key_b,
        target_known: |s| &s.known_a,
        target_strict: "yes",
    },
    Case {
        name: "the target unknown but not checked, the bastion known",
        bastion_key: |s| &s.key_a,
        bastion_known: |s| &s.known_a,
        target_key: |s| &s.key_b,
        target_known: |s| &s.empty,
        target_strict: "no",
    },
];

/// `dial -F cfg target` logs in where `ssh -F cfg target` does, and only
/// there: each hop with its own key, user and host key policy.
#[tokio::test]
async fn each_hop_is_resolved_as_a_host_of_its_own_like_ssh() {
    if !support::openssh(&["sshd", "ssh-keygen", "ssh"]) {
        return;
    }
    let s = setup();
    let mut divergences = Vec::new();
    for (n, case) in CASES.iter().enumerate() {
        let cfg = write(s.dir.path(), &format!("config{n}"), &config(&s, case));
        let (theirs, stderr) = ssh_logs_in(&cfg, "target");
        let dialed = Dialer::builder()
            .timeout(Duration::from_secs(10))
            .ssh_config(SshConfig::load(&cfg).unwrap())
            .build()
            .dial_alias("target")
            .await;
        let ours = match &dialed {
            Ok(client) => {
                assert_eq!(client.exec("true").await.unwrap().status.code(), Some(0));
                true
            }
            Err(_) => false,
        };
        eprintln!(
            "{}: ssh {}, ssh-dial {} ({})",
            case.name,
            if theirs { "in" } else { "refused" },
            if ours { "in" } else { "refused" },
            dialed
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        if theirs != ours {
            divergences.push(format!(
                "{}: ssh {theirs} ({}), ssh-dial {ours} ({:?})",
                case.name,
                stderr.trim(),
                dialed.err()
            ));
        }
        if n == 0 {
            assert!(ours, "the first case must log in");
        }
    }
    assert!(divergences.is_empty(), "{divergences:#?}");
    // Keys only: no password was ever offered to the bastion.
    assert!(
        !s.bastion.auth_methods().iter().any(|m| m == "password"),
        "{:?}",
        s.bastion.auth_methods()
    );
}

/// The bastion whose host key is unknown is refused even when the target
/// is not checked at all (`StrictHostKeyChecking no` on the target only):
/// as `ssh` says "Host key verification failed", before any credential.
#[tokio::test]
async fn an_unverified_bastion_is_refused_whatever_the_target_allows() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let s = setup();
    let cfg = write(s.dir.path(), "config", &config(&s, &CASES[3]));
    let err = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .ssh_config(SshConfig::load(&cfg).unwrap())
        .build()
        .dial_alias("target")
        .await
        .unwrap_err();
    assert!(err.is_host_key(), "{err}");
    assert_eq!(
        err.jump_host(),
        Some(s.bastion.addr().to_string().as_str()),
        "{err}"
    );
    assert_eq!(s.bastion.auth_attempts(), 0, "a credential reached it");
}

/// The dial's password (and keyboard-interactive answers) are for the
/// target: a jump host without credentials of its own gets none of them,
/// and one given its own key sees only that key.
#[tokio::test]
async fn the_targets_password_never_reaches_a_jump_host() {
    let dir = tempfile::tempdir().unwrap();
    let key_a = if support::openssh(&["ssh-keygen"]) {
        key(dir.path(), "key_a")
    } else {
        return;
    };
    // The bastion would take the password: offering it would log in.
    let bastion = TestServer::builder()
        .authorized_key("jumper", public(&key_a))
        .password("jumper", "target-secret")
        .start()
        .unwrap();
    let target = TestServer::builder()
        .password("me", "target-secret")
        .start()
        .unwrap();
    let keys = HostKeys::pinned_keys([bastion.host_key().clone(), target.host_key().clone()]);
    let secret = || {
        Auth::password("target-secret").or(Auth::keyboard_interactive(|_| {
            Some(vec!["target-secret".to_owned()])
        }))
    };
    let jump = JumpHost::parse(&format!("jumper@{}", bastion.addr())).unwrap();

    // No credentials of its own: the dial stops before the bastion.
    let err = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(keys.clone())
        .proxy_jump([jump.clone()])
        .build()
        .dial(target.addr(), "me", secret())
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(
        err.to_string().contains("never offered to a jump host"),
        "{err}"
    );
    assert_eq!(bastion.auth_attempts(), 0);

    // Its own key: the bastion sees that key, the target the password.
    let client = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(keys.clone())
        .proxy_jump([jump.with_auth(Auth::key_file(&key_a, None))])
        .build()
        .dial(target.addr(), "me", secret())
        .await
        .unwrap();
    client.close().await;
    assert!(bastion.auth_methods().iter().any(|m| m == "publickey"));
    assert!(
        !bastion
            .auth_methods()
            .iter()
            .any(|m| m == "password" || m == "keyboard-interactive"),
        "the bastion was offered a secret: {:?}",
        bastion.auth_methods()
    );
    assert!(target.auth_methods().iter().any(|m| m == "password"));

    // With ssh_config: the bastion's own IdentityFile; the password the
    // dial was given goes to the target only.
    let before = bastion.auth_methods().len();
    let cfg = SshConfig::parse(&format!(
        "Host bastion\n  HostName 127.0.0.1\n  Port {}\n  User jumper\n  IdentityFile {}\n\
         Host target\n  HostName 127.0.0.1\n  Port {}\n  ProxyJump bastion\n",
        bastion.addr().port(),
        key_a.display(),
        target.addr().port(),
    ))
    .unwrap();
    let client = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(keys)
        .ssh_config(cfg)
        .build()
        .dial("target", "me", secret())
        .await
        .unwrap();
    client.close().await;
    let seen = &bastion.auth_methods()[before..];
    assert!(seen.iter().any(|m| m == "publickey"), "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|m| m == "password" || m == "keyboard-interactive"),
        "the bastion was offered a secret: {seen:?}"
    );
}

/// The same through a real sshd bastion: its log shows the key, and no
/// password method at all.
#[tokio::test]
async fn a_real_bastion_sshd_never_sees_the_targets_password() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let bastion = Sshd::builder()
        .config_line("PasswordAuthentication yes")
        .start()
        .unwrap();
    let target = TestServer::builder()
        .password("me", "target-secret")
        .start()
        .unwrap();
    let known = bastion
        .write_file(
            "known_hosts",
            &format!(
                "{}\n{}\n",
                bastion.known_hosts_line(),
                target.known_hosts_line()
            ),
        )
        .unwrap();
    let cfg = SshConfig::parse(&format!(
        "Host bastion\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n\
         Host *\n  IdentityAgent none\n  UserKnownHostsFile {}\n",
        bastion.addr().port(),
        bastion.user(),
        bastion.user_key_path().display(),
        known.display(),
    ))
    .unwrap();
    let client = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .ssh_config(cfg)
        .proxy_jump([JumpHost::parse("bastion").unwrap()])
        .build()
        .dial(target.addr(), "me", Auth::password("target-secret"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", bastion.log()));
    client.close().await;
    let log = bastion.log();
    assert!(log.contains("Accepted publickey"), "{log}");
    assert!(!log.contains("method password"), "{log}");
    assert!(!log.contains("Failed password"), "{log}");
}

/// Nested bastions as `ssh -J` follows them (the first hop's own
/// `ProxyJump`), beside the real `ssh`; a loop refused at once.
#[tokio::test]
async fn a_first_hops_own_proxy_jump_is_followed_and_loops_are_refused() {
    if !support::openssh(&["sshd", "ssh-keygen", "ssh"]) {
        return;
    }
    let servers: Vec<Sshd> = (0..3).map(|_| Sshd::start().unwrap()).collect();
    for s in &servers {
        for other in &servers {
            s.authorize(&other.user_key_path().with_extension("pub"))
                .unwrap();
        }
    }
    let (b1, b2, target) = (&servers[0], &servers[1], &servers[2]);
    let lines: Vec<String> = servers.iter().map(Sshd::known_hosts_line).collect();
    let known = b1.write_file("known_hosts", &lines.join("\n")).unwrap();
    let block = |name: &str, s: &Sshd, jump: &str| {
        format!(
            "Host {name}\n  HostName 127.0.0.1\n  Port {}\n{jump}",
            s.addr().port()
        )
    };
    let common = format!(
        "Host *\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
         UserKnownHostsFile {}\n  GlobalKnownHostsFile none\n  BatchMode yes\n",
        target.user(),
        b1.user_key_path().display(),
        known.display()
    );
    let cfg = b1
        .write_file(
            "config",
            &format!(
                "{}{}{}{common}",
                block("target", target, "  ProxyJump b2\n"),
                block("b2", b2, "  ProxyJump b1\n"),
                block("b1", b1, ""),
            ),
        )
        .unwrap();
    let (theirs, stderr) = ssh_logs_in(&cfg, "target");
    assert!(theirs, "ssh: {stderr}");
    let client = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .ssh_config(SshConfig::load(&cfg).unwrap())
        .build()
        .dial_alias("target")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(client.remote_addr(), Some(b1.addr()));
    assert_eq!(
        client.exec("echo nested").await.unwrap().stdout,
        b"nested\n"
    );
    client.close().await;
    // b1 carried the way to b2, and b2 the way to the target.
    assert!(
        b1.log().contains(&format!("port {}", b2.addr().port())),
        "{}",
        b1.log()
    );
    assert!(
        b2.log().contains(&format!("port {}", target.addr().port())),
        "{}",
        b2.log()
    );

    // b1 and b2 each jumping through the other: refused, before any
    // connection.
    let looped = b1
        .write_file(
            "config_loop",
            &format!(
                "{}{}{}{common}",
                block("target", target, "  ProxyJump b2\n"),
                block("b2", b2, "  ProxyJump b1\n"),
                block("b1", b1, "  ProxyJump b2\n"),
            ),
        )
        .unwrap();
    let accepted_before = b1.log().matches("Accepted publickey").count();
    let started = Instant::now();
    let err = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .ssh_config(SshConfig::load(&looped).unwrap())
        .build()
        .dial_alias("target")
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains("jump host loop"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        b1.log().matches("Accepted publickey").count(),
        accepted_before
    );
}
