//! What ssh-dial adds to a dial: a full dial (TCP connect, version
//! exchange, key exchange, password auth) through `Dialer::dial`, beside the
//! same dial done with bare `russh::client::connect_stream` on a plain
//! `TcpStream` (with the same `none` request before the password that
//! ssh-dial and OpenSSH send), against the same in-process russh server,
//! in one run.
//!
//! ```text
//! cargo bench --bench dial            # 20 rounds of 10 dials each way
//! cargo bench --bench dial -- 50      # rounds
//! ```
//!
//! The two alternate round by round, so that drift in the machine's load
//! falls on both; it prints the median dial of each and their ratio, which
//! is ssh-dial's overhead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh_dial::russh;
use ssh_dial::testing::TestServer;
use ssh_dial::{Auth, Dialer};

struct AcceptAny;

impl russh::client::Handler for AcceptAny {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

const PER_ROUND: usize = 10;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::main(worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let server = TestServer::builder()
        .password("bench", "bench")
        .start()
        .expect("server");
    let addr = server.addr();
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(server.host_keys())
        // As in russh's default config, so both sides do the same work.
        .ssh_keepalive_interval(None)
        .build();
    let config = Arc::new(russh::client::Config::default());
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..PER_ROUND {
            let start = Instant::now();
            let client = dialer
                .dial(addr, "bench", Auth::password("bench"))
                .await
                .expect("dial");
            ours.push(start.elapsed());
            drop(client);
        }
        for _ in 0..PER_ROUND {
            let start = Instant::now();
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let mut handle = russh::client::connect_stream(config.clone(), tcp, AcceptAny)
                .await
                .expect("handshake");
            // As ssh-dial (and OpenSSH) do: ask which methods the server
            // takes, then try the password.
            let none = handle.authenticate_none("bench").await.expect("auth none");
            assert!(!none.success());
            let ok = handle
                .authenticate_password("bench", "bench")
                .await
                .expect("auth");
            assert!(ok.success());
            bare.push(start.elapsed());
            drop(handle);
        }
    }
    let (ours, bare) = (median(ours), median(bare));
    println!(
        "dials: {} each way, alternating rounds of {PER_ROUND}",
        rounds * PER_ROUND
    );
    println!("ssh-dial     median {:>8.3} ms", ours.as_secs_f64() * 1e3);
    println!("bare russh   median {:>8.3} ms", bare.as_secs_f64() * 1e3);
    println!(
        "ratio        {:.2} (ssh-dial / bare russh)",
        ours.as_secs_f64() / bare.as_secs_f64()
    );
}
