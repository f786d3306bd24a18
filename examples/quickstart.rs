//! The shape of a dial in a program: one deadline, a command, and the
//! failures told apart by phase. Copy it.
//!
//! ```text
//! cargo run --example quickstart -- deploy@build-7.example.net uptime
//! ```
//!
//! Trusts the host keys in `~/.ssh/known_hosts`; authenticates with the
//! ssh-agent, then the password in `$SSH_PASSWORD` if it is set.

use std::time::Duration;

use clap::Parser;
use ssh_dial::{Auth, Dialer, HostKeys, Phase};

/// Run one command on one host, bounded.
#[derive(Parser)]
struct Args {
    /// USER@HOST[:PORT]
    destination: String,
    /// The command.
    #[arg(default_value = "uptime")]
    command: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (user, host) = args
        .destination
        .split_once('@')
        .unwrap_or(("root", &args.destination));
    let mut auth = Auth::agent();
    if let Ok(password) = std::env::var("SSH_PASSWORD") {
        auth = auth.or(Auth::password(password));
    }
    let dialer = Dialer::builder()
        .timeout(Duration::from_secs(10))
        .host_keys(HostKeys::default())
        .build();
    let why = match dialer.dial(host, user, auth).await {
        Ok(client) => match client.exec(&args.command).await {
            Ok(out) => {
                print!("{}", String::from_utf8_lossy(&out.stdout));
                client.close().await;
                return (out.status.code().unwrap_or(255) as u8).into();
            }
            Err(e) => format!("the command failed: {e}"),
        },
        Err(e) if e.is_timeout() => format!(
            "sick host: stuck in {} after {:.1?}",
            e.phase(),
            e.elapsed()
        ),
        Err(e) if e.is_host_key() => format!("not the host we know, no credential sent: {e}"),
        Err(e) => match e.phase() {
            Phase::Resolve | Phase::Connect => format!("unreachable: {e}"),
            Phase::Auth => format!("not let in: {e}"),
            _ => format!("not an SSH server we can talk to: {e}"),
        },
    };
    eprintln!("{host}: {why}");
    std::process::ExitCode::from(255)
}
