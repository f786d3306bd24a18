//! Keepalive, TCP_USER_TIMEOUT and TCP_NODELAY, read back from the live socket.

use std::time::Duration;

use crate::support::sockets_to;
use ssh_dial::testing::SocketOptions;
use ssh_dial::testing::TestServer;
use ssh_dial::{Auth, Dialer};

async fn options_of(dialer: Dialer) -> SocketOptions {
    let server = TestServer::builder().password("u", "p").start().unwrap();
    let client = dialer
        .dial(server.addr(), "u", Auth::password("p"))
        .await
        .unwrap();
    let fds = sockets_to(server.addr());
    assert_eq!(fds.len(), 1, "exactly the client's socket");
    // SAFETY: the client holds this socket open for the borrow.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fds[0]) };
    let options = SocketOptions::read(&fd).unwrap();
    drop(client);
    options
}

#[tokio::test]
async fn defaults_are_set_on_the_live_socket() {
    let server_keys = ssh_dial::HostKeys::insecure_accept_any();
    let o = options_of(Dialer::builder().host_keys(server_keys).build()).await;
    assert_eq!(
        o,
        SocketOptions {
            keepalive: true,
            keepalive_time: Some(Duration::from_secs(15)),
            keepalive_interval: Some(Duration::from_secs(5)),
            keepalive_retries: Some(3),
            user_timeout: Some(Duration::from_secs(30)),
            nodelay: true,
        }
    );
}

#[tokio::test]
async fn custom_values_are_set_on_the_live_socket() {
    let o = options_of(
        Dialer::builder()
            .host_keys(ssh_dial::HostKeys::insecure_accept_any())
            .tcp_keepalive(Some(Duration::from_secs(7)))
            .tcp_keepalive_interval(Some(Duration::from_secs(2)))
            .tcp_keepalive_retries(Some(4))
            .tcp_user_timeout(Some(Duration::from_millis(12_500)))
            .tcp_nodelay(false)
            .build(),
    )
    .await;
    assert!(o.keepalive && !o.nodelay);
    assert_eq!(o.keepalive_time, Some(Duration::from_secs(7)));
    assert_eq!(o.keepalive_interval, Some(Duration::from_secs(2)));
    assert_eq!(o.keepalive_retries, Some(4));
    assert_eq!(o.user_timeout, Some(Duration::from_millis(12_500)));
}

#[tokio::test]
async fn keepalive_off_means_off_and_user_timeout_follows() {
    let o = options_of(
        Dialer::builder()
            .host_keys(ssh_dial::HostKeys::insecure_accept_any())
            .tcp_keepalive(None)
            .build(),
    )
    .await;
    assert!(!o.keepalive);
    assert_eq!(o.user_timeout, None);
}
