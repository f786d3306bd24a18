//! A copy-paste SSH client with ssh-like arguments, every step bounded.
//!
//! ```text
//! cargo run --example dial -- --help
//! cargo run --example dial -- -p 2222 --accept-any-host-key me@127.0.0.1 uname -a
//! ```
//!
//! With a COMMAND it runs it, passes its stdout and stderr through and exits
//! with its exit status. Without one it says whom it reached and exits 0.
//! Any failure prints one line starting with `error:` and exits 255, like `ssh`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ssh_dial::{Auth, Dialer, ExitStatus, HostKeys, ToTarget};

/// Dial an SSH server under one deadline and run a command.
#[derive(Parser)]
#[command(name = "dial")]
struct Args {
    /// [USER@]HOST[:PORT]
    destination: String,
    /// The command to run; none: just connect.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// Port (default 22, or the one in HOST:PORT).
    #[arg(short = 'p')]
    port: Option<u16>,
    /// Private key file, tried before the agent. With no -i and no
    /// --password-env: the agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
    #[arg(short = 'i', value_name = "KEYFILE")]
    key: Option<PathBuf>,
    /// The passphrase of KEYFILE is in this environment variable.
    #[arg(long, value_name = "VAR")]
    passphrase_env: Option<String>,
    /// Authenticate with the password in this environment variable.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Total dial deadline in seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = secs)]
    timeout: Duration,
    /// Deadline of each TCP connect attempt, in seconds.
    #[arg(long, value_name = "SECS", value_parser = secs)]
    connect_timeout: Option<Duration>,
    /// Deadline of the command, in seconds.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = secs)]
    exec_timeout: Duration,
    /// known_hosts file (default: OpenSSH's user and global files).
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Add unknown hosts to the known_hosts file, refuse changed keys
    /// (StrictHostKeyChecking=accept-new).
    #[arg(long)]
    accept_new: bool,
    /// Trust any host key (throwaway test servers only).
    #[arg(long)]
    accept_any_host_key: bool,
}

fn secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

#[tokio::main]
async fn main() -> ExitCode {
    // Like ssh: any failure, bad arguments included, exits 255.
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(255);
        }
    };
    match run(args).await {
        Ok(code) => ExitCode::from(code),
        Err(line) => {
            eprintln!("error: {line}");
            ExitCode::from(255)
        }
    }
}

async fn run(args: Args) -> Result<u8, String> {
    let (user, host) = match args.destination.rsplit_once('@') {
        Some((user, host)) => (user.to_owned(), host),
        None => (
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
            args.destination.as_str(),
        ),
    };
    let mut target = host
        .to_target()
        .map_err(|e| format!("resolve: invalid address: {e}"))?;
    if let Some(port) = args.port {
        target = (target.host(), port)
            .to_target()
            .map_err(|e| e.to_string())?;
    }
    let host_keys = match (&args.known_hosts, args.accept_new) {
        _ if args.accept_any_host_key => HostKeys::insecure_accept_any(),
        (Some(path), true) => HostKeys::accept_new(path),
        (None, true) => HostKeys::accept_new(home().join(".ssh/known_hosts")),
        (Some(path), false) => HostKeys::known_hosts(path),
        (None, false) => HostKeys::default(),
    };
    let client = Dialer::builder()
        .timeout(args.timeout)
        .connect_timeout(args.connect_timeout)
        .exec_timeout(Some(args.exec_timeout))
        .host_keys(host_keys)
        .build()
        .dial(&target, user.as_str(), auth(&args)?)
        .await
        .map_err(|e| e.to_string())?;

    if args.command.is_empty() {
        println!(
            "connected to {}:{} ({}) as {user}",
            target.host(),
            target.port(),
            client.remote_addr()
        );
        client.close().await;
        return Ok(0);
    }
    let out = client
        .exec(&args.command.join(" "))
        .await
        .map_err(|e| e.to_string())?;
    client.close().await;
    let _ = std::io::stdout().write_all(&out.stdout);
    let _ = std::io::stderr().write_all(&out.stderr);
    Ok(match out.status {
        ExitStatus::Code(c) => (c & 0xff) as u8,
        _ => 255,
    })
}

fn home() -> PathBuf {
    std::env::home_dir().unwrap_or_default()
}

fn env(var: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| format!("auth: environment variable {var} is not set"))
}

/// Like ssh: an explicit key or password first, then the agent; with
/// neither, the agent and the default key files.
fn auth(args: &Args) -> Result<Auth, String> {
    let mut methods = Vec::new();
    if let Some(key) = &args.key {
        let passphrase = args.passphrase_env.as_deref().map(env).transpose()?;
        methods.push(Auth::key_file(key, passphrase.as_deref()));
    }
    if let Some(var) = &args.password_env {
        methods.push(Auth::password(env(var)?));
    }
    let explicit = !methods.is_empty();
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        methods.push(Auth::agent());
    }
    if !explicit {
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let path = home().join(".ssh").join(name);
            if path.exists() {
                methods.push(Auth::key_file(path, None));
            }
        }
    }
    methods.into_iter().reduce(Auth::or).ok_or_else(|| {
        "auth: no -i KEYFILE, no --password-env, no agent (SSH_AUTH_SOCK) and no ~/.ssh/id_* key"
            .into()
    })
}
