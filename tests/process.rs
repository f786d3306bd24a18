//! Commands as processes: streamed output, stdin, output caps, partial output
//! on timeout, every channel closed, and one slow reader never stalling the
//! session. Against a real sshd where the shell matters, the in-process
//! server otherwise.

mod support;

use std::time::{Duration, Instant};

use ssh_dial::testing::{Sshd, TestServer};
use ssh_dial::{Auth, Dialer, ExitStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    let mut stdout = big.stdout().unwrap();
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

    let mut cat = client.command("tr a-z A-Z").spawn().await.unwrap();
    let mut stdin = cat.take_stdin().unwrap();
    stdin.write_all(b"hello, stdin\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let mut out = String::new();
    cat.stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert_eq!(out, "HELLO, STDIN\n");
    assert!(cat.wait().await.unwrap().success());
}

#[tokio::test]
async fn exec_keeps_at_most_the_cap_and_says_it_cut() {
    if !support::openssh(&["sshd", "ssh-keygen"]) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let client = support::connect_sshd(&sshd, Dialer::builder().max_output(Some(1 << 20))).await;
    let start = Instant::now();
    // Endless output: the cap ends it.
    let out = client.exec("yes").await.unwrap();
    assert!(out.truncated);
    assert_eq!(out.stdout.len(), 1 << 20);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // Under the cap nothing is cut.
    let out = client.exec("head -c 1000 /dev/zero").await.unwrap();
    assert!(!out.truncated && out.stdout.len() == 1000 && out.status.success());
    // Kept running past the cap when asked, the rest discarded.
    let out = client
        .command("head -c 3000000 /dev/zero; echo done >&2")
        .keep_running_past_max_output(true)
        .output()
        .await
        .unwrap();
    assert!(out.truncated && out.stdout.len() == 1 << 20);
    assert_eq!(out.stderr, b"done\n");
    assert!(out.status.success());
}

#[tokio::test]
async fn a_timeout_keeps_the_output_so_far() {
    let server = TestServer::builder().password("u", "p").start().unwrap();
    let client = Dialer::builder()
        .host_keys(server.host_keys())
        .build()
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .unwrap();
    let err = client
        .exec_with_timeout(
            "echo partial; echo err >&2; sleep 5",
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let partial = err.partial_output().expect("partial output kept");
    assert_eq!(partial.stdout, b"partial\n");
    assert_eq!(partial.stderr, b"err\n");
    // A channel closed without a status is an answer, not an error.
    let out = client.exec("echo x; close-without-status").await.unwrap();
    assert_eq!(out.status, ExitStatus::NotSent);
    assert_eq!(out.stdout, b"x\n");
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
    let (tasks, fds) = (support::alive_tasks(), support::open_fds());
    // Commands that end when their channel closes (sshd keeps a session
    // until its command exits, and refuses signals to root logins).
    for i in 0..100 {
        let process = client.command("cat").spawn().await;
        let process = process.unwrap_or_else(|e| panic!("spawn {i}: {e}"));
        drop(process);
    }
    for i in 0..100 {
        let err = client
            .exec_with_timeout(
                "while echo tick; do sleep 0.05; done",
                Some(Duration::from_millis(20)),
            )
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "exec {i}: {err}");
    }
    assert_eq!(client.exec("echo free").await.unwrap().stdout, b"free\n");
    // Every pump task has ended; no descriptor is left.
    assert!(
        support::wait_until(Duration::from_secs(2), || support::alive_tasks() <= tasks
            && support::open_fds() <= fds)
        .await,
        "tasks {} (was {tasks}), fds {} (was {fds})",
        support::alive_tasks(),
        support::open_fds()
    );
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
    // Endless output nobody reads; kept running, its excess dropped.
    let mut unread = client
        .command("yes")
        .max_output(Some(1 << 20))
        .keep_running_past_max_output(true)
        .timeout(None)
        .spawn()
        .await
        .unwrap();
    for _ in 0..5 {
        let out = client
            .exec_with_timeout("echo beside", Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"beside\n");
    }
    // Keepalives (every 250 ms, 3 unanswered end the session) get through.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!client.is_closed(), "keepalive replies were stalled");
    // What it kept is bounded; reading, the reader is told where output
    // was dropped.
    let mut stdout = unread.stdout().unwrap();
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
    unread.kill().await;
    assert!(client.exec("true").await.unwrap().status.success());
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
    // sshd accepts only the variables AcceptEnv lists (none here).
    let err = client
        .command("true")
        .env("SSH_DIAL_TEST", "1")
        .output()
        .await
        .unwrap_err();
    assert!(err.is_refused(), "{err}");
    assert!(err.to_string().contains("SSH_DIAL_TEST"), "{err}");
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
        .timeout(Some(Duration::from_millis(800)))
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
