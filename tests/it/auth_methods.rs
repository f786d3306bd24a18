//! Authentication as people have it, against a real sshd and a real
//! ssh-agent: agent keys, encrypted keys of every type, and lists of methods.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh_dial::testing::{ssh_keygen, SshAgent, Sshd, TestServer};
use ssh_dial::{Auth, DialError, Dialer, HostKeys, Phase};

async fn dial(sshd: &Sshd, auth: Auth) -> Result<ssh_dial::Client, DialError> {
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(HostKeys::known_hosts(known))
        .build()
        .dial(sshd.addr(), sshd.user(), auth)
        .await
}

fn new_key(sshd: &Sshd, name: &str) -> PathBuf {
    let path = sshd.dir().join(name);
    ssh_keygen(&path, "ed25519", "").unwrap();
    path
}

#[tokio::test]
async fn agent_keys_are_tried_in_turn() {
    if !support::openssh(&["ssh-add", "ssh-agent", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let agent = SshAgent::start().unwrap();
    // The first key the agent lists is not authorized; the second is.
    agent.add(&new_key(&sshd, "stranger")).unwrap();
    agent.add(&sshd.user_key_path()).unwrap();
    let client = dial(&sshd, Auth::agent_at(agent.socket()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(
        client.exec("echo via agent").await.unwrap().stdout,
        b"via agent\n"
    );
}

#[tokio::test]
async fn encrypted_keys_of_every_type_with_the_right_and_wrong_passphrase() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let path = sshd.dir().join(format!("id_{kind}"));
        ssh_keygen(&path, kind, "open sesame").unwrap();
        sshd.authorize(&path.with_extension("pub")).unwrap();

        let client = dial(&sshd, Auth::key_file(&path, Some("open sesame")))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(
            client.exec("true").await.unwrap().status.success(),
            "{kind}"
        );

        let err = dial(&sshd, Auth::key_file(&path, Some("close sesame")))
            .await
            .unwrap_err();
        assert_eq!(err.phase(), Phase::Auth, "{kind}: {err}");
        assert!(
            err.is_invalid_input() && !err.is_auth_rejected(),
            "{kind}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && !msg.contains("sesame"),
            "{kind}: {msg}"
        );
        assert_eq!(
            err.remote_addr(),
            None,
            "{kind}: connected with an undecryptable key"
        );
    }
}

/// A key handed over as text (from a secrets manager) works as the file
/// does, and neither the key nor its passphrase reaches an error or Debug.
#[tokio::test]
async fn a_key_given_as_openssh_text_works_and_stays_secret() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let path = sshd.dir().join("id_text");
    ssh_keygen(&path, "ed25519", "open sesame").unwrap();
    sshd.authorize(&path.with_extension("pub")).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let auth = Auth::key_openssh(text.clone(), Some("open sesame"));
    assert!(!format!("{auth:?}").contains("sesame") && !format!("{auth:?}").contains("OPENSSH"));
    let client = dial(&sshd, auth).await.unwrap();
    assert!(client.exec("true").await.unwrap().status.success());
    let err = dial(&sshd, Auth::key_openssh(text, Some("close sesame")))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::Auth, "{err}");
    assert!(err.is_invalid_input(), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("sesame") && !shown.contains("OPENSSH"),
        "{shown}"
    );
}

#[tokio::test]
async fn methods_are_tried_in_order_within_one_deadline() {
    if !support::openssh(&["ssh-add", "ssh-agent", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let agent = SshAgent::start().unwrap();
    agent.add(&sshd.user_key_path()).unwrap();
    let auth = Auth::key_file(new_key(&sshd, "stranger"), None)
        .or(Auth::password("not-accepted-anyway"))
        .or(Auth::agent_at(agent.socket()));
    dial(&sshd, auth)
        .await
        .expect("the agent, third in line, gets in");
}

#[tokio::test]
async fn a_server_that_rejects_everything_lists_what_was_tried_and_skipped() {
    if !support::openssh(&["ssh-add", "ssh-agent", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let agent = SshAgent::start().unwrap();
    agent.add(&new_key(&sshd, "agent_stranger")).unwrap();
    let auth = Auth::key_file(new_key(&sshd, "stranger"), None)
        .or(Auth::agent_at(agent.socket()))
        .or(Auth::password("pw-4d1f-never-shown"));
    let err = dial(&sshd, auth).await.unwrap_err();
    assert_eq!(err.phase(), Phase::Auth);
    assert!(err.is_auth_rejected() && !err.is_timeout(), "{err}");
    let msg = err.to_string();
    // The sshd has `PasswordAuthentication no`: the password is not sent.
    assert!(
        msg.contains(
            "tried publickey (stranger), agent (1 keys); password not offered by the server"
        ),
        "{msg}"
    );
    assert!(
        sshd.log().contains("method publickey") && !sshd.log().contains("method password"),
        "{}",
        sshd.log()
    );
    assert!(msg.contains("server allows publickey"), "{msg}");
    assert!(
        !msg.contains("pw-4d1f") && !format!("{err:?}").contains("pw-4d1f"),
        "{msg}"
    );
}

#[tokio::test]
async fn no_agent_and_nothing_else_is_a_clear_error() {
    if !support::openssh(&["ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let err = dial(&sshd, Auth::agent_at(Path::new("/nonexistent/agent.sock")))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::Auth);
    assert!(err.is_invalid_input() && !err.is_auth_rejected(), "{err}");
    assert!(err.to_string().contains("agent unavailable"), "{err}");
}

#[tokio::test]
async fn the_dial_example_uses_the_agent_like_ssh() {
    if !support::openssh(&["ssh-add", "ssh-agent", "ssh-keygen", "sshd"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let agent = SshAgent::start().unwrap();
    agent.add(&sshd.user_key_path()).unwrap();
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    let home = tempfile::tempdir().unwrap(); // no ~/.ssh/id_* to fall back on
    let example = support::example("dial");
    let out = tokio::process::Command::new(&example)
        .arg("--known-hosts")
        .arg(&known)
        .arg(format!("{}@{}", sshd.user(), sshd.addr()))
        .args(["echo", "agent-ok"])
        .env("SSH_AUTH_SOCK", agent.socket())
        .env("HOME", home.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"agent-ok\n");

    // With a passphrase from the environment instead.
    let locked = sshd.dir().join("id_locked");
    ssh_keygen(&locked, "ed25519", "from-env").unwrap();
    sshd.authorize(&locked.with_extension("pub")).unwrap();
    let out = tokio::process::Command::new(&example)
        .arg("--known-hosts")
        .arg(&known)
        .arg("-i")
        .arg(&locked)
        .args(["--passphrase-env", "PP"])
        .arg(format!("{}@{}", sshd.user(), sshd.addr()))
        .arg("true")
        .env("PP", "from-env")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn dial_test_server(
    server: &TestServer,
    user: &str,
    auth: Auth,
) -> Result<ssh_dial::Client, DialError> {
    Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(server.host_keys())
        .build()
        .dial(server.addr(), user, auth)
        .await
}

#[tokio::test]
async fn a_password_answers_only_a_password_prompt() {
    let server = TestServer::builder()
        .keyboard_interactive("otp", &[&[("Verification code: ", false, "123456")]])
        .keyboard_interactive("pam", &[&[], &[("Password: ", false, "pw-9c1e")]])
        .keyboard_interactive(
            "two",
            &[&[
                ("Password: ", false, "pw-9c1e"),
                ("Duo passcode: ", false, "777"),
            ]],
        )
        .start()
        .unwrap();
    for user in ["otp", "two"] {
        let err = dial_test_server(&server, user, Auth::password("pw-9c1e"))
            .await
            .unwrap_err();
        assert_eq!(err.phase(), Phase::Auth);
        assert!(err.is_auth_rejected(), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("not a password prompt") && msg.contains("code") | msg.contains("Duo"),
            "{msg}"
        );
        assert!(!msg.contains("pw-9c1e") && !format!("{err:?}").contains("pw-9c1e"));
    }
    assert!(
        server.keyboard_answers().is_empty(),
        "the password went to a prompt that did not ask for it: {:?}",
        server.keyboard_answers()
    );
    // A PAM-style exchange: an empty round, then `Password: `.
    dial_test_server(&server, "pam", Auth::password("pw-9c1e"))
        .await
        .expect("the password answers a password prompt");
    // Other prompts are answered by the caller.
    let otp = Auth::keyboard_interactive(|challenge| {
        challenge
            .prompts()
            .iter()
            .map(|p| {
                p.text()
                    .contains("Verification code")
                    .then(|| "123456".to_owned())
            })
            .collect()
    });
    dial_test_server(&server, "otp", otp)
        .await
        .expect("the caller answers the code");
    let wrong = Auth::keyboard_interactive(|c| Some(vec!["000000".to_owned(); c.prompts().len()]));
    let err = dial_test_server(&server, "otp", wrong).await.unwrap_err();
    assert!(err.is_auth_rejected(), "{err}");
}

#[tokio::test]
async fn methods_the_server_does_not_offer_are_not_tried() {
    let key = ssh_dial::testing::ed25519_key().unwrap();
    let server = TestServer::builder()
        .authorized_key("u", key.public_key().clone())
        .start()
        .unwrap();
    dial_test_server(
        &server,
        "u",
        Auth::password("pw-never-sent").or(Auth::key(key)),
    )
    .await
    .expect("the key gets in");
    assert_eq!(server.auth_methods(), ["none", "publickey"]);
}
