//! Unit tests of credentials: what `Debug` shows, the order of methods,
//! and ssh_config's `CertificateFile` against a certificate-only sshd.

use super::*;

#[test]
fn debug_never_shows_secrets() {
    let a = Auth::password("s3cret-pw");
    let b = Auth::key_file("/k", Some("s3cret-pp"))
        .or(Auth::certificate("/k2", "/k2-cert.pub", Some("s3cret-pp2")))
        .or(Auth::agent())
        .or(a.clone())
        .or(Auth::keyboard_interactive(|_| {
            Some(vec!["s3cret-otp".into()])
        }));
    let shown = format!("{a:?} {b:?} {a:#?} {b:#?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("/k")
            && shown.contains("/k2-cert.pub")
            && shown.contains("redacted")
            && shown.contains("Agent"),
        "{shown}"
    );
}

#[test]
fn or_keeps_the_order() {
    let a = Auth::password("1")
        .or(Auth::agent_at("/a"))
        .or(Auth::key_file("/k", None));
    let kinds: Vec<&str> = a
        .methods
        .iter()
        .map(|m| match m {
            Method::Password(_) => "password",
            Method::Agent(_) => "agent",
            Method::KeyFile { .. } => "keyfile",
            Method::CertificateFile(_) => "certificatefile",
            Method::Certificate { .. } => "certificate",
            Method::KeyText { .. } => "keytext",
            Method::Key(_) => "key",
            Method::KeyboardInteractive(_) => "kbd",
        })
        .collect();
    assert_eq!(kinds, ["password", "agent", "keyfile"]);
}

/// ssh_config's `CertificateFile`, as `HostConfig::auth` maps it onto
/// [`Auth::certificate_file`] and [`Auth::key_file_alone`]: the same
/// verdicts as `ssh -o CertificateFile=` against a certificate-only sshd.
mod certificate_file_tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::super::Auth;
    use crate::testing::{find_program, ssh_keygen, ssh_keygen_certify, SshAgent, Sshd};
    use crate::{Dialer, HostKeys};

    fn have_openssh() -> bool {
        let ok = ["ssh", "ssh-add", "ssh-agent", "ssh-keygen", "sshd"]
            .iter()
            .all(|p| find_program(p).is_ok());
        assert!(
            ok || std::env::var_os("CI").is_none(),
            "OpenSSH required in CI"
        );
        ok
    }

    /// Whether the real ssh gets in with these arguments (and this agent).
    fn ssh(sshd: &Sshd, known: &Path, args: &[String], agent: Option<&Path>) -> bool {
        let mut command = std::process::Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "KexAlgorithms=curve25519-sha256"])
            .args(args)
            .args(["-p", &sshd.addr().port().to_string()])
            .arg(format!("{}@127.0.0.1", sshd.user()))
            .arg("true")
            .stdin(std::process::Stdio::null());
        match agent {
            Some(socket) => command.env("SSH_AUTH_SOCK", socket),
            None => command.env_remove("SSH_AUTH_SOCK"),
        };
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("Permission denied"),
            "{stderr}"
        );
        out.status.success()
    }

    #[tokio::test]
    async fn certificate_files_pair_with_keys_as_ssh_does() {
        if !have_openssh() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = |name: &str| dir.path().join(name);
        ssh_keygen(&d("ca"), "ed25519", "").unwrap();
        let sshd = Sshd::builder()
            .trusted_user_ca_keys(&d("ca.pub"))
            .config_line("AuthorizedKeysFile none")
            .start()
            .unwrap();
        let known = sshd
            .write_file("known_hosts", &sshd.known_hosts_line())
            .unwrap();
        let user = sshd.user().to_owned();
        let certify = |key: &Path| {
            ssh_keygen_certify(&d("ca"), &key.with_extension("pub"), "cf", &user, "-5m:+1h")
                .unwrap()
        };
        // `key`'s certificate lives elsewhere; `key2`'s is beside it.
        for name in ["key", "key2", "other"] {
            ssh_keygen(&d(name), "ed25519", "").unwrap();
        }
        let cert = d("elsewhere-cert.pub");
        std::fs::rename(certify(&d("key")), &cert).unwrap();
        certify(&d("key2"));
        let with_key = SshAgent::start().unwrap();
        with_key.add(&d("key")).unwrap();
        let with_other = SshAgent::start().unwrap();
        with_other.add(&d("other")).unwrap();

        let s = |p: PathBuf| p.display().to_string();
        let only = |key: &str| {
            vec![
                "-o".to_owned(),
                "IdentitiesOnly=yes".into(),
                "-i".into(),
                s(d(key)),
            ]
        };
        let no_file = vec!["-o".to_owned(), format!("IdentityFile={}", s(d("none")))];
        struct Case<'a> {
            name: &'a str,
            args: Vec<String>,
            agent: Option<&'a SshAgent>,
            cert: PathBuf,
            auth: Auth,
            note: &'a str,
        }
        let cases = [
            Case {
                name: "signed by the key file",
                args: only("key"),
                agent: None,
                cert: cert.clone(),
                auth: Auth::certificate_file(&cert).or(Auth::key_file_alone(d("key"), None)),
                note: "",
            },
            Case {
                name: "signed by the agent",
                args: no_file.clone(),
                agent: Some(&with_key),
                cert: cert.clone(),
                auth: Auth::certificate_file(&cert).or(Auth::agent_at(with_key.socket())),
                note: "",
            },
            Case {
                name: "no key for it",
                args: only("other"),
                agent: None,
                cert: cert.clone(),
                auth: Auth::certificate_file(&cert).or(Auth::key_file_alone(d("other"), None)),
                note: "certificate elsewhere-cert.pub skipped: no key file or agent to sign for it",
            },
            Case {
                name: "the agent lacks its key",
                args: no_file.clone(),
                agent: Some(&with_other),
                cert: cert.clone(),
                auth: Auth::certificate_file(&cert).or(Auth::agent_at(with_other.socket())),
                note: "certificate elsewhere-cert.pub skipped: no key file or agent key to sign for it",
            },
            Case {
                name: "a missing CertificateFile still hides the one beside the key",
                args: only("key2"),
                agent: None,
                cert: d("missing-cert.pub"),
                auth: Auth::certificate_file(d("missing-cert.pub"))
                    .or(Auth::key_file_alone(d("key2"), None)),
                note: "tried publickey (key2); server allows",
            },
        ];
        for Case {
            name,
            mut args,
            agent,
            cert,
            auth,
            note,
        } in cases
        {
            args.extend(["-o".into(), format!("CertificateFile={}", s(cert))]);
            let theirs = ssh(&sshd, &known, &args, agent.map(SshAgent::socket));
            let ours = Dialer::builder()
                .timeout(Duration::from_secs(10))
                .host_keys(HostKeys::known_hosts(&known))
                .build()
                .dial(sshd.addr(), sshd.user(), auth)
                .await;
            match &ours {
                Ok(_) => {}
                Err(e) => assert!(
                    e.is_auth_rejected() && e.to_string().contains(note),
                    "{name}: {e}"
                ),
            }
            assert_eq!(theirs, ours.is_ok(), "{name}: ssh and ssh-dial differ");
        }
    }
}
