//! What ssh-dial adds to a dial: a full dial (TCP connect, version
//! exchange, key exchange, password auth) through `Dialer::dial`, beside the
//! same dial done with bare `russh::client::connect_stream` on a plain
//! `TcpStream`, against the same in-process russh server, in one run.
//!
//! ```text
//! cargo bench --bench dial
//! ```
//!
//! Criterion prints each median; their ratio is ssh-dial's overhead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
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

fn dial(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
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

    let mut group = c.benchmark_group("dial");
    group
        .sample_size(200)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("ssh-dial", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let dialer = dialer.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let client = dialer
                        .dial(addr, "bench", Auth::password("bench"))
                        .await
                        .expect("dial");
                    drop(client);
                }
                start.elapsed()
            }
        })
    });
    group.bench_function("bare russh", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let config = config.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    tcp.set_nodelay(true).expect("nodelay");
                    let mut handle = russh::client::connect_stream(config.clone(), tcp, AcceptAny)
                        .await
                        .expect("handshake");
                    let ok = handle
                        .authenticate_password("bench", "bench")
                        .await
                        .expect("auth");
                    assert!(ok.success());
                    drop(handle);
                }
                start.elapsed()
            }
        })
    });
    group.finish();
}

criterion_group!(benches, dial);
criterion_main!(benches);
