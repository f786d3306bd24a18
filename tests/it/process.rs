//! Commands as processes: the `tokio::process` shape (quoted args, stdin by
//! choice, cancel-safe `wait` and `kill`, statuses that tell the server's
//! word from ours), output caps that keep the command running, memory
//! bounded before the command starts, and every channel closed whatever is
//! cancelled when, counted on the server. Against a real sshd where the
//! shell matters, the in-process server (with its channel-level
//! misbehaviour) otherwise.

use crate::support;

use std::time::{Duration, Instant};

use ssh_dial::testing::{Sshd, TestServer};
use ssh_dial::{Auth, Client, Dialer, EndReason, ExitStatus, Signal, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client of `server` (user `u`, password `p`).
async fn client_of(server: &TestServer) -> Client {
    Dialer::builder()
        .host_keys(server.host_keys())
        .exec_timeout(Duration::from_secs(10))
        .build()
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .unwrap()
}

fn server() -> TestServer {
    TestServer::builder().password("u", "p").start().unwrap()
}

/// The client's tasks are back to `tasks`, and its one socket to `sshd` is
/// all it holds there (commands use channels, never descriptors: a leaked
/// descriptor would be a leaked connection).
async fn assert_nothing_left(sshd: &Sshd, tasks: usize) {
    let back = support::wait_until(Duration::from_secs(2), || {
        support::alive_tasks() <= tasks && support::sockets_to(sshd.addr()).len() == 1
    })
    .await;
    assert!(
        back,
        "tasks {} (was {tasks}), sockets to sshd {}",
        support::alive_tasks(),
        support::sockets_to(sshd.addr()).len()
    );
}

fn printable(text: &str) -> bool {
    text.chars().all(|c| c == ' ' || c.is_ascii_graphic())
}

#[tokio::test]
async fn stdout_streams_and_stdin_reaches_the_command() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;

    let mut big = client
        .command("head -c 5000000 /dev/zero")
        .spawn()
        .await
        .unwrap();
    let stdout = big.stdout().unwrap();
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stdout.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 0));
        total += n;
    }
    assert_eq!(total, 5_000_000);
    assert_eq!(big.wait().await.unwrap(), ExitStatus::Code(0));

    let mut upper = client.command("tr a-z A-Z").spawn().await.unwrap();
    let mut stdin = upper.take_stdin().unwrap();
    stdin.write_all(b"hello, stdin\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let mut out = String::new();
    upper
        .take_stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert_eq!(out, "HELLO, STDIN\n");
    assert!(upper.wait().await.unwrap().success());
}

/// `exec` and `status` close stdin at once: a command that reads it ends
/// at once (`ssh host cat </dev/null`), as Go's `Session.Run` does.
#[tokio::test]
async fn a_command_that_reads_stdin_ends_at_once() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(
        &sshd,
        Dialer::builder().exec_timeout(Duration::from_secs(5)),
    )
    .await;
    let start = Instant::now();
    let out = client.exec("cat").await.unwrap();
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert!(client.command("cat").status().await.unwrap().success());
    let out = client.exec("read line; echo \"read: $?\"").await.unwrap();
    assert_eq!(out.stdout, b"read: 1\n");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn dropping_or_shutting_down_stdin_sends_eof() {
    let server = server();
    let client = client_of(&server).await;
    // Dropped.
    let mut cat = client.command("cat").spawn().await.unwrap();
    let mut stdin = cat.take_stdin().unwrap();
    stdin.write_all(b"dropped").await.unwrap();
    drop(stdin);
    let out = cat.wait_with_output().await.unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.status),
        (&b"dropped"[..], ExitStatus::Code(0))
    );
    // Shut down in place; writing after it fails.
    let mut cat = client.command("cat").spawn().await.unwrap();
    let stdin = cat.stdin().unwrap();
    stdin.write_all(b"shut").await.unwrap();
    stdin.shutdown().await.unwrap();
    assert!(stdin.write_all(b"more").await.is_err());
    let out = cat.wait_with_output().await.unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.status),
        (&b"shut"[..], ExitStatus::Code(0))
    );
    // Held and never written: wait closes it, as tokio's does.
    let mut cat = client.command("cat").spawn().await.unwrap();
    assert_eq!(cat.wait().await.unwrap(), ExitStatus::Code(0));
    assert!(support::wait_until(Duration::from_secs(2), || server.open_channels() == 0).await);
}

/// `wait` raced against a timer in a loop, as tokio users write it.
#[tokio::test]
async fn wait_and_kill_are_cancel_safe() {
    let server = server();
    let client = client_of(&server).await;
    let mut process = client.command("sleep 0.4; exit 3").spawn().await.unwrap();
    assert_eq!(process.try_wait().unwrap(), None);
    let mut ticks = 0;
    let status = loop {
        tokio::select! {
            status = process.wait() => break status.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(20)) => ticks += 1,
        }
    };
    assert_eq!(status, ExitStatus::Code(3));
    assert!(ticks >= 5, "{ticks}");
    assert_eq!(process.try_wait().unwrap(), Some(ExitStatus::Code(3)));

    let mut process = client.command("sleep 30").spawn().await.unwrap();
    // A kill cut short still kills; the next one waits for the end.
    let _ = tokio::time::timeout(Duration::ZERO, process.kill()).await;
    process.kill().await.unwrap();
    let status = process.wait().await.unwrap();
    assert_eq!(status.ended_by_us(), Some(EndReason::Kill), "{status}");
    assert!(support::wait_until(Duration::from_secs(2), || server.open_channels() == 0).await);
}

#[tokio::test]
async fn signals_reach_the_command_and_come_back_as_its_status() {
    let server = server();
    let client = client_of(&server).await;
    let mut process = client.command("sleep 30").spawn().await.unwrap();
    process.signal(Signal::Term).unwrap();
    let status = process.wait().await.unwrap();
    assert_eq!(status.signal(), Some("TERM"), "{status}");
    assert!(!status.core_dumped() && status.code().is_none());
}

#[tokio::test]
async fn past_the_cap_the_command_runs_on_and_keeps_its_status() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder().max_output(1 << 20)).await;
    // The default: drained and discarded past the cap, the real status.
    let out = client
        .exec("head -c 3000000 /dev/zero; echo done >&2; exit 7")
        .await
        .unwrap();
    assert!(
        out.truncated && out.stdout.len() == 1 << 20,
        "{}",
        out.stdout.len()
    );
    assert_eq!(
        (out.stderr.as_slice(), out.status),
        (&b"done\n"[..], ExitStatus::Code(7))
    );
    // Under the cap nothing is cut.
    let out = client.exec("head -c 1000 /dev/zero").await.unwrap();
    assert!(!out.truncated && out.stdout.len() == 1000 && out.status.success());
    // Ended at the cap only when asked, and said so.
    let start = Instant::now();
    let out = client
        .command("yes")
        .kill_at_max_output(true)
        .output()
        .await
        .unwrap();
    assert!(out.truncated && out.stdout.len() == 1 << 20);
    assert_eq!(out.status, ExitStatus::EndedByUs(EndReason::MaxOutput));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // A null stream is drained, never counted.
    let out = client
        .command("head -c 3000000 /dev/zero; echo ok >&2")
        .stdout(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.truncated && out.stdout.is_empty() && out.stderr == b"ok\n");
}

#[tokio::test]
async fn a_timeout_keeps_the_output_and_the_status_so_far() {
    let server = server();
    let client = client_of(&server).await;
    let err = client
        .command("echo partial; echo err >&2; sleep 5")
        .timeout(Duration::from_millis(300))
        .output()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let partial = err.partial_output().expect("partial output kept");
    assert_eq!(partial.stdout, b"partial\n");
    assert_eq!(partial.stderr, b"err\n");
    assert_eq!(partial.status, ExitStatus::EndedByUs(EndReason::Deadline));
    // The status came, EOF did not: the timeout keeps the status.
    let err = client
        .command("status-only 5")
        .timeout(Duration::from_millis(300))
        .output()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.partial_output().unwrap().status, ExitStatus::Code(5));
    // A channel closed without a status is an answer, not an error.
    let out = client.exec("echo x; close-without-status").await.unwrap();
    assert_eq!(out.status, ExitStatus::NotSent);
    assert_eq!(out.stdout, b"x\n");
    // Status and EOF without a close is over too.
    let out = client.exec("exit-no-close 4").await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(4));
    assert!(support::wait_until(Duration::from_secs(2), || server.open_channels() == 0).await);
}

#[tokio::test]
async fn a_timeout_says_what_became_of_the_channel() {
    let silent = TestServer::builder()
        .password("u", "p")
        .channel_open_delay(Duration::MAX)
        .start()
        .unwrap();
    let client = client_of(&silent).await;
    let start = Instant::now();
    let err = client
        .command("true")
        .timeout(Duration::from_millis(200))
        .output()
        .await
        .unwrap_err();
    assert!(
        err.is_timeout() && start.elapsed() < Duration::from_millis(400),
        "{err}"
    );
    assert!(
        err.to_string().contains("had not opened a channel"),
        "{err}"
    );

    let server = server();
    let client = client_of(&server).await;
    let err = client
        .command("no-reply")
        .timeout(Duration::from_millis(200))
        .output()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("before the server started the command; its channel's close was sent"),
        "{err}"
    );
    let err = client
        .command("sleep 5")
        .timeout(Duration::from_millis(200))
        .output()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the command was sent KILL and its channel's close was sent"),
        "{err}"
    );
    assert!(support::wait_until(Duration::from_secs(2), || server.open_channels() == 0).await);
    assert!(client.exec("true").await.unwrap().status.success());
}

/// An open the server confirms after the caller gave up (cancelled, timed
/// out, lost a `select!`) is closed when it is confirmed.
#[tokio::test]
async fn an_open_confirmed_after_the_caller_gave_up_is_closed() {
    let server = TestServer::builder()
        .password("u", "p")
        .channel_open_delay(Duration::from_millis(150))
        .start()
        .unwrap();
    let client = client_of(&server).await;
    let tasks = support::alive_tasks();
    let closed = |opened| {
        let server = &server;
        async move {
            let closed = support::wait_until(Duration::from_secs(3), || {
                server.channels_opened() == opened && server.open_channels() == 0
            })
            .await;
            assert!(
                closed,
                "opened {} (not {opened}), still open {}",
                server.channels_opened(),
                server.open_channels()
            );
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(20), client.exec("true"))
            .await
            .is_err()
    );
    closed(1).await;
    let err = client
        .command("true")
        .timeout(Duration::from_millis(20))
        .output()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("had not opened a channel"),
        "{err}"
    );
    closed(2).await;
    let mut command = client.command("true");
    tokio::select! {
        _ = command.spawn() => panic!("opened before the timer"),
        () = tokio::time::sleep(Duration::from_millis(20)) => {}
    }
    closed(3).await;
    assert!(support::wait_until(Duration::from_secs(2), || support::alive_tasks() <= tasks).await);
    // And the client is as good as new.
    assert!(client.exec("true").await.unwrap().status.success());
}

/// A dropped process whose kill_on_drop is off runs to its end, and its
/// channel closes then.
#[tokio::test]
async fn a_detached_process_runs_to_its_end() {
    let server = server();
    let client = client_of(&server).await;
    let start = Instant::now();
    let process = client
        .command("sleep 0.3")
        .kill_on_drop(false)
        .spawn()
        .await
        .unwrap();
    drop(process);
    assert!(support::wait_until(Duration::from_secs(3), || server.open_channels() == 0).await);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    // While the default kills at once.
    let start = Instant::now();
    drop(client.command("sleep 5").spawn().await.unwrap());
    assert!(support::wait_until(Duration::from_secs(3), || server.open_channels() == 0).await);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

/// Data a server sends before it answers the exec request, or without end
/// after, is kept to the cap: the client's RSS grows by at most twice the
/// cap. Measured in a child process, where no other test allocates.
#[test]
fn memory_stays_bounded_in_every_phase() {
    const TEST: &str = "memory_stays_bounded_in_every_phase";
    if let Ok(addr) = std::env::var("SSH_DIAL_FLOOD_ADDR") {
        let key = std::env::var("SSH_DIAL_FLOOD_KEY").unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        return runtime.block_on(flood_child(addr, key));
    }
    let server = server();
    let key = server.host_key().to_openssh().unwrap();
    let out = support::run_alone(
        TEST,
        &[
            ("SSH_DIAL_FLOOD_ADDR", server.addr().to_string()),
            ("SSH_DIAL_FLOOD_KEY", key),
        ],
    );
    assert!(out.contains("flood:"), "{out}");
    for line in out.lines().filter(|l| l.starts_with("flood:")) {
        println!("{line}");
    }
}

async fn flood_child(addr: String, key: String) {
    // The default cap. Beside the pipe, russh's queue for the channel
    // (up to 100 messages of 32 KiB while the data is on its way) and the
    // allocator's churn (gigabytes pass through in 32 KiB pieces on two
    // threads) take a few MiB: at a small cap that noise would be half the
    // bound; unbounded, the growth was a gigabyte in these 3 s.
    const CAP: usize = 16 << 20;
    let key = ssh_dial::russh::keys::PublicKey::from_openssh(&key).unwrap();
    let client = Dialer::builder()
        .host_keys(ssh_dial::HostKeys::pinned_keys([key]))
        .build()
        .dial(addr.as_str(), "u", Auth::password("p"))
        .await
        .unwrap();
    for command in ["flood-no-reply", "flood"] {
        let before = support::rss();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(before));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(support::rss(), std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let err = client
            .command(command)
            .max_output(CAP)
            .timeout(Duration::from_secs(3))
            .output()
            .await
            .unwrap_err();
        sampler.abort();
        assert!(err.is_timeout(), "{err}");
        let partial = err.partial_output().unwrap();
        assert!(
            partial.truncated && partial.stdout.len() == CAP,
            "{command}: kept {} truncated {}: {err}",
            partial.stdout.len(),
            partial.truncated
        );
        let growth = peak.load(std::sync::atomic::Ordering::Relaxed) - before;
        println!(
            "flood: {command}: RSS grew {} KiB with a {} KiB cap",
            growth >> 10,
            CAP >> 10
        );
        assert!(
            growth <= 2 * CAP,
            "{command}: RSS grew {growth} bytes, cap {CAP}"
        );
    }
}

/// Commands cancelled at random points (a seeded sweep of delays over
/// `output`, `status`, `spawn` and dropped processes) leave no command
/// running on sshd, no session slot taken (10 of 10 open under
/// `MaxSessions 10`), and no task or descriptor in the client.
#[tokio::test]
async fn cancelling_at_any_point_leaves_nothing_on_either_side() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::builder()
        .config_line("MaxSessions 10")
        .start()
        .unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let tasks = support::alive_tasks();
    let seed = std::env::var("SSH_DIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(17);
    // cat reads its stdin (held open) and then this file: a command that
    // runs until its channel closes, named so that it can be counted.
    let marker = format!("/nonexistent/ssh-dial-cancel-{}-{seed}", std::process::id());
    let line = format!("cat - {marker}");
    let mut rng = support::Rng(seed);
    for _ in 0..300 {
        let delay = Duration::from_micros(100 + rng.below(3000) as u64);
        let mut command = client.command(&line);
        command.stdin(Stdio::piped());
        match rng.below(4) {
            0 => {
                let _ = tokio::time::timeout(delay, command.output()).await;
            }
            1 => {
                tokio::select! {
                    _ = command.status() => {}
                    () = tokio::time::sleep(delay) => {}
                }
            }
            2 => {
                let _ = tokio::time::timeout(delay, command.spawn()).await;
            }
            _ => {
                if let Ok(Ok(process)) = tokio::time::timeout(delay, command.spawn()).await {
                    tokio::time::sleep(delay).await;
                    drop(process);
                }
            }
        }
    }
    let gone = support::wait_until(Duration::from_secs(5), || {
        support::processes_with(&marker) == 0
    })
    .await;
    assert!(
        gone,
        "{} commands still run on sshd",
        support::processes_with(&marker)
    );
    let mut held = Vec::new();
    for i in 0..10 {
        let process = client.command(&line).spawn().await;
        held.push(process.unwrap_or_else(|e| panic!("session {i} of 10: {e}\n{}", sshd.log())));
    }
    assert!(
        support::wait_until(Duration::from_secs(5), || support::processes_with(&marker)
            == 10)
        .await
    );
    drop(held);
    assert!(
        support::wait_until(Duration::from_secs(5), || support::processes_with(&marker)
            == 0)
        .await
    );
    assert_nothing_left(&sshd, tasks).await;
}

/// The same sweep against a server that confirms every channel late: each
/// channel it opens is closed.
#[tokio::test]
async fn cancelling_against_a_late_server_leaves_no_channel_open() {
    let server = TestServer::builder()
        .password("u", "p")
        .channel_open_delay(Duration::from_millis(2))
        .start()
        .unwrap();
    let client = client_of(&server).await;
    let tasks = support::alive_tasks();
    let mut rng = support::Rng(29);
    for _ in 0..200 {
        let delay = Duration::from_micros(100 + rng.below(5000) as u64);
        let mut command = client.command("cat");
        command.stdin(Stdio::piped());
        if rng.chance(50) {
            let _ = tokio::time::timeout(delay, command.output()).await;
        } else if let Ok(Ok(process)) = tokio::time::timeout(delay, command.spawn()).await {
            drop(process);
        }
    }
    let closed = support::wait_until(Duration::from_secs(5), || {
        server.open_channels() == 0 && support::alive_tasks() <= tasks
    })
    .await;
    assert!(
        closed,
        "{} of {} channels open, tasks {} (was {tasks})",
        server.open_channels(),
        server.channels_opened(),
        support::alive_tasks()
    );
    assert!(server.channels_opened() > 0);
}

#[tokio::test]
async fn dropped_and_timed_out_commands_free_their_session_slots() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    // The builder's lines come first, and sshd takes a keyword's first value.
    let sshd = Sshd::builder()
        .config_line("MaxSessions 10")
        .start()
        .unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let tasks = support::alive_tasks();
    // Commands that end when their channel closes (sshd keeps a session
    // until its command exits, and refuses signals to root logins).
    for i in 0..100 {
        let process = client.command("cat").spawn().await;
        let process = process.unwrap_or_else(|e| panic!("spawn {i}: {e}"));
        drop(process);
    }
    for i in 0..100 {
        let err = client
            .command("while echo tick; do sleep 0.05; done")
            .timeout(Duration::from_millis(20))
            .output()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "exec {i}: {err}");
    }
    assert_eq!(client.exec("echo free").await.unwrap().stdout, b"free\n");
    assert_nothing_left(&sshd, tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_process_stalls_neither_other_commands_nor_keepalive() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(
        &sshd,
        Dialer::builder()
            .ssh_keepalive_interval(Some(Duration::from_millis(250)))
            .ssh_keepalive_max(3),
    )
    .await;
    // Endless output nobody reads: kept running, its excess dropped.
    let mut unread = client
        .command("yes")
        .max_output(1 << 20)
        .timeout(None)
        .spawn()
        .await
        .unwrap();
    for _ in 0..5 {
        let out = client.exec("echo beside").await.unwrap();
        assert_eq!(out.stdout, b"beside\n");
    }
    // Keepalives (every 250 ms, 3 unanswered end the session) get through.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!client.is_closed(), "keepalive replies were stalled");
    // What it kept is bounded; reading, the reader is told where output
    // was dropped.
    let stdout = unread.stdout().unwrap();
    let mut kept = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let err = loop {
        match stdout.read(&mut buf).await {
            Ok(0) => panic!("the stream ended without reporting the drop"),
            Ok(n) => kept += n,
            Err(e) => break e,
        }
    };
    assert!(kept <= 1 << 20, "{kept}");
    assert!(err.to_string().contains("dropped"), "{err}");
    unread.kill().await.unwrap();
    assert!(client.exec("true").await.unwrap().status.success());
}

/// Each `arg` reaches the program as one word, whatever it holds; a
/// `raw_arg` is the shell's to interpret.
#[tokio::test]
async fn arguments_reach_the_program_one_word_each() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let touched = sshd.dir().join("touched");
    let injection = format!("$(touch {})", touched.display());
    let words = [
        "a b",
        "it's",
        injection.as_str(),
        "`touch x`",
        "${IFS}",
        "-n",
        "",
        "~",
        "*",
        "a\nb",
        "\\",
        "\"q\"",
        ";|&<>",
        "=ls",
        "é ü",
    ];
    let out = client
        .command("printf '%s\\n'")
        .args(words)
        .output()
        .await
        .unwrap();
    let expected: String = words.iter().map(|w| format!("{w}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert!(!touched.exists());
    let out = client
        .command("echo")
        .raw_arg("$((1+2))")
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"3\n");
}

/// Variables the server's `AcceptEnv` refuses (sshd's default) are set by
/// the shell instead; `current_dir` runs the command there.
#[tokio::test]
async fn env_and_current_dir_work_whatever_accept_env_says() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let dir = sshd.dir().join("a dir; with 'quotes'");
    std::fs::create_dir(&dir).unwrap();
    let out = client
        .command("printf '%s|%s' \"$SSH_DIAL_A\" \"$PWD\"")
        .env("SSH_DIAL_A", "x y'z $(nope)")
        .current_dir(dir.to_str().unwrap())
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("x y'z $(nope)|{}", dir.display())
    );
    // A name the shell cannot set is refused, with what was refused.
    let err = client
        .command("true")
        .env("A-B", "1")
        .output()
        .await
        .unwrap_err();
    assert!(
        err.is_refused() && err.to_string().contains("environment variable"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_input_and_refused_requests_are_clear_errors() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let err = client.exec("echo a\0b").await.unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    let err = client
        .command("echo")
        .arg("a\0b")
        .output()
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    let err = client.exec("  ").await.unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    let err = client
        .command("true")
        .current_dir("/tmp\0x")
        .output()
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    let err = client
        .command("true")
        .pty("xterm", 0, 24)
        .output()
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    let err = client
        .command("true")
        .env("", "x")
        .output()
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    // A terminal works, and the client is still fine.
    let out = client
        .command("tty")
        .pty("xterm", 80, 24)
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("/dev/"),
        "{out:?}"
    );
    assert!(client.exec("true").await.unwrap().status.success());
}

/// A command that never reads its input stops the writer (the SSH window
/// fills), but not past the command's deadline.
#[tokio::test]
async fn a_writer_to_a_command_that_does_not_read_stops_at_the_deadline() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder()).await;
    let mut process = client
        .command("sleep 5")
        .timeout(Duration::from_millis(800))
        .spawn()
        .await
        .unwrap();
    let mut stdin = process.take_stdin().unwrap();
    let start = Instant::now();
    let err = stdin.write_all(&vec![7u8; 64 << 20]).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(process.wait().await.unwrap_err().is_timeout());
    assert!(client.exec("true").await.unwrap().status.success());
}

/// Every process error is one line of printable ASCII, and none hands raw
/// peer text on through `source()`.
#[tokio::test]
async fn every_process_error_is_printable_and_has_no_raw_source() {
    let silent = TestServer::builder()
        .password("u", "p")
        .channel_open_delay(Duration::MAX)
        .start()
        .unwrap();
    let server = server();
    let client = client_of(&server).await;
    let quick = Duration::from_millis(100);
    let mut errors = vec![
        client
            .command("no-reply")
            .timeout(quick)
            .output()
            .await
            .unwrap_err(),
        client
            .command("sleep 5")
            .timeout(quick)
            .output()
            .await
            .unwrap_err(),
        client.exec("a\0b").await.unwrap_err(),
        client_of(&silent)
            .await
            .command("true")
            .timeout(quick)
            .output()
            .await
            .unwrap_err(),
    ];
    let gone = client_of(&server).await;
    let mut running = gone.command("sleep 5").spawn().await.unwrap();
    drop(server);
    errors.push(running.wait().await.unwrap_err());
    errors.push(gone.exec("true").await.unwrap_err());
    for e in &errors {
        let mut cause: Option<&dyn std::error::Error> = Some(e);
        let mut depth = 0;
        while let Some(c) = cause {
            assert!(printable(&c.to_string()), "{c}");
            cause = c.source();
            depth += 1;
        }
        assert_eq!(depth, 1, "{e}");
        assert!(!format!("{e:?}").contains('\n'), "{e:?}");
    }
}
