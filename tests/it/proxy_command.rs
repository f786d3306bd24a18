//! `ProxyCommand`: a local command's stdin and stdout as the connection,
//! through real OpenSSH (`ssh -W` through a bastion sshd, `nc` to an sshd),
//! and hostile commands (silent, deaf, babbling, dying, forking) that must
//! each end by the deadline with the phase and their stderr, leaving no
//! process, no zombie, no task and no descriptor.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use ssh_dial::testing::{Sshd, TestServer};
use ssh_dial::{Auth, Dialer, HostKeys, JumpHost, Phase, SshConfig};

const DEADLINE: Duration = Duration::from_millis(500);
/// How far past the deadline a dial may return here: the dials measure a
/// few milliseconds (see the closing note of the issue), with room for a
/// loaded CI machine.
const SLACK: Duration = Duration::from_millis(100);

/// A ProxyCommand that runs `ssh -W %h:%p` through `bastion`, with nothing
/// from the environment (no agent, no user config), carrying `marker` in
/// its command line.
fn ssh_w(bastion: &Sshd, known_hosts: &Path, marker: &str) -> String {
    format!(
        "ssh -F none -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none \
         -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o SendEnv={marker} \
         -i {} -p {} -W %h:%p {}@127.0.0.1",
        known_hosts.display(),
        bastion.user_key_path().display(),
        bastion.addr().port(),
        bastion.user(),
    )
}

/// Two sshds that let each other's user key in, and a known_hosts file
/// that trusts both.
fn bastion_and_target() -> (Sshd, Sshd, std::path::PathBuf) {
    let (bastion, target) = (Sshd::start().unwrap(), Sshd::start().unwrap());
    for s in [&bastion, &target] {
        for other in [&bastion, &target] {
            s.authorize(&other.user_key_path().with_extension("pub"))
                .unwrap();
        }
    }
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
    (bastion, target, known)
}

#[tokio::test]
async fn ssh_w_through_a_real_bastion_carries_the_dial() {
    if !support::openssh(&["sshd", "ssh-keygen", "ssh"]) {
        return;
    }
    let (bastion, target, known) = bastion_and_target();
    let marker = "SSH_DIAL_MARK_SSH_W";
    let cfg = target
        .write_file(
            "config",
            &format!(
                "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  \
                 ProxyCommand {}\n  UserKnownHostsFile {}\n  IdentityFile {}\n  \
                 IdentityAgent none\n",
                target.addr().port(),
                target.user(),
                ssh_w(&bastion, &known, marker),
                known.display(),
                target.user_key_path().display(),
            ),
        )
        .unwrap();
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .ssh_config(SshConfig::load(&cfg).unwrap())
        .build();
    let client = dialer
        .dial_alias("target")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", bastion.log()));
    assert_eq!(client.remote_addr(), None);
    let out = client.exec("echo through the proxy").await.unwrap();
    assert_eq!(out.stdout, b"through the proxy\n");
    // The bastion carried it: its sshd opened the direct-tcpip channel.
    assert!(bastion.log().contains("direct-tcpip"), "{}", bastion.log());
    assert_eq!(support::processes_with(marker), 1, "the ssh -W runs");
    client.close().await;
    assert!(
        support::wait_until(Duration::from_secs(5), || support::processes_with(marker)
            == 0)
        .await,
        "the ssh -W outlived its client"
    );
}

#[tokio::test]
async fn nc_to_a_real_sshd_carries_the_dial_and_the_builder_names_it() {
    if !support::openssh(&["sshd", "ssh-keygen", "nc"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let known = sshd
        .write_file("known_hosts", &sshd.known_hosts_line())
        .unwrap();
    // The builder's command, tokens from the dial: %h and %p are the
    // target's, and the host key is checked under its name.
    let client = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(HostKeys::known_hosts(&known))
        .proxy_command("nc %h %p")
        .build()
        .dial(sshd.addr(), sshd.user(), Auth::key(sshd.user_key().clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(client.exec("echo nc").await.unwrap().stdout, b"nc\n");
    client.close().await;

    // A wrong host key is refused through a ProxyCommand as over TCP.
    let other = Sshd::start().unwrap();
    let wrong = sshd
        .write_file(
            "known_hosts_wrong",
            &sshd
                .known_hosts_line()
                .replace(sshd.host_key(), other.host_key()),
        )
        .unwrap();
    let err = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(HostKeys::known_hosts(&wrong))
        .proxy_command("nc %h %p")
        .build()
        .dial(sshd.addr(), sshd.user(), Auth::key(sshd.user_key().clone()))
        .await
        .unwrap_err();
    assert!(err.is_host_key_mismatch(), "{err}");
}

/// One hostile command: what it is, the marker every process it starts
/// carries, and what the dial must say.
struct Hostile {
    command: &'static str,
    marker: &'static str,
    /// Whether the dial must run to its deadline (else it fails early).
    times_out: bool,
    /// What its stderr must show in the error.
    stderr: Option<&'static str>,
}

const HOSTILE: &[Hostile] = &[
    // Waits for a connection that never comes.
    Hostile {
        command: "sleep 7001.5",
        marker: "7001.5",
        times_out: true,
        stderr: None,
    },
    // Reads everything, answers nothing.
    Hostile {
        command: "sh -c 'cat >/dev/null; :' deaf-7002",
        marker: "deaf-7002",
        times_out: true,
        stderr: None,
    },
    // Says it is connecting, then stalls.
    Hostile {
        command: "sh -c 'echo connecting to bastion-7003... >&2; exec sleep 7003.5'",
        marker: "bastion-7003",
        times_out: true,
        stderr: Some("connecting to bastion-7003..."),
    },
    // Writes garbage without end.
    Hostile {
        command: "yes garbage-7004",
        marker: "garbage-7004",
        times_out: false,
        stderr: None,
    },
    // Exits at once, saying why.
    Hostile {
        command: "sh -c 'echo kex: no route to host-7005 >&2; exit 255'",
        marker: "host-7005",
        times_out: false,
        stderr: Some("kex: no route to host-7005"),
    },
    // Leaves a child in the background and stalls: the whole group dies.
    Hostile {
        command: "sleep 7006.5 & exec sleep 7006.25",
        marker: "7006.",
        times_out: true,
        stderr: None,
    },
];

/// Every hostile command ends by the deadline (or at once), with the phase
/// and its stderr, and leaves nothing: no process of its group, no zombie,
/// no task, no descriptor.
#[test]
fn hostile_commands_end_by_the_deadline_leaving_nothing() {
    support::counting_fds(true, || async {
        let tasks = support::alive_tasks();
        let fds = support::open_fds();
        for case in HOSTILE {
            let dialer = Dialer::builder()
                .timeout(DEADLINE)
                .host_keys(HostKeys::insecure_accept_any())
                .proxy_command(case.command)
                .build();
            let started = Instant::now();
            let err = dialer
                .dial("db.internal:22", "deploy", Auth::password("pw"))
                .await
                .unwrap_err();
            let took = started.elapsed();
            let what = case.command;
            eprintln!(
                "{what}: {took:?} ({:?} past the deadline): {err}",
                took.saturating_sub(DEADLINE)
            );
            assert!(took <= DEADLINE + SLACK, "{what}: {took:?}: {err}");
            if case.times_out {
                assert!(err.is_timeout(), "{what}: {err}");
                assert!(took >= DEADLINE, "{what}: {took:?}");
                assert!(
                    matches!(err.phase(), Phase::VersionExchange),
                    "{what}: {err}"
                );
            } else {
                assert!(!err.is_timeout(), "{what}: {err}");
                assert!(took < DEADLINE, "{what}: {took:?}");
            }
            match case.stderr {
                Some(text) => {
                    assert_eq!(err.proxy_command_stderr(), Some(text), "{what}: {err}");
                    assert!(
                        err.to_string()
                            .ends_with(&format!("(ProxyCommand stderr: {text})")),
                        "{err}"
                    );
                }
                None => assert_eq!(err.proxy_command_stderr(), None, "{what}: {err}"),
            }
            assert!(
                support::wait_until(Duration::from_secs(2), || support::processes_with(
                    case.marker
                ) == 0
                    && support::zombie_children() == 0)
                .await,
                "{what}: {} processes left, {} zombies",
                support::processes_with(case.marker),
                support::zombie_children()
            );
        }
        support::back_to_baseline(tasks, fds, "after the dials").await;
    });
}

/// 1,000 dials through a command that exits at once leave no zombie, no
/// task and no descriptor.
#[test]
fn a_thousand_dials_leave_no_zombie() {
    support::counting_fds(true, || async {
        let tasks = support::alive_tasks();
        let fds = support::open_fds();
        let dialer = Dialer::builder()
            .timeout(Duration::from_secs(5))
            .host_keys(HostKeys::insecure_accept_any())
            .proxy_command("sh -c 'echo gone >&2; exit 1'")
            .build();
        for i in 0..1000 {
            let err = dialer
                .dial("db.internal:22", "deploy", Auth::password("pw"))
                .await
                .unwrap_err();
            assert!(err.is_closed(), "dial {i}: {err}");
            assert_eq!(err.proxy_command_stderr(), Some("gone"), "dial {i}: {err}");
        }
        assert!(
            support::wait_until(Duration::from_secs(5), || support::zombie_children() == 0
                && support::alive_tasks() <= tasks
                && support::open_fds() <= fds)
            .await,
            "zombies {}, tasks {} (was {tasks}), fds {} (was {fds})",
            support::zombie_children(),
            support::alive_tasks(),
            support::open_fds()
        );
    });
}

/// Dropping the dial while its command runs kills the command's group.
#[test]
fn a_dropped_dial_kills_its_command() {
    support::counting_fds(true, || async {
        let tasks = support::alive_tasks();
        let fds = support::open_fds();
        // Before the banner, in our read ahead of russh.
        let dialer = Dialer::builder()
            .timeout(Duration::from_secs(60))
            .host_keys(HostKeys::insecure_accept_any())
            .proxy_command("sleep 7201.5 & exec sleep 7201.25")
            .build();
        let mut dial = Box::pin(dialer.dial("db.internal:22", "u", Auth::password("p")));
        let running = async {
            while support::processes_with("7201.") < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            r = &mut dial => panic!("the dial ended: {:?}", r.err()),
            () = running => {}
        }
        drop(dial);
        assert!(
            support::wait_until(Duration::from_secs(2), || support::processes_with("7201.")
                == 0
                && support::zombie_children() == 0)
            .await,
            "the command outlived its dropped dial"
        );
        support::back_to_baseline(tasks, fds, "after the dials").await;
    });
}

/// `ssh` runs `exec COMMAND`, so only the first command of a list runs
/// (what follows `;` never does): ssh-dial too.
#[tokio::test]
async fn only_the_first_command_of_a_list_runs_as_in_ssh() {
    let err = Dialer::builder()
        .timeout(DEADLINE)
        .proxy_command("echo first-7501 >&2; echo second-7501 >&2")
        .build()
        .dial("db:22", "u", Auth::password("p"))
        .await
        .unwrap_err();
    assert!(err.is_closed(), "{err}");
    assert_eq!(err.proxy_command_stderr(), Some("first-7501"), "{err}");
}

/// A dial dropped in key exchange, carried by a command that relays to a
/// server that stalls after its banner: the command dies with the dial.
#[test]
fn a_dial_dropped_in_key_exchange_kills_its_command() {
    use ssh_dial::testing::{MisbehavingServer, Mode};
    support::counting_fds(true, || async {
        let server = MisbehavingServer::start(Mode::StallAfterKexInit).unwrap();
        let tasks = support::alive_tasks();
        let fds = support::open_fds();
        let relay = "bash -c 'exec 3<>/dev/tcp/%h/%p; cat <&3 & cat >&3' relay-7301";
        let dialer = Dialer::builder()
            .timeout(Duration::from_secs(60))
            .host_keys(HostKeys::insecure_accept_any())
            .proxy_command(relay)
            .build();
        let mut dial = Box::pin(dialer.dial(server.addr(), "u", Auth::password("p")));
        // Past the banner: the command's stderr reader and russh's session
        // task are running, so the relay carried the banner and key
        // exchange has begun (the server stalls after its KEXINIT).
        let exchanging = async {
            while support::alive_tasks() < tasks + 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            r = &mut dial => panic!("the dial ended: {:?}", r.err()),
            () = exchanging => {}
        }
        drop(dial);
        assert!(
            support::wait_until(Duration::from_secs(2), || support::processes_with(
                "relay-7301"
            ) == 0
                && support::zombie_children() == 0)
            .await,
            "the relay outlived its dropped dial"
        );
        support::back_to_baseline(tasks, fds, "after the dials").await;
    });
}

#[tokio::test]
async fn commands_that_may_not_run_are_refused_before_running() {
    let dial = |cfg: &str| {
        let cfg = SshConfig::parse(cfg).unwrap();
        async move {
            Dialer::builder()
                .timeout(DEADLINE)
                .host_keys(HostKeys::insecure_accept_any())
                .ssh_config(cfg)
                .build()
                .dial("evil", "u", Auth::password("p"))
                .await
                .unwrap_err()
        }
    };
    // A HostName a shell would read as a command, in %h.
    let err =
        dial("Host evil\n  HostName x;touch${IFS}/tmp/pwned7401\n  ProxyCommand nc %h %p\n").await;
    assert!(err.is_invalid_input(), "{err}");
    assert!(!Path::new("/tmp/pwned7401").exists());
    // A user a shell would read as a command, in %r.
    let err = Dialer::builder()
        .proxy_command("ssh -l %r -W %h:%p bastion")
        .build()
        .dial("db:22", "$(touch${IFS}/tmp/pwned7402)", Auth::password("p"))
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(!Path::new("/tmp/pwned7402").exists());
    // A token ProxyCommand does not take.
    let err = dial("Host evil\n  ProxyCommand nc %h %p %C\n").await;
    assert!(err.is_invalid_input(), "{err}");
    // Fd passing, and `-` (ssh's own stdin and stdout).
    let err = dial("Host evil\n  ProxyCommand nc %h %p\n  ProxyUseFdpass yes\n").await;
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains("ProxyUseFdpass"), "{err}");
    let err = dial("Host evil\n  ProxyCommand -\n").await;
    assert!(err.is_invalid_input(), "{err}");
    // ProxyCommand and ProxyJump both given to the builder: as ssh.
    let err = Dialer::builder()
        .proxy_command("nc %h %p")
        .proxy_jump([JumpHost::parse("bastion").unwrap()])
        .build()
        .dial("db:22", "u", Auth::password("p"))
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains("inconsistent options"), "{err}");
}

/// `-o ProxyCommand=…` wins over the file's ProxyJump for the target, as
/// the first value obtained does in `ssh`: the dial goes straight through
/// the command, never to the (stalled) bastion.
#[tokio::test]
async fn an_option_proxy_command_wins_over_the_files_proxy_jump() {
    let server = TestServer::builder().password("u", "p").start().unwrap();
    let cfg = SshConfig::parse("Host db\n  HostName 127.0.0.1\n  ProxyJump 192.0.2.1\n")
        .unwrap()
        .with_option(&format!(
            "ProxyCommand=bash -c 'exec 3<>/dev/tcp/%h/{}; cat <&3 & cat >&3'",
            server.addr().port()
        ))
        .unwrap();
    let client = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(server.host_keys())
        .ssh_config(cfg)
        .build()
        .dial("db", "u", Auth::password("p"))
        .await
        .unwrap();
    assert_eq!(client.remote_addr(), None);
    assert!(client.jump_host().is_none());
    client.close().await;
}
