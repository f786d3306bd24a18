//! User certificates against a real sshd that takes certificates only
//! (`TrustedUserCAKeys`, `AuthorizedKeysFile none`), with CAs and
//! certificates made by `ssh-keygen`: ssh-dial's verdicts beside the real
//! `ssh`'s on the same matrix (a certificate beside its key, given
//! explicitly, held by an agent; valid, expired, not yet valid, for another
//! principal, from another CA, RSA, ...), and what the errors say.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ssh_dial::testing::{ssh_keygen, ssh_keygen_certify, SshAgent, Sshd};
use ssh_dial::{Auth, DialError, Dialer, HostKeys, Phase, SshConfig};

/// A certificate-only sshd, its trusted CAs (Ed25519 and RSA), a CA it
/// does not trust, and a directory for keys.
struct Lab {
    sshd: Sshd,
    known_hosts: PathBuf,
    dir: tempfile::TempDir,
}

impl Lab {
    fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for ca in ["ca", "ca_rsa", "rogue_ca"] {
            let kind = if ca == "ca_rsa" { "rsa" } else { "ed25519" };
            ssh_keygen(&d.join(ca), kind, "").unwrap();
        }
        let trusted = d.join("trusted_cas");
        let lines: String = ["ca.pub", "ca_rsa.pub"]
            .iter()
            .map(|f| std::fs::read_to_string(d.join(f)).unwrap())
            .collect();
        std::fs::write(&trusted, lines).unwrap();
        let sshd = Sshd::builder()
            .trusted_user_ca_keys(&trusted)
            .config_line("AuthorizedKeysFile none")
            .start()
            .unwrap();
        let known_hosts = sshd
            .write_file("known_hosts", &sshd.known_hosts_line())
            .unwrap();
        Lab {
            sshd,
            known_hosts,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new key `name` of `kind` (with `name.pub`) in a directory of its own.
    fn key(&self, name: &str, kind: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("id");
        ssh_keygen(&key, kind, "").unwrap();
        key
    }

    async fn dial(&self, auth: Auth) -> Result<ssh_dial::Client, DialError> {
        Dialer::builder()
            .timeout(Duration::from_secs(10))
            .host_keys(HostKeys::known_hosts(&self.known_hosts))
            .build()
            .dial(self.sshd.addr(), self.sshd.user(), auth)
            .await
    }

    /// The real ssh with these extra arguments (and `SSH_AUTH_SOCK`, if
    /// an agent is given): whether it got in, and its stderr.
    fn ssh(&self, args: &[String], agent: Option<&Path>) -> (bool, String) {
        let mut command = std::process::Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "CheckHostIP=no"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "KexAlgorithms=curve25519-sha256"])
            .args(["-o", "ConnectTimeout=10"])
            .args(args)
            .args(["-p", &self.sshd.addr().port().to_string()])
            .arg(format!("{}@127.0.0.1", self.sshd.user()))
            .arg("true")
            .stdin(Stdio::null());
        match agent {
            Some(socket) => command.env("SSH_AUTH_SOCK", socket),
            None => command.env_remove("SSH_AUTH_SOCK"),
        };
        let out = command.output().expect("ssh runs (install openssh-client)");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() && !stderr.contains("Permission denied") {
            panic!("ssh failed for another reason than auth: {stderr}");
        }
        (out.status.success(), stderr)
    }
}

/// What ssh-dial made of a dial: in, or why not.
fn verdict(result: &Result<ssh_dial::Client, DialError>) -> &'static str {
    match result {
        Ok(_) => "accepted",
        Err(e) if e.phase() == Phase::Auth && e.is_auth_rejected() => "rejected",
        Err(e) if e.phase() == Phase::Auth && e.is_invalid_input() => "refused (invalid input)",
        Err(e) => panic!("the dial failed for another reason than auth: {e}"),
    }
}

/// How a certificate reaches the client.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Delivery {
    /// `<key>-cert.pub` beside the key: `ssh -i KEY`, `Auth::key_file`.
    Beside,
    /// `ssh -i KEY -o CertificateFile=CERT`, `Auth::certificate`.
    Explicit,
    /// `ssh-add KEY` (which adds `KEY-cert.pub` too): `Auth::agent_at`.
    Agent,
    /// ssh_config's `IdentityFile KEY` and `CertificateFile CERT`:
    /// `HostConfig::auth`.
    Config,
}

/// One kind of certificate: its key type, CA, principals and validity.
struct Case {
    name: &'static str,
    kind: &'static str,
    ca: &'static str,
    /// `None`: the user running sshd.
    principals: Option<&'static str>,
    validity: &'static str,
    host: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "valid ed25519",
        kind: "ed25519",
        ca: "ca",
        principals: None,
        validity: "-5m:+1h",
        host: false,
    },
    Case {
        name: "valid ecdsa",
        kind: "ecdsa",
        ca: "ca",
        principals: None,
        validity: "-5m:+1h",
        host: false,
    },
    Case {
        name: "rsa key, rsa CA",
        kind: "rsa",
        ca: "ca_rsa",
        principals: None,
        validity: "-5m:+1h",
        host: false,
    },
    Case {
        name: "valid forever",
        kind: "ed25519",
        ca: "ca",
        principals: None,
        validity: "always:forever",
        host: false,
    },
    Case {
        name: "expired",
        kind: "ed25519",
        ca: "ca",
        principals: None,
        validity: "20200101:20200102",
        host: false,
    },
    Case {
        name: "not yet valid",
        kind: "ed25519",
        ca: "ca",
        principals: None,
        validity: "+1d:+2d",
        host: false,
    },
    Case {
        name: "wrong principal",
        kind: "ed25519",
        ca: "ca",
        principals: Some("someone-else"),
        validity: "-5m:+1h",
        host: false,
    },
    Case {
        name: "principal among others",
        kind: "ed25519",
        ca: "ca",
        principals: Some("someone-else,USER"),
        validity: "-5m:+1h",
        host: false,
    },
    Case {
        name: "no principals",
        kind: "ed25519",
        ca: "ca",
        principals: Some(""),
        validity: "-5m:+1h",
        host: false,
    },
    Case {
        name: "wrong CA",
        kind: "ed25519",
        ca: "rogue_ca",
        principals: None,
        validity: "-5m:+1h",
        host: false,
    },
    Case {
        name: "host certificate",
        kind: "ed25519",
        ca: "ca",
        principals: None,
        validity: "-5m:+1h",
        host: true,
    },
];

/// Makes the case's key (`NAME/id`, certificate beside it) and a bare
/// copy of the key (`NAME/bare/id`) for the explicit certificate.
fn make_case(lab: &Lab, n: usize, case: &Case) -> (PathBuf, PathBuf, PathBuf) {
    let key = lab.key(&format!("case{n}"), case.kind);
    let public = key.with_extension("pub");
    let principals = case.principals.map_or(lab.sshd.user().to_owned(), |p| {
        p.replace("USER", lab.sshd.user())
    });
    let cert = if case.host {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-h", "-s"])
            .arg(lab.path(case.ca))
            .args(["-I", case.name, "-n", &principals, "-V", case.validity])
            .arg(&public)
            .output()
            .unwrap();
        assert!(out.status.success());
        PathBuf::from(format!("{}-cert.pub", key.display()))
    } else {
        ssh_keygen_certify(
            &lab.path(case.ca),
            &public,
            case.name,
            &principals,
            case.validity,
        )
        .unwrap()
    };
    assert!(cert.is_file(), "{}", cert.display());
    let bare_dir = key.parent().unwrap().join("bare");
    std::fs::create_dir_all(&bare_dir).unwrap();
    let bare = bare_dir.join("id");
    std::fs::copy(&key, &bare).unwrap();
    std::fs::copy(&public, bare.with_extension("pub")).unwrap();
    (key, bare, cert)
}

/// One row of the matrix: both clients, one way of delivering the
/// certificate. Returns (ssh got in, ssh-dial's verdict, its error).
async fn run_row(
    lab: &Lab,
    delivery: Delivery,
    key: &Path,
    bare: &Path,
    cert: &Path,
) -> (bool, &'static str, String) {
    let s = |p: &Path| p.display().to_string();
    let agent = match delivery {
        Delivery::Agent => {
            let agent = SshAgent::start().unwrap();
            agent.add(key).unwrap();
            Some(agent)
        }
        _ => None,
    };
    let (args, auth) = match delivery {
        Delivery::Beside => (
            vec![
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-i".into(),
                s(key),
            ],
            Auth::key_file(key, None),
        ),
        Delivery::Explicit => (
            vec![
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-i".into(),
                s(bare),
                "-o".into(),
                format!("CertificateFile={}", s(cert)),
            ],
            Auth::certificate(bare, cert, None),
        ),
        Delivery::Config => (
            vec![
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-o".into(),
                format!("IdentityFile={}", s(bare)),
                "-o".into(),
                format!("CertificateFile={}", s(cert)),
            ],
            SshConfig::parse(&format!(
                "Host *\n  IdentityFile \"{}\"\n  CertificateFile \"{}\"\n  \
                 IdentitiesOnly yes\n  IdentityAgent none\n",
                s(bare),
                s(cert)
            ))
            .and_then(|c| c.resolve("lab"))
            .unwrap()
            .auth()
            .expect("an identity file to offer"),
        ),
        // No identity file of ssh's own: only the agent's keys.
        Delivery::Agent => (
            vec![
                "-o".into(),
                format!("IdentityFile={}", s(&lab.path("no-such-key"))),
            ],
            Auth::agent_at(agent.as_ref().unwrap().socket()),
        ),
    };
    let socket = agent.as_ref().map(|a| a.socket().to_owned());
    let (ssh_in, stderr) = lab.ssh(&args, socket.as_deref());
    let result = lab.dial(auth).await;
    let ours = verdict(&result);
    let detail = match &result {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    (ssh_in, ours, format!("{detail}\nssh: {stderr}"))
}

/// The matrix: every case delivered every way, plus a certificate
/// without its private key; 0 divergences in accept/reject.
#[tokio::test]
async fn accept_and_reject_like_openssh() {
    if !support::openssh(&["ssh", "ssh-add", "ssh-agent", "ssh-keygen", "sshd"]) {
        return;
    }
    let lab = Lab::start();
    // Control: the harness's authorized key does not get in, so what gets
    // in below is a certificate.
    let Err(err) = lab.dial(Auth::key(lab.sshd.user_key().clone())).await else {
        panic!("AuthorizedKeysFile none: the plain key is refused");
    };
    assert!(err.is_auth_rejected(), "{err}");

    let mut rows = Vec::new();
    let mut divergences = Vec::new();
    for (n, case) in CASES.iter().enumerate() {
        let (key, bare, cert) = make_case(&lab, n, case);
        for delivery in [
            Delivery::Beside,
            Delivery::Explicit,
            Delivery::Agent,
            Delivery::Config,
        ] {
            let (ssh_in, ours, detail) = run_row(&lab, delivery, &key, &bare, &cert).await;
            let row = format!(
                "{:<24} {:<9} ssh {:<9} ssh-dial {ours}",
                case.name,
                format!("{delivery:?}"),
                if ssh_in { "accepted" } else { "rejected" }
            );
            if ssh_in != (ours == "accepted") {
                divergences.push(format!("{row}\n{detail}"));
            }
            rows.push(row);
        }
    }

    // A certificate without its private key: beside a key file that is
    // gone (its .pub is still there), and given with another key.
    let (key, _, cert) = make_case(&lab, 100, &CASES[0]);
    let other = lab.key("other", "ed25519");
    std::fs::remove_file(&key).unwrap();
    for (name, delivery, key) in [
        ("cert without its key", Delivery::Beside, key.as_path()),
        ("cert with another key", Delivery::Explicit, other.as_path()),
        ("cert with another key", Delivery::Config, other.as_path()),
    ] {
        let (ssh_in, ours, detail) = run_row(&lab, delivery, key, key, &cert).await;
        let row = format!(
            "{name:<24} {:<9} ssh {:<9} ssh-dial {ours}",
            format!("{delivery:?}"),
            if ssh_in { "accepted" } else { "rejected" }
        );
        if ssh_in != (ours == "accepted") {
            divergences.push(format!("{row}\n{detail}"));
        }
        rows.push(row);
    }

    eprintln!("{}", rows.join("\n"));
    assert!(
        divergences.is_empty(),
        "{} divergences:\n{}",
        divergences.len(),
        divergences.join("\n\n")
    );
    let accepted = rows
        .iter()
        .filter(|r| r.ends_with("ssh-dial accepted"))
        .count();
    // Both verdicts must have come up, or the matrix proves little.
    assert!(accepted >= 12 && accepted < rows.len(), "{rows:#?}");
}

/// RSA certificates sign with rsa-sha2-512, from a file and from the
/// agent: this server takes nothing else (russh's own certificate method
/// would send `ssh-rsa-cert-v01`, SHA-1, which it refuses).
#[tokio::test]
async fn rsa_certificates_sign_with_rsa_sha2_512() {
    if !support::openssh(&["ssh-add", "ssh-agent", "ssh-keygen", "sshd"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    ssh_keygen(&ca, "rsa", "").unwrap();
    let sshd = Sshd::builder()
        .trusted_user_ca_keys(&ca.with_extension("pub"))
        .config_line("AuthorizedKeysFile none")
        .config_line("PubkeyAcceptedAlgorithms rsa-sha2-512-cert-v01@openssh.com")
        .start()
        .unwrap();
    let key = dir.path().join("id_rsa");
    ssh_keygen(&key, "rsa", "").unwrap();
    ssh_keygen_certify(
        &ca,
        &key.with_extension("pub"),
        "rsa-ci",
        sshd.user(),
        "-5m:+1h",
    )
    .unwrap();
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    let agent = SshAgent::start().unwrap();
    agent.add(&key).unwrap();
    for auth in [Auth::key_file(&key, None), Auth::agent_at(agent.socket())] {
        Dialer::builder()
            .timeout(Duration::from_secs(10))
            .host_keys(HostKeys::known_hosts(&known))
            .build()
            .dial(sshd.addr(), sshd.user(), auth.clone())
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e}\n{}", sshd.log()));
    }
    assert_eq!(
        sshd.log()
            .lines()
            .filter(|l| l.starts_with("Accepted publickey") && l.contains("RSA-CERT"))
            .count(),
        2,
        "{}",
        sshd.log()
    );
}

/// A certificate the server turns down is named in the error: key id and
/// principals (escaped), validity, and whether it has expired; one that
/// gets in over an encrypted key leaves its passphrase nowhere.
#[tokio::test]
async fn a_rejected_certificate_is_named_in_the_error() {
    if !support::openssh(&["ssh-add", "ssh-agent", "ssh-keygen", "sshd"]) {
        return;
    }
    let lab = Lab::start();
    let key = lab.key("named", "ed25519");
    let cert = key.with_file_name("id-cert.pub");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(lab.path("ca"))
        .args([
            "-I",
            "ci-7\x1b[31m\ndial 10.0.0.1:22: ok",
            "-n",
            "alice,deploy",
        ])
        .args(["-V", "20200101Z:20200102Z"])
        .arg(key.with_extension("pub"))
        .status()
        .unwrap();
    assert!(status.success() && cert.is_file());
    let named = "key id \"ci-7\\u{1b}[31m\\ndial 10.0.0.1:22: ok\", principals alice,deploy, \
                 valid 2020-01-01T00:00:00Z to 2020-01-02T00:00:00Z (expired)";

    let err = lab.dial(Auth::key_file(&key, None)).await.err().unwrap();
    assert!(err.is_auth_rejected(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "tried publickey (id), certificate (id-cert.pub: {named})"
        )),
        "{msg}"
    );
    assert!(!msg.contains('\x1b') && !msg.contains('\n'), "{msg}");
    assert!(!format!("{err:?}").contains('\x1b'), "{err:?}");

    let agent = SshAgent::start().unwrap();
    agent.add(&key).unwrap();
    let err = lab
        .dial(Auth::agent_at(agent.socket()))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "tried agent (1 keys, 1 certificates), certificate (agent: {named})"
        )),
        "{msg}"
    );

    // An encrypted key and its certificate, given explicitly.
    let locked = lab.key("locked", "ed25519");
    std::fs::remove_file(&locked).unwrap();
    std::fs::remove_file(locked.with_extension("pub")).unwrap();
    ssh_keygen(&locked, "ed25519", "pp-5e1f-secret").unwrap();
    let cert = ssh_keygen_certify(
        &lab.path("ca"),
        &locked.with_extension("pub"),
        "locked",
        lab.sshd.user(),
        "-5m:+1h",
    )
    .unwrap();
    let explicit = Auth::certificate(&locked, &cert, Some("pp-5e1f-secret"));
    assert!(!format!("{explicit:?}").contains("pp-5e1f"));
    lab.dial(explicit).await.expect("the certificate gets in");
    let err = lab
        .dial(Auth::certificate(&locked, &cert, Some("wrong-secret")))
        .await
        .err()
        .unwrap();
    assert!(err.is_invalid_input(), "{err}");
    assert!(!format!("{err} {err:?}").contains("secret"), "{err:?}");
}

/// An expired or not yet valid certificate is offered all the same, as
/// ssh does (the server's clock decides), and a debug line says so first;
/// no passphrase reaches the logs. Run alone in a child process: a
/// subscriber set for one thread misses events whose callsites other
/// tests' threads register at the same time.
#[test]
fn a_certificate_out_of_its_validity_is_offered_and_said_so() {
    const TEST: &str = "a_certificate_out_of_its_validity_is_offered_and_said_so";
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    if std::env::var_os("SSH_DIAL_CERT_LOG_CHILD").is_some() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        return runtime.block_on(out_of_validity_child());
    }
    let out = support::run_alone(TEST, &[("SSH_DIAL_CERT_LOG_CHILD", "1".into())]);
    assert!(out.contains("checked 3 dials"), "{out}");
}

async fn out_of_validity_child() {
    let lab = Lab::start();
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();
    for (name, validity, server_says) in [
        (
            "stale-1",
            "20200101Z:20200102Z",
            "Certificate invalid: expired",
        ),
        ("early-2", "+1d:+2d", "Certificate invalid: not yet valid"),
    ] {
        let key = lab.key(name, "ed25519");
        ssh_keygen_certify(
            &lab.path("ca"),
            &key.with_extension("pub"),
            name,
            lab.sshd.user(),
            validity,
        )
        .unwrap();
        let err = lab.dial(Auth::key_file(&key, None)).await.err().unwrap();
        assert!(err.is_auth_rejected(), "{err}");
        let logs = captured.text();
        let said = logs
            .lines()
            .find(|l| l.contains(&format!("key_id={name}")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{logs}"));
        let when = if name.starts_with("stale") {
            "that is expired"
        } else {
            "that is not yet valid"
        };
        assert!(said.contains("DEBUG") && said.contains(when), "{said}");
        assert!(
            support::wait_until(Duration::from_secs(5), || lab
                .sshd
                .log()
                .contains(server_says))
            .await,
            "the server never saw it: {}",
            lab.sshd.log()
        );
    }
    // A valid one, over an encrypted key, gets no such line, and its
    // passphrase is in no log line.
    let key = lab.key("fresh-3", "ed25519");
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(key.with_extension("pub")).unwrap();
    ssh_keygen(&key, "ed25519", "pp-0a7c-secret").unwrap();
    ssh_keygen_certify(
        &lab.path("ca"),
        &key.with_extension("pub"),
        "fresh-3",
        lab.sshd.user(),
        "-5m:+1h",
    )
    .unwrap();
    lab.dial(Auth::key_file(&key, Some("pp-0a7c-secret")))
        .await
        .unwrap();
    let logs = captured.text();
    assert!(logs.contains("authenticated") && !logs.contains("key_id=fresh-3"));
    assert!(!logs.contains("pp-0a7c"), "a passphrase reached the logs");
    println!("checked 3 dials");
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Certificates that cannot be used: beside a key, skipped with a note in
/// the error (and the key still offered); given explicitly, refused before
/// any connection, saying why. Never a panic, never a hang.
#[tokio::test]
async fn unusable_certificates_are_skipped_or_refused_clearly() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let lab = Lab::start();
    let other = lab.key("other", "ed25519");
    let other_cert = ssh_keygen_certify(
        &lab.path("ca"),
        &other.with_extension("pub"),
        "other",
        lab.sshd.user(),
        "-5m:+1h",
    )
    .unwrap();
    let host_key = lab.key("hostish", "ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-h", "-s"])
        .arg(lab.path("ca"))
        .args(["-I", "host", "-V", "-5m:+1h"])
        .arg(host_key.with_extension("pub"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let host_cert = host_key.with_file_name("id-cert.pub");
    let fifo = lab.path("fifo-cert.pub");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());

    type Write<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: [(&str, Write, &str); 5] = [
        (
            "garbage",
            Box::new(|p| std::fs::write(p, "ssh-ed25519-cert-v01@openssh.com AAAA\n").unwrap()),
            "cannot decode a ssh-ed25519-cert-v01@openssh.com certificate",
        ),
        (
            "a plain key",
            Box::new(|p| {
                std::fs::copy(other.with_extension("pub"), p)
                    .map(drop)
                    .unwrap()
            }),
            "not a certificate (type ssh-ed25519)",
        ),
        (
            "a host certificate",
            Box::new(|p| std::fs::copy(&host_cert, p).map(drop).unwrap()),
            "a host certificate, not a user certificate",
        ),
        (
            "another key's certificate",
            Box::new(|p| std::fs::copy(&other_cert, p).map(drop).unwrap()),
            "it certifies another key (SHA256:",
        ),
        (
            "a huge file",
            Box::new(|p| std::fs::write(p, vec![b'A'; 2 << 20]).unwrap()),
            "larger than 1048576 bytes",
        ),
    ];
    for (n, (what, write, why)) in cases.iter().enumerate() {
        let key = lab.key(&format!("bad{n}"), "ed25519");
        let cert = key.with_file_name("id-cert.pub");
        write(&cert);
        let bounded = |auth| tokio::time::timeout(Duration::from_secs(15), lab.dial(auth));
        let err = bounded(Auth::key_file(&key, None))
            .await
            .expect("no hang")
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(err.is_auth_rejected(), "{what}: {msg}");
        assert!(
            msg.contains("tried publickey (id);")
                && msg.contains(&format!("certificate id-cert.pub skipped: {why}")),
            "{what}: {msg}"
        );
        let err = bounded(Auth::certificate(&key, &cert, None))
            .await
            .expect("no hang")
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(
            err.is_invalid_input() && err.remote_addr().is_none(),
            "{what}: {msg}"
        );
        assert!(
            msg.contains(&format!("cannot use certificate {}: {why}", cert.display())),
            "{what}: {msg}"
        );
    }
    // Something that is not a file: beside a key it is not looked at (as
    // ssh), given explicitly it is refused without being opened.
    let key = lab.key("fifo", "ed25519");
    std::os::unix::fs::symlink(&fifo, key.with_file_name("id-cert.pub")).unwrap();
    let bounded = |auth| tokio::time::timeout(Duration::from_secs(15), lab.dial(auth));
    let err = bounded(Auth::key_file(&key, None))
        .await
        .expect("no hang")
        .err()
        .unwrap();
    assert!(
        err.to_string().ends_with("server allows publickey)"),
        "{err}"
    );
    let err = bounded(Auth::certificate(&key, &fifo, None))
        .await
        .expect("no hang")
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let missing = lab.path("missing-cert.pub");
    let err = bounded(Auth::certificate(&key, &missing, None))
        .await
        .expect("no hang")
        .err()
        .unwrap();
    assert!(
        err.is_invalid_input() && err.to_string().contains("no such file"),
        "{err}"
    );
}

/// An agent holding a certificate of a type ssh-dial does not offer
/// (ssh-dss, which OpenSSH servers refuse too): skipped with a note, and
/// the agent's other certificates still get in.
#[tokio::test]
async fn an_agent_certificate_of_an_unusable_type_is_skipped() {
    if !support::openssh(&["ssh-add", "ssh-agent", "ssh-keygen", "sshd"]) {
        return;
    }
    let lab = Lab::start();
    let dir = lab.path("dsa");
    std::fs::create_dir_all(&dir).unwrap();
    let dsa = dir.join("id");
    if ssh_keygen(&dsa, "dsa", "").is_err() {
        eprintln!("skipped: this ssh-keygen makes no DSA keys");
        return;
    }
    ssh_keygen_certify(
        &lab.path("ca"),
        &dsa.with_extension("pub"),
        "dsa",
        lab.sshd.user(),
        "-5m:+1h",
    )
    .unwrap();
    let agent = SshAgent::start().unwrap();
    agent.add(&dsa).unwrap();
    let err = lab
        .dial(Auth::agent_at(agent.socket()))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(err.is_auth_rejected(), "{msg}");
    assert!(
        msg.contains(
            "tried agent (1 keys, 1 certificates); \
             agent certificate skipped: type ssh-dss-cert-v01@openssh.com is not supported"
        ),
        "{msg}"
    );
    let key = lab.key("after-dsa", "ed25519");
    ssh_keygen_certify(
        &lab.path("ca"),
        &key.with_extension("pub"),
        "after-dsa",
        lab.sshd.user(),
        "-5m:+1h",
    )
    .unwrap();
    agent.add(&key).unwrap();
    lab.dial(Auth::agent_at(agent.socket()))
        .await
        .expect("the Ed25519 certificate after the DSA one gets in");
}

/// An agent that lists a certificate and never signs for it: the dial ends
/// at its deadline, in the auth phase, and lets go of the agent.
#[tokio::test]
async fn an_agent_that_never_signs_for_a_certificate_ends_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let lab = Lab::start();
    let key = lab.key("silent", "ed25519");
    let cert = ssh_keygen_certify(
        &lab.path("ca"),
        &key.with_extension("pub"),
        "silent",
        lab.sshd.user(),
        "-5m:+1h",
    )
    .unwrap();
    let text = std::fs::read_to_string(&cert).unwrap();
    let blob = data_encoding::BASE64
        .decode(text.split_whitespace().nth(1).unwrap().as_bytes())
        .unwrap();
    let socket = lab.path("silent-agent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    // Answers the identity list with the certificate, then reads the sign
    // request and never answers it; reports when the client lets go.
    let agent = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut requests = Vec::new();
        loop {
            let mut len = [0u8; 4];
            if conn.read_exact(&mut len).await.is_err() {
                return requests; // the client closed
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            conn.read_exact(&mut body).await.unwrap();
            requests.push(body[0]);
            if body[0] == 11 {
                let mut answer = vec![12u8];
                answer.extend(1u32.to_be_bytes());
                answer.extend((blob.len() as u32).to_be_bytes());
                answer.extend(&blob);
                answer.extend(0u32.to_be_bytes()); // empty comment
                conn.write_all(&(answer.len() as u32).to_be_bytes())
                    .await
                    .unwrap();
                conn.write_all(&answer).await.unwrap();
            }
        }
    });
    let deadline = Duration::from_millis(1_500);
    let started = std::time::Instant::now();
    let err = Dialer::builder()
        .timeout(deadline)
        .host_keys(HostKeys::known_hosts(&lab.known_hosts))
        .build()
        .dial(lab.sshd.addr(), lab.sshd.user(), Auth::agent_at(&socket))
        .await
        .err()
        .unwrap();
    let took = started.elapsed();
    assert!(err.is_timeout() && err.phase() == Phase::Auth, "{err}");
    assert!(
        took >= deadline && took < deadline + Duration::from_millis(250),
        "{took:?}"
    );
    let requests = tokio::time::timeout(Duration::from_secs(5), agent)
        .await
        .expect("the agent connection is closed after the dial")
        .unwrap();
    // Identities, then the sign request that never got an answer.
    assert_eq!(requests, [11, 13]);
}
