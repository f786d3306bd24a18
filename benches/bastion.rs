//! Jump hosts, measured against real OpenSSH sshds on loopback: what a dial
//! through a bastion costs next to a direct one, and what sharing one
//! bastion connection buys a fleet.
//!
//! ```text
//! cargo bench --bench bastion                # 40 dials each, fleet of 60
//! cargo bench --bench bastion -- 100 200     # dials each, fleet size
//! ```
//!
//! Both sides negotiate the same algorithms, pinned: key exchange
//! `curve25519-sha256`, host key `ssh-ed25519`, cipher
//! `chacha20-poly1305@openssh.com`, user key Ed25519.
//!
//! - latency: sequential dials (the call to an authenticated client),
//!   direct to the target, then through the bastion (a new bastion connection per dial,
//!   as `ssh -J` makes): medians, and their ratio;
//! - fleet: dial + `exec("true")` + close on N targets (one sshd, N
//!   dials), 10 at a time, through the bastion: a connection per host
//!   (`DialerBuilder::proxy_jump`), shared by the dialer
//!   (`share_jump_hosts`), and one made first and passed to
//!   `Dialer::dial_via`: hosts per second and bastion handshakes.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh_dial::testing::Sshd;
use ssh_dial::{Auth, Client, Dialer, DialerBuilder, HostKeys, JumpHost};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let dials = args.first().copied().unwrap_or(40);
    let fleet = args.get(1).copied().unwrap_or(60);

    let bastion = Sshd::start()?;
    let target = Sshd::start()?;
    target.authorize(&bastion.user_key_path().with_extension("pub"))?;
    let known = bastion.write_file(
        "known_hosts_both",
        &format!(
            "{}\n{}",
            bastion.known_hosts_line(),
            target.known_hosts_line()
        ),
    )?;
    let key = Auth::key(bastion.user_key().clone());
    let builder = || -> DialerBuilder {
        Dialer::builder()
            .timeout(Duration::from_secs(20))
            .host_keys(HostKeys::known_hosts(&known))
            .russh_config(common::pinned())
    };
    let jump = JumpHost::parse(&format!("{}@{}", bastion.user(), bastion.addr()))?;
    let direct = builder().build();
    let through = builder().proxy_jump([jump.clone()]).build();
    let through_shared = builder().proxy_jump([jump]).share_jump_hosts(true).build();
    let user = target.user().to_owned();

    // The dial, and the dial + the first command: sshd starts a user's
    // session process only after auth, which the first channel waits for;
    // through a bastion that is the channel to the target, so a fair
    // comparison includes the direct dial's first command.
    let one = |dialer: Dialer, key: Auth, user: String, addr| async move {
        let start = Instant::now();
        let client = dialer.dial(addr, user, key).await.expect("dial");
        let dialed = start.elapsed();
        client.exec("true").await.expect("exec");
        let ran = start.elapsed();
        if std::env::var_os("BASTION_TRACE").is_some() {
            eprintln!(
                "{:?} via {:?}",
                client.timings(),
                client.jump_host().map(|j| j.timings())
            );
        }
        client.close().await;
        (dialed, ran)
    };
    // Warm up sshd (its first fork, the page cache).
    one(direct.clone(), key.clone(), user.clone(), target.addr()).await;
    let (mut d, mut j) = (Vec::new(), Vec::new());
    for _ in 0..dials {
        d.push(one(direct.clone(), key.clone(), user.clone(), target.addr()).await);
        j.push(one(through.clone(), key.clone(), user.clone(), target.addr()).await);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (dd, dr) = (
        median(d.iter().map(|x| x.0).collect()),
        median(d.iter().map(|x| x.1).collect()),
    );
    let (jd, jr) = (
        median(j.iter().map(|x| x.0).collect()),
        median(j.iter().map(|x| x.1).collect()),
    );
    println!("negotiated: {}", common::PINNED);
    println!("| {dials} sequential, medians | direct | through a bastion | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| dial | {:.1} ms | {:.1} ms | {:.2}x |",
        ms(dd),
        ms(jd),
        ms(jd) / ms(dd)
    );
    println!(
        "| dial + exec(\"true\") | {:.1} ms | {:.1} ms | {:.2}x |",
        ms(dr),
        ms(jr),
        ms(jr) / ms(dr)
    );

    // A command on a client already connected, direct and through the
    // bastion: what the tunnel adds per round trip.
    let exec_times = |client: Client| async move {
        let mut t = Vec::new();
        for _ in 0..dials {
            let start = Instant::now();
            client.exec("true").await.expect("exec");
            t.push(start.elapsed());
        }
        client.close().await;
        median(t)
    };
    let ed = exec_times(
        direct
            .dial(target.addr(), user.clone(), key.clone())
            .await?,
    )
    .await;
    let ej = exec_times(
        through
            .dial(target.addr(), user.clone(), key.clone())
            .await?,
    )
    .await;
    println!(
        "| exec(\"true\") on a connected client | {:.1} ms | {:.1} ms | {:.2}x |",
        ms(ed),
        ms(ej),
        ms(ej) / ms(ed)
    );

    // Fleets, 10 at a time.
    let run = |through: Dialer, shared: Option<Arc<Client>>| {
        let (direct, key, user) = (direct.clone(), key.clone(), user.clone());
        let addr = target.addr();
        async move {
            let start = Instant::now();
            let sem = Arc::new(tokio::sync::Semaphore::new(10));
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..fleet {
                let permit = sem.clone().acquire_owned().await.unwrap();
                let (through, direct, key, user, shared) = (
                    through.clone(),
                    direct.clone(),
                    key.clone(),
                    user.clone(),
                    shared.clone(),
                );
                set.spawn(async move {
                    let t0 = Instant::now();
                    let client = match &shared {
                        Some(jump) => direct.dial_via(jump, addr, user, key).await,
                        None => through.dial(addr, user, key).await,
                    }
                    .expect("dial");
                    let t1 = Instant::now();
                    client.exec("true").await.expect("exec");
                    let t2 = Instant::now();
                    client.close().await;
                    let t3 = Instant::now();
                    if std::env::var_os("BASTION_TRACE").is_some() {
                        eprintln!("dial {:?} exec {:?} close {:?}", t1 - t0, t2 - t1, t3 - t2);
                    }
                    drop(permit);
                });
            }
            while set.join_next().await.is_some() {}
            fleet as f64 / start.elapsed().as_secs_f64()
        }
    };
    let logins = || bastion.log().matches("Accepted publickey").count();
    let before = logins();
    let per_host = run(through.clone(), None).await;
    let per_host_logins = logins() - before;
    let before = logins();
    let shared = run(through_shared, None).await;
    let shared_logins = logins() - before;
    let jump = Arc::new(
        direct
            .dial(bastion.addr(), bastion.user(), key.clone())
            .await?,
    );
    let before = logins() - 1;
    let via = run(through.clone(), Some(jump.clone())).await;
    let via_logins = logins() - before;
    println!();
    println!(
        "| fleet of {fleet}, 10 at a time, through a bastion | hosts/s | bastion handshakes |"
    );
    println!("|---|---|---|");
    println!("| a bastion connection per host | {per_host:.1} | {per_host_logins} |");
    println!("| shared (`share_jump_hosts`) | {shared:.1} | {shared_logins} |");
    println!("| one connection passed to `dial_via` | {via:.1} | {via_logins} |");
    Ok(())
}
