//! Commands under their own deadlines; closing and dropping clients.

use std::time::{Duration, Instant};

use crate::support::{alive_tasks, sockets_to, wait_until};
use ssh_dial::testing::TestServer;
use ssh_dial::{Auth, Client, Dialer, ExitStatus};

async fn connect(server: &TestServer, exec_timeout: Option<Duration>) -> Client {
    Dialer::builder()
        .timeout(Duration::from_secs(5))
        .exec_timeout(exec_timeout)
        .host_keys(server.host_keys())
        .build()
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .expect("dial")
}

fn server() -> TestServer {
    TestServer::builder().password("u", "p").start().unwrap()
}

#[tokio::test]
async fn exec_past_its_deadline_times_out_and_the_client_stays_usable() {
    let server = server();
    let client = connect(&server, Some(Duration::from_millis(300))).await;
    let start = Instant::now();
    let err = client.exec("sleep 5").await.unwrap_err();
    let took = start.elapsed();
    assert!(err.is_timeout() && !err.is_closed(), "{err}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(800),
        "{took:?}"
    );
    assert!(err.to_string().contains("timed out after 0.3"), "{err}");
    assert!(err.to_string().contains("close was sent"), "{err}");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::TimedOut
    );

    let out = client.exec("echo still here").await.unwrap();
    assert_eq!(out.stdout, b"still here\n");
}

#[tokio::test]
async fn per_call_timeout_overrides_the_dialer_default() {
    let server = server();
    let client = connect(&server, Some(Duration::from_millis(100))).await;
    let out = client
        .command("sleep 0.3; echo done")
        .timeout(Duration::from_secs(5))
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"done\n");
    let err = client
        .command("sleep 5")
        .timeout(Duration::from_millis(200))
        .output()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
}

#[tokio::test]
async fn exit_codes_signals_and_stderr_are_kept_apart() {
    let server = server();
    let client = connect(&server, None).await;
    let out = client.exec("echo out; echo err >&2; exit 0").await.unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    assert!(out.status.success());
    let out = client.exec("nosuchcommand").await.unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(out.stderr, b"sh: nosuchcommand: not found\n");
    let out = client.exec("kill KILL").await.unwrap();
    assert_eq!(
        out.status,
        ExitStatus::Signal {
            name: "KILL".into(),
            core_dumped: false
        }
    );
    assert_eq!(out.status.code(), None);
}

#[tokio::test]
async fn concurrent_execs_share_one_client() {
    let server = server();
    let client = connect(&server, Some(Duration::from_secs(5))).await;
    let (a, b, c) = tokio::join!(
        client.exec("sleep 0.2; echo a"),
        client.exec("echo b"),
        client.exec("exit 3")
    );
    assert_eq!(a.unwrap().stdout, b"a\n");
    assert_eq!(b.unwrap().stdout, b"b\n");
    assert_eq!(c.unwrap().status.code(), Some(3));
}

#[tokio::test(flavor = "current_thread")]
async fn close_is_bounded_and_leaves_nothing() {
    let server = server();
    let tasks_before = alive_tasks();
    let client = connect(&server, None).await;
    assert_eq!(sockets_to(server.addr()).len(), 1);
    assert!(
        alive_tasks() > tasks_before,
        "the session task runs while connected"
    );
    let start = Instant::now();
    client.close().await;
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(alive_tasks(), tasks_before, "session task left after close");
    assert!(
        sockets_to(server.addr()).is_empty(),
        "socket left after close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_client_with_an_open_channel_ends_the_session() {
    let server = server();
    let tasks_before = alive_tasks();
    let client = connect(&server, None).await;
    // A channel opened through the russh handle, running a command: it
    // holds a sender into the session, which alone would keep russh's
    // session task alive.
    let mut channel = client.handle().channel_open_session().await.unwrap();
    channel.exec(true, "sleep 3600").await.unwrap();
    loop {
        match channel.wait().await {
            Some(ssh_dial::russh::ChannelMsg::Success) => break,
            Some(_) => continue,
            None => panic!("channel closed before the command started"),
        }
    }
    drop(client);
    let addr = server.addr();
    assert!(
        wait_until(Duration::from_secs(2), || sockets_to(addr).is_empty()).await,
        "socket left"
    );
    assert!(
        wait_until(Duration::from_secs(2), || alive_tasks() <= tasks_before).await,
        "task left"
    );
    assert!(
        channel.wait().await.is_none(),
        "the channel ends with the session"
    );
}

#[tokio::test]
async fn exec_on_a_closed_session_says_so() {
    let server = server();
    let client = connect(&server, Some(Duration::from_secs(2))).await;
    drop(server); // the server goes away, closing its side
    assert!(wait_until(Duration::from_secs(2), || client.is_closed()).await);
    let err = client.exec("true").await.unwrap_err();
    assert!(err.is_closed() && !err.is_timeout(), "{err}");
}

#[tokio::test]
async fn a_status_and_eof_end_the_command_without_the_servers_close() {
    let server = server();
    let client = connect(&server, Some(Duration::from_secs(10))).await;
    let start = Instant::now();
    let out = client.exec("echo hi; exit-no-close 3").await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.status, ExitStatus::Code(3));
    // The client closed the channel: it goes on working.
    assert!(client.exec("true").await.unwrap().status.success());
}
