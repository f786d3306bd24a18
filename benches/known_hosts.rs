//! What a large known_hosts file costs a dial: full dials (password auth)
//! against the in-process russh server, 200 sequential, with the server's
//! line alone in the file, then after 10,000 other lines (plain names),
//! then after 10,000 hashed ones (`|1|salt|hash`, as `HashKnownHosts yes`
//! writes them). The differences of the medians are the file's cost.
//!
//! ```text
//! cargo bench --bench known_hosts
//! cargo bench --bench known_hosts -- 500     # dials per file
//! ```

use std::time::{Duration, Instant};

use ssh_dial::testing::TestServer;
use ssh_dial::{Auth, Dialer, HostKeys};

const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILg4zKcoTwbt5lqhVGjk64meBdTzYRuV14vdclMQCvs6";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dials: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let server = TestServer::builder().password("u", "p").start()?;
    let dir = tempfile::tempdir()?;
    let mut plain = String::new();
    let mut hashed = String::new();
    for i in 0..10_000 {
        plain.push_str(&format!(
            "host-{i}.example.net,10.{}.{}.{} {OTHER_KEY}\n",
            i / 65536,
            (i / 256) % 256,
            i % 256
        ));
        // A fixed 20-byte salt per line is enough for the cost: the
        // matcher computes one HMAC per hashed line either way.
        hashed.push_str(&format!(
            "|1|{}|{} {OTHER_KEY}\n",
            "c2FsdHNhbHRzYWx0c2FsdHNhbHQ=", "aGFzaGhhc2hoYXNoaGFzaGhhc2g="
        ));
    }
    let line = server.known_hosts_line();
    let files = [
        ("the server's line alone", format!("{line}\n")),
        (
            "10,000 plain lines, then the server's",
            format!("{plain}{line}\n"),
        ),
        (
            "10,000 hashed lines, then the server's",
            format!("{hashed}{line}\n"),
        ),
    ];
    println!("{dials} sequential dials each, in-process russh server, password auth");
    println!("| known_hosts | median dial | p90 |");
    println!("|---|---|---|");
    let mut base = None;
    for (name, text) in files {
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text)?;
        // Past the file's racy window, so a cache may trust its stamp.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let dialer = Dialer::builder()
            .host_keys(HostKeys::known_hosts(&path).global_files(Vec::<std::path::PathBuf>::new()))
            .build();
        let mut times = Vec::with_capacity(dials);
        for _ in 0..dials {
            let start = Instant::now();
            let client = dialer.dial(server.addr(), "u", Auth::password("p")).await?;
            times.push(start.elapsed());
            drop(client);
        }
        times.sort();
        let median = times[dials / 2];
        let p90 = times[dials * 9 / 10];
        let extra = match base {
            None => {
                base = Some(median);
                String::new()
            }
            Some(b) => format!(
                " (+{:.2} ms)",
                (median.as_secs_f64() - Duration::as_secs_f64(&b)) * 1e3
            ),
        };
        println!(
            "| {name} | {:.2} ms{extra} | {:.2} ms |",
            median.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
