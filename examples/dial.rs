//! A copy-paste SSH client with ssh-like arguments, every step bounded.
//!
//! ```text
//! cargo run --example dial -- [OPTIONS] [USER@]HOST[:PORT] [COMMAND...]
//!
//!   -p PORT                 port (default 22, or the one in HOST:PORT)
//!   -i KEYFILE              private key, tried before the agent (default, with no
//!                           other method: the agent if SSH_AUTH_SOCK is set, then
//!                           those of ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exist)
//!   --passphrase-env VAR    the passphrase of KEYFILE is in environment variable VAR
//!   --password-env VAR      authenticate with the password in environment variable VAR
//!   --timeout SECS          total dial deadline, fractions allowed (default 30)
//!   --connect-timeout SECS  deadline of each TCP connect attempt
//!   --exec-timeout SECS     deadline of the command (default 60)
//!   --known-hosts FILE      known_hosts file (default ~/.ssh/known_hosts)
//!   --accept-new            add unknown hosts to the known_hosts file, refuse changed keys
//!                           (OpenSSH's StrictHostKeyChecking=accept-new)
//!   --accept-any-host-key   trust any host key (test servers only)
//! ```
//!
//! With a COMMAND it runs it, passes its stdout and stderr through and exits
//! with its exit status. Without one it says whom it reached and exits 0.
//! Any failure prints one line starting with `error:` and exits 255, like `ssh`.
//!
//! For example, against a throwaway local sshd:
//!
//! ```text
//! cargo run --example dial -- -p 2222 --accept-any-host-key me@127.0.0.1 uname -a
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ssh_dial::{Auth, Dialer, ExitStatus, HostKeys};

const USAGE: &str = "usage: dial [-p PORT] [-i KEYFILE] [--passphrase-env VAR] [--password-env VAR] \
[--timeout SECS] [--connect-timeout SECS] [--exec-timeout SECS] [--known-hosts FILE] [--accept-new] \
[--accept-any-host-key] [USER@]HOST[:PORT] [COMMAND...]";

struct Args {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    key: Option<PathBuf>,
    passphrase_env: Option<String>,
    password_env: Option<String>,
    timeout: Duration,
    connect_timeout: Option<Duration>,
    exec_timeout: Option<Duration>,
    known_hosts: Option<PathBuf>,
    accept_new: bool,
    accept_any: bool,
    command: Vec<String>,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        user: None,
        host: String::new(),
        port: None,
        key: None,
        passphrase_env: None,
        password_env: None,
        timeout: Duration::from_secs(30),
        connect_timeout: None,
        exec_timeout: Some(Duration::from_secs(60)),
        known_hosts: None,
        accept_new: false,
        accept_any: false,
        command: Vec::new(),
    };
    fn value(flag: &str, v: Option<String>) -> Result<String, String> {
        v.ok_or_else(|| format!("{flag} needs a value"))
    }
    fn secs(flag: &str, v: Option<String>) -> Result<Duration, String> {
        let v = value(flag, v)?;
        v.parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| format!("{flag}: {v:?} is not a number of seconds"))
    }
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "-p" => {
                let v = value("-p", argv.next())?;
                args.port = Some(v.parse().map_err(|_| format!("-p: {v:?} is not a port"))?);
            }
            "-i" => args.key = Some(value("-i", argv.next())?.into()),
            "--password-env" => args.password_env = Some(value(&arg, argv.next())?),
            "--passphrase-env" => args.passphrase_env = Some(value(&arg, argv.next())?),
            "--accept-new" => args.accept_new = true,
            "--timeout" => args.timeout = secs(&arg, argv.next())?,
            "--connect-timeout" => args.connect_timeout = Some(secs(&arg, argv.next())?),
            "--exec-timeout" => args.exec_timeout = Some(secs(&arg, argv.next())?),
            "--known-hosts" => args.known_hosts = Some(value(&arg, argv.next())?.into()),
            "--accept-any-host-key" => args.accept_any = true,
            flag if flag.starts_with('-') && args.host.is_empty() => {
                return Err(format!("unknown option {flag}"))
            }
            _ => {
                let (user, host) = match arg.rsplit_once('@') {
                    Some((u, h)) => (Some(u.to_owned()), h.to_owned()),
                    None => (None, arg.clone()),
                };
                args.user = user;
                args.host = host;
                args.command = argv.collect();
                break;
            }
        }
    }
    if args.host.is_empty() {
        return Err("no host given".into());
    }
    Ok(args)
}

fn default_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into())
}

fn env(var: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| format!("auth: environment variable {var} is not set"))
}

/// Like ssh: an explicit key or password first, then the agent; with
/// nothing given, the agent and the default key files.
fn auth(args: &Args) -> Result<Auth, String> {
    let agent = std::env::var_os("SSH_AUTH_SOCK").map(|_| Auth::agent());
    let mut chosen: Option<Auth> = None;
    let mut add = |a: Auth| {
        chosen = Some(match chosen.take() {
            Some(c) => c.or(a),
            None => a,
        })
    };
    if let Some(key) = &args.key {
        let passphrase = args.passphrase_env.as_deref().map(env).transpose()?;
        add(Auth::key_file(key, passphrase.as_deref()));
    }
    if let Some(var) = &args.password_env {
        add(Auth::password(env(var)?));
    }
    let explicit = args.key.is_some() || args.password_env.is_some();
    if let Some(agent) = agent {
        add(agent);
    }
    if !explicit {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let path = home.join(".ssh").join(name);
            if path.exists() {
                add(Auth::key_file(path, None));
            }
        }
    }
    chosen.ok_or_else(|| {
        "auth: no -i KEYFILE, no --password-env, no agent (SSH_AUTH_SOCK) and no ~/.ssh/id_* key".into()
    })
}

/// The target as `host:port`, with `-p` overriding a port in HOST.
fn target(args: &Args) -> Result<ssh_dial::Target, String> {
    use ssh_dial::ToTarget;
    let parsed = args.host.as_str().to_target().map_err(|e| e.to_string())?;
    match args.port {
        Some(port) => (parsed.host(), port).to_target().map_err(|e| e.to_string()),
        None => Ok(parsed),
    }
}

fn exit_code(status: &ExitStatus) -> u8 {
    match status {
        ExitStatus::Code(c) => (*c & 0xff) as u8,
        ExitStatus::Signal(name) => match name.as_str() {
            "HUP" => 129,
            "INT" => 130,
            "KILL" => 137,
            "SEGV" => 139,
            "PIPE" => 141,
            "TERM" => 143,
            _ => 255,
        },
        _ => 255,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(why) if why.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("error: {why}\n{USAGE}");
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
    let target = target(&args).map_err(|why| format!("resolve: invalid address: {why}"))?;
    let default_file = || {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".ssh").join("known_hosts")
    };
    let host_keys = match (&args.known_hosts, args.accept_new, args.accept_any) {
        (_, _, true) => HostKeys::insecure_accept_any(),
        (Some(path), true, false) => HostKeys::accept_new(path),
        (None, true, false) => HostKeys::accept_new(default_file()),
        (Some(path), false, false) => HostKeys::known_hosts(path),
        (None, false, false) => HostKeys::default(),
    };
    let dialer = Dialer::builder()
        .timeout(args.timeout)
        .connect_timeout(args.connect_timeout)
        .exec_timeout(args.exec_timeout)
        .host_keys(host_keys)
        .build();
    let user = args.user.clone().unwrap_or_else(default_user);
    let client = dialer
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
    Ok(exit_code(&out.status))
}
