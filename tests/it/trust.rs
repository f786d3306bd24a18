//! Host keys as OpenSSH keeps them: files written by `ssh-keyscan` and
//! hashed by `ssh-keygen -H`, `@revoked`, `[host]:port`, and accept-new,
//! checked against a real sshd and the real `ssh` client.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{dial_verdict, ssh_verdict, Verdict};
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
    if !support::openssh(&["ssh-keygen", "ssh-keyscan", "sshd"]) {
        return;
    }
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

/// Both clients on the same file: the verdicts must agree.
async fn assert_same_verdict(
    sshd: &Sshd,
    host: &str,
    known_hosts: &Path,
    expected: Verdict,
) -> Option<DialError> {
    let (ssh, stderr) = ssh_verdict(sshd, host, known_hosts, None, "yes", &[]);
    assert_eq!(ssh, expected, "ssh: {stderr}");
    let (ours, err) = dial_verdict(sshd, host, HostKeys::known_hosts(known_hosts), false).await;
    assert_eq!(ours, expected, "ssh-dial: {err:?}");
    err
}

#[tokio::test]
async fn a_plain_entry_serves_another_port_only_for_its_very_key_as_in_openssh() {
    if !support::openssh(&["ssh", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let port = sshd.addr().port();
    // `ssh` checks `[host]:port` first, then the plain host with the same
    // key ("found matching key w/out port").
    let plain = sshd
        .write_file("plain", &format!("127.0.0.1 {}", sshd.host_key()))
        .unwrap();
    assert_same_verdict(&sshd, "127.0.0.1", &plain, Verdict::Trusted).await;
    // A plain line with another key does not make the port "changed".
    let other = sshd.dir().join("other_key");
    ssh_keygen(&other, "ed25519", "").unwrap();
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let plain_other = sshd
        .write_file("plain_other", &format!("127.0.0.1 {other_key}"))
        .unwrap();
    assert_same_verdict(&sshd, "127.0.0.1", &plain_other, Verdict::Unknown).await;
    // A bracketed line is for its port only.
    let other_port = sshd
        .write_file(
            "other_port",
            &format!("[127.0.0.1]:{} {}", port + 1, sshd.host_key()),
        )
        .unwrap();
    assert_same_verdict(&sshd, "127.0.0.1", &other_port, Verdict::Unknown).await;
    // A bracketed line with another key is a change, whatever plain says.
    let both = sshd
        .write_file(
            "both",
            &format!(
                "127.0.0.1 {}\n[127.0.0.1]:{port} {other_key}",
                sshd.host_key()
            ),
        )
        .unwrap();
    assert_same_verdict(&sshd, "127.0.0.1", &both, Verdict::Changed).await;
}

#[tokio::test]
async fn a_key_of_another_type_is_a_changed_key_as_in_openssh() {
    if !support::openssh(&["ssh", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let port = sshd.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    drop(sshd);
    // The same address now offers only an ECDSA key.
    let impostor = Sshd::builder()
        .port(port)
        .host_key_types(&["ecdsa"])
        .start()
        .unwrap();
    for strict in ["yes", "accept-new"] {
        let (ssh, stderr) = ssh_verdict(&impostor, "127.0.0.1", &path, None, strict, &[]);
        assert_eq!(ssh, Verdict::Changed, "ssh {strict}: {stderr}");
    }
    for policy in [HostKeys::known_hosts(&path), HostKeys::accept_new(&path)] {
        let (ours, err) = dial_verdict(&impostor, "127.0.0.1", policy, false).await;
        assert_eq!(ours, Verdict::Changed, "{err:?}");
        let msg = err.unwrap().to_string();
        let offered = impostor.host_key_of("ecdsa").unwrap();
        let offered = russh::keys::PublicKey::from_openssh(offered)
            .unwrap()
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        assert!(
            msg.contains(&offered) && msg.contains(&format!("{}:1", path.display())),
            "{msg}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "nothing learned"
    );
    assert!(
        !impostor.log().contains("userauth-request"),
        "a credential reached the impostor"
    );
}

#[tokio::test]
async fn the_key_types_on_file_are_asked_for_first_as_in_openssh() {
    if !support::openssh(&["ssh", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::builder()
        .host_key_types(&["ed25519", "ecdsa", "rsa"])
        .start()
        .unwrap();
    let port = sshd.addr().port();
    for kind in ["ecdsa", "rsa"] {
        let line = format!("[127.0.0.1]:{port} {}", sshd.host_key_of(kind).unwrap());
        let path = sshd.write_file(&format!("only_{kind}"), &line).unwrap();
        assert_same_verdict(&sshd, "127.0.0.1", &path, Verdict::Trusted).await;
        // accept-new does not learn the Ed25519 key beside it.
        let text = std::fs::read_to_string(&path).unwrap();
        let (ours, err) =
            dial_verdict(&sshd, "127.0.0.1", HostKeys::accept_new(&path), false).await;
        assert_eq!(ours, Verdict::Trusted, "{err:?}");
        let (ssh, stderr) = ssh_verdict(&sshd, "127.0.0.1", &path, None, "accept-new", &[]);
        assert_eq!(ssh, Verdict::Trusted, "{stderr}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "{kind}");
    }
}

#[tokio::test]
async fn junk_and_latin1_lines_spoil_nothing_as_in_openssh() {
    if !support::openssh(&["ssh", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let mut text = b"# caf\xe9 cr\xe8me, a Latin-1 comment\n".to_vec();
    text.extend_from_slice(b"\xff\xfe garbage\n@bogus * ssh-ed25519 AAAA\nhost ssh-ed25519\n");
    text.extend_from_slice(format!("{} caf\u{e9}", sshd.known_hosts_line()).as_bytes());
    text.extend_from_slice(b" \xe9t\xe9\r\n");
    let path = sshd.dir().join("latin1");
    std::fs::write(&path, &text).unwrap();
    assert_same_verdict(&sshd, "127.0.0.1", &path, Verdict::Trusted).await;
}

#[tokio::test]
async fn address_literals_are_learned_in_canonical_form_as_in_openssh() {
    if !support::openssh(&["ssh", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let (ours, err) = dial_verdict(&sshd, "127.1", HostKeys::accept_new(&path), false).await;
    assert_eq!(ours, Verdict::Trusted, "{err:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, format!("{}\n", sshd.known_hosts_line()));
    for spelling in ["127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1"] {
        assert_same_verdict(&sshd, spelling, &path, Verdict::Trusted).await;
    }
}

#[tokio::test]
async fn accept_new_checks_the_global_files_as_in_openssh() {
    if !support::openssh(&["ssh", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let global = sshd
        .write_file("global", &format!("@revoked * {}", sshd.host_key()))
        .unwrap();
    let (ssh, stderr) = ssh_verdict(&sshd, "127.0.0.1", &path, Some(&global), "accept-new", &[]);
    assert_eq!(ssh, Verdict::Revoked, "{stderr}");
    let policy = HostKeys::accept_new(&path).global_files([&global]);
    let (ours, err) = dial_verdict(&sshd, "127.0.0.1", policy, false).await;
    assert_eq!(ours, Verdict::Revoked, "{err:?}");
    assert!(!path.exists(), "nothing learned");
    assert!(!sshd.log().contains("userauth-request"));
}

/// Run by `the_default_files_come_from_the_passwd_home_without_home` in a
/// child process with `HOME` unset: prints the files the default policy read.
#[tokio::test]
#[ignore = "run by another test, in a process without HOME"]
async fn print_default_files() {
    let server = TestServer::builder().password("u", "p").start().unwrap();
    let err = Dialer::new()
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .unwrap_err();
    println!("DEFAULT-FILES {err}");
}

#[test]
fn the_default_files_come_from_the_passwd_home_without_home() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "--nocapture"])
        .arg(support::sibling_test("print_default_files"))
        .env_remove("HOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("DEFAULT-FILES"))
        .unwrap_or_else(|| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let home = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[2] == uid.trim())
        .map(|f| f[5].to_owned())
        .expect("a passwd entry for this user");
    let files = format!(
        "{home}/.ssh/known_hosts, {home}/.ssh/known_hosts2, \
         /etc/ssh/ssh_known_hosts, /etc/ssh/ssh_known_hosts2"
    );
    assert!(line.contains(&files), "{line}");
}

#[tokio::test]
async fn revoked_key_is_refused_even_when_listed() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
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
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
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
    if !support::openssh(&["ssh", "ssh-keygen", "sshd"]) {
        return;
    }
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
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
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
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
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

#[tokio::test]
async fn certificate_principals_match_the_host_in_any_case_as_in_openssh() {
    if !support::openssh(&["ssh", "ssh-keygen", "sshd"]) {
        return;
    }
    let ca_dir = tempfile::tempdir().unwrap();
    let (ca, line) = certificate_authority(ca_dir.path(), "[localhost]:*");
    let sshd = Sshd::builder()
        .host_certificate(&ca, "localhost")
        .start()
        .unwrap();
    let path = sshd.write_file("ca_only", &line).unwrap();
    for host in ["localhost", "LOCALHOST", "LocalHost"] {
        let (ssh, stderr) = ssh_verdict(&sshd, host, &path, None, "yes", &[]);
        assert_eq!(ssh, Verdict::Trusted, "ssh {host}: {stderr}");
        let (ours, err) = dial_verdict(&sshd, host, HostKeys::known_hosts(&path), true).await;
        assert_eq!(ours, Verdict::Trusted, "{host}: {err:?}");
    }
}

/// Counts what russh asks a handler: host key checks and finished key
/// exchanges.
struct Counting {
    checks: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    kexes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl russh::client::Handler for Counting {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(true)
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        _names: &russh::Names,
        _session: &mut russh::client::Session,
    ) -> Result<(), Self::Error> {
        self.kexes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// What a re-key does (README, "Trust and authentication"): russh asks
/// about the host key in the first key exchange only, so a key presented in
/// a re-key is not checked; ssh-dial can see only its algorithm, and its
/// sessions go on through re-keys that keep it.
#[tokio::test]
async fn a_rekey_is_not_asked_about_the_host_key() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let sshd = Sshd::builder()
        .config_line("RekeyLimit 64K")
        .start()
        .unwrap();
    let (checks, kexes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handler = Counting {
        checks: checks.clone(),
        kexes: kexes.clone(),
    };
    let mut handle = russh::client::connect(
        Arc::new(russh::client::Config::default()),
        sshd.addr(),
        handler,
    )
    .await
    .unwrap();
    let key = russh::keys::PrivateKeyWithHashAlg::new(Arc::new(sshd.user_key().clone()), None);
    assert!(handle
        .authenticate_publickey(sshd.user(), key)
        .await
        .unwrap()
        .success());
    let mut channel = handle.channel_open_session().await.unwrap();
    channel
        .exec(true, "head -c 400000 /dev/zero")
        .await
        .unwrap();
    let mut received = 0;
    while let Some(msg) = channel.wait().await {
        if let russh::ChannelMsg::Data { data } = msg {
            received += data.len();
        }
    }
    assert_eq!(received, 400_000);
    assert!(
        kexes.load(Ordering::SeqCst) >= 3,
        "control: the sshd re-keyed ({} key exchanges)",
        kexes.load(Ordering::SeqCst)
    );
    assert_eq!(checks.load(Ordering::SeqCst), 1, "asked once, in the first");

    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    let client = dial(&sshd, HostKeys::known_hosts(known)).await.unwrap();
    let out = client.exec("head -c 400000 /dev/zero").await.unwrap();
    assert_eq!(out.stdout.len(), 400_000, "the session survives re-keys");
}

// Host keys against the in-process russh server.

fn russh_dialer(host_keys: HostKeys) -> Dialer {
    Dialer::builder()
        .timeout(Duration::from_secs(5))
        .host_keys(host_keys)
        .build()
}

#[tokio::test]
async fn wrong_pinned_key_fails_key_exchange_before_any_credential() {
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let other = ssh_dial::testing::ed25519_key().unwrap();
    let err = russh_dialer(HostKeys::pinned_keys([other.public_key().clone()]))
        .dial(server.addr(), "alice", Auth::password("pw"))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::KeyExchange, "{err}");
    assert!(err.is_host_key() && !err.is_timeout(), "{err}");
    assert!(
        err.to_string().contains("not among the pinned keys"),
        "{err}"
    );
    assert_eq!(
        server.auth_attempts(),
        0,
        "a credential reached an untrusted server"
    );

    // The control: with the right key the same server does see auth.
    russh_dialer(server.host_keys())
        .dial(server.addr(), "alice", Auth::password("pw"))
        .await
        .unwrap();
    assert!(server.auth_attempts() > 0);
}

#[tokio::test]
async fn pinned_fingerprint_is_accepted() {
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let fp = server
        .host_key()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string();
    russh_dialer(HostKeys::pinned([fp]).unwrap())
        .dial(server.addr(), "alice", Auth::password("pw"))
        .await
        .unwrap();
}

#[tokio::test]
async fn known_hosts_file_accepts_the_host_and_flags_a_changed_key() {
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let good = dir.path().join("good");
    std::fs::write(
        &good,
        format!("# written by the test\n{}\n", server.known_hosts_line()),
    )
    .unwrap();
    russh_dialer(HostKeys::known_hosts(&good))
        .dial(server.addr(), "alice", Auth::password("pw"))
        .await
        .expect("known host");

    let impostor = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let changed = dir.path().join("changed");
    // The impostor's address, with the real server's key on line 2.
    let line = format!(
        "[127.0.0.1]:{} {}",
        impostor.addr().port(),
        server.host_key().to_openssh().unwrap()
    );
    std::fs::write(
        &changed,
        format!("other.example ssh-ed25519 AAAA\n{line}\n"),
    )
    .unwrap();
    let err = russh_dialer(HostKeys::known_hosts(&changed))
        .dial(impostor.addr(), "alice", Auth::password("pw"))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::KeyExchange);
    assert!(err.is_host_key_mismatch(), "{err}");
    let msg = err.to_string();
    let fp = impostor
        .host_key()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string();
    assert!(msg.contains(&fp), "offered fingerprint missing: {msg}");
    assert!(
        msg.contains(&format!("{}:2", changed.display())),
        "file and line missing: {msg}"
    );
    assert_eq!(impostor.auth_attempts(), 0);
}

#[tokio::test]
async fn unknown_host_is_refused() {
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other_port = dir.path().join("other_port");
    // Same key, but recorded for another port: `[host]:port` must match exactly.
    let line = format!(
        "[127.0.0.1]:{} {}",
        server.addr().port() + 1,
        server.host_key().to_openssh().unwrap()
    );
    std::fs::write(&other_port, line).unwrap();
    let err = russh_dialer(HostKeys::known_hosts(&other_port))
        .dial(server.addr(), "alice", Auth::password("pw"))
        .await
        .unwrap_err();
    assert!(err.is_host_key() && !err.is_host_key_mismatch(), "{err}");
    assert!(err.to_string().contains("is not in"), "{err}");
    assert_eq!(server.auth_attempts(), 0);
}

#[tokio::test]
async fn a_name_is_matched_in_known_hosts_as_dialed_and_every_address_is_tried() {
    // "localhost" may resolve to ::1 before 127.0.0.1; the server listens on
    // 127.0.0.1 only, so any ::1 attempt is refused and the next one used.
    let server = TestServer::builder()
        .password("alice", "pw")
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let key = server.host_key().to_openssh().unwrap();
    std::fs::write(&kh, format!("[localhost]:{} {key}\n", server.addr().port())).unwrap();
    let client = russh_dialer(HostKeys::known_hosts(&kh))
        .dial(
            ("localhost", server.addr().port()),
            "alice",
            Auth::password("pw"),
        )
        .await
        .unwrap();
    assert_eq!(client.remote_addr(), Some(server.addr()));

    // The address literal is another name as far as known_hosts goes.
    let err = russh_dialer(HostKeys::known_hosts(&kh))
        .dial(server.addr(), "alice", Auth::password("pw"))
        .await
        .unwrap_err();
    assert!(err.is_host_key() && !err.is_host_key_mismatch(), "{err}");
}
