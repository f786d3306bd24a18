//! A copy-paste SSH client with ssh-like arguments, every step bounded.
//!
//! ```text
//! cargo run --example dial -- --help
//! cargo run --example dial -- -p 2222 --accept-any-host-key me@127.0.0.1 uname -a
//! cargo run --example dial -- -J bastion,inner deploy@db uptime
//! cargo run --example dial -- -G -F ~/.ssh/config prod-db
//! cargo run --example dial -- -o 'ProxyCommand=ssh -W %h:%p bastion' deploy@db uptime
//! cargo run --example dial -- -N -L 5433:db.internal:5432 -D 1080 deploy@bastion
//! ```
//!
//! Hosts are looked up in ssh_config as `ssh` looks them up (`-F FILE`, or
//! `~/.ssh/config` and `/etc/ssh/ssh_config`); options given here win over
//! the file. With a COMMAND it runs it, passes its stdout and stderr
//! through and exits with its exit status. Without one it says whom it
//! reached and exits 0. `-G` prints the resolved configuration, as
//! `ssh -G` does, and exits. `-L` and `-D` forward local ports through the
//! server (a port that cannot be listened on is an error, as with
//! `ExitOnForwardFailure yes`), for as long as the command runs, or with
//! `-N` (or no command) until Ctrl-C or the session ends. Any failure
//! prints one line starting with `error:` and exits 255, like `ssh`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ssh_dial::{Auth, Dialer, ExitStatus, HostConfig, HostKeys, JumpHost, SshConfig, ToTarget};

/// Dial an SSH server under one deadline and run a command.
#[derive(Parser)]
#[command(name = "dial")]
struct Args {
    /// [USER@]HOST[:PORT]; HOST may be an ssh_config alias.
    destination: String,
    /// ssh_config file to read instead of ~/.ssh/config and
    /// /etc/ssh/ssh_config (`none`: no file).
    #[arg(short = 'F', value_name = "CONFIG")]
    config: Option<PathBuf>,
    /// Jump hosts, comma-separated [USER@]HOST[:PORT], first hop first
    /// (`none`: direct, whatever the config says).
    #[arg(short = 'J', value_name = "JUMP")]
    jump: Option<String>,
    /// An ssh_config option, as `ssh -o` takes it (`Key=value`), winning
    /// over the files: `-o ProxyCommand='ssh -W %h:%p bastion'`,
    /// `-o CertificateFile=~/.ssh/id_ed25519-cert.pub`. Repeatable.
    #[arg(short = 'o', value_name = "OPTION")]
    options: Vec<String>,
    /// Print the configuration ssh-dial would use for the destination,
    /// one `key value` line per key as `ssh -G` prints it, and exit.
    #[arg(short = 'G')]
    print_config: bool,
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
    /// Forward local [BIND:]PORT to HOST:HOSTPORT from the server (as ssh
    /// -L); BIND defaults to 127.0.0.1. Repeatable.
    #[arg(short = 'L', value_name = "[BIND:]PORT:HOST:HOSTPORT")]
    local: Vec<String>,
    /// The server listens on [BIND:]PORT (BIND defaults to 127.0.0.1, its
    /// loopback) and its connections are carried to HOST:HOSTPORT from
    /// here (as ssh -R). Repeatable.
    #[arg(short = 'R', value_name = "[BIND:]PORT:HOST:HOSTPORT")]
    remote: Vec<String>,
    /// A SOCKS 4/5 proxy on local [BIND:]PORT, its connections made from
    /// the server (as ssh -D). Repeatable.
    #[arg(short = 'D', value_name = "[BIND:]PORT")]
    dynamic: Vec<String>,
    /// Run no command: keep the forwards until Ctrl-C or the session ends.
    #[arg(short = 'N')]
    no_command: bool,
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
    let ssh = match &args.config {
        Some(path) if path.as_os_str() == "none" => Ok(SshConfig::empty()),
        Some(path) => SshConfig::load(path),
        None => SshConfig::load_default(),
    }
    .map_err(|e| format!("ssh_config: {e}"))?;
    let ssh = args
        .options
        .iter()
        .try_fold(ssh, |ssh, option| ssh.with_option(option))
        .map_err(|e| format!("ssh_config: {e}"))?;
    let (user, host) = match args.destination.rsplit_once('@') {
        Some((user, host)) => (user.to_owned(), host),
        None => (String::new(), args.destination.as_str()),
    };
    let target = host
        .to_target()
        .map_err(|e| format!("resolve: invalid address: {e}"))?;
    // `host:port` and -p name the port; a bare host takes the config's.
    let port = args.port.or(host.names_port().then(|| target.port()));
    let addr = match port {
        Some(port) if target.host().contains(':') => format!("[{}]:{port}", target.host()),
        Some(port) => format!("{}:{port}", target.host()),
        None => target.host().to_owned(),
    };
    let jump = match args.jump.as_deref() {
        None => None,
        Some("none") => Some(Vec::new()),
        Some(chain) => Some(JumpHost::parse_chain(chain).map_err(|e| e.to_string())?),
    };
    let resolved = ssh
        .resolve(&match user.as_str() {
            "" => target.host().to_owned(),
            u => format!("{u}@{}", target.host()),
        })
        .map_err(|e| format!("ssh_config: {e}"))?;
    if args.print_config {
        print_config(&args, &resolved, port, jump.as_deref());
        return Ok(0);
    }

    let mut builder = Dialer::builder()
        .timeout(args.timeout)
        .exec_timeout(Some(args.exec_timeout))
        .ssh_config(ssh);
    if let Some(t) = args.connect_timeout {
        builder = builder.connect_timeout(Some(t));
    }
    if let Some(host_keys) = host_keys(&args) {
        builder = builder.host_keys(host_keys);
    }
    if let Some(chain) = jump {
        builder = builder.proxy_jump(chain);
    }
    let client = builder
        .build()
        .dial(addr.as_str(), user.as_str(), auth(&args, &resolved)?)
        .await
        .map_err(|e| e.to_string())?;

    let forwards = forwards(&client, &args).await?;
    let remotes = remote_forwards(&client, &args).await?;
    if args.no_command || (args.command.is_empty() && !(forwards.is_empty() && remotes.is_empty()))
    {
        for forward in &forwards {
            println!("forwarding {}", forward.local_addr());
        }
        for (port, _) in &remotes {
            println!("forwarding remote port {port}");
        }
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => if client.is_closed() {
                    return Err("the session ended".into());
                },
            }
        }
        drop((forwards, remotes));
        client.close().await;
        return Ok(0);
    }
    if args.command.is_empty() {
        println!(
            "connected to {} ({}) as {}",
            client.target(),
            client
                .remote_addr()
                .map_or("through its ProxyCommand".into(), |a| a.to_string()),
            if user.is_empty() {
                resolved.user()
            } else {
                &user
            }
        );
        client.close().await;
        return Ok(0);
    }
    let out = client
        .exec(&args.command.join(" "))
        .await
        .map_err(|e| e.to_string())?;
    drop((forwards, remotes));
    client.close().await;
    let _ = std::io::stdout().write_all(&out.stdout);
    let _ = std::io::stderr().write_all(&out.stderr);
    Ok(match out.status {
        ExitStatus::Code(c) => (c & 0xff) as u8,
        _ => 255,
    })
}

/// The -L and -D forwards, listening.
async fn forwards(
    client: &ssh_dial::Client,
    args: &Args,
) -> Result<Vec<ssh_dial::LocalForward>, String> {
    let mut all = Vec::new();
    for spec in &args.local {
        let (bind, rest) = bind_and_rest(spec, 2)?;
        let (host, port) = (rest[0].as_str(), port_of(&rest[1], spec)?);
        let forward = client
            .forward_local(bind, host, port)
            .await
            .map_err(|e| e.to_string())?;
        all.push(forward);
    }
    for spec in &args.dynamic {
        let (bind, _) = bind_and_rest(spec, 0)?;
        let forward = client
            .forward_dynamic(bind)
            .await
            .map_err(|e| e.to_string())?;
        all.push(forward);
    }
    Ok(all)
}

/// The -R forwards: each carried to its local target by a task, stopped
/// when dropped; with the port the server listens on.
async fn remote_forwards(
    client: &ssh_dial::Client,
    args: &Args,
) -> Result<Vec<(u16, AbortOnDrop)>, String> {
    let mut all = Vec::new();
    for spec in &args.remote {
        let (bind, rest) = bind_and_rest(spec, 2)?;
        let local = format!("{}:{}", rest[0], port_of(&rest[1], spec)?);
        let local = tokio::net::lookup_host(&local)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| format!("forward: cannot resolve {local:?}"))?;
        let forward = client
            .forward_remote(&bind.ip().to_string(), bind.port())
            .await
            .map_err(|e| e.to_string())?;
        let port = forward.port();
        all.push((port, AbortOnDrop(tokio::spawn(forward.connect_to(local)))));
    }
    Ok(all)
}

/// A task that ends with its holder.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `[BIND:]PORT` and then `extra` more `:`-separated fields (a `[v6]`
/// address in brackets, as ssh takes it); BIND defaults to 127.0.0.1.
fn bind_and_rest(spec: &str, extra: usize) -> Result<(std::net::SocketAddr, Vec<String>), String> {
    let bad = || {
        format!(
            "forward: {spec:?} is not [BIND:]PORT{}",
            ":HOST:PORT".repeat(extra.min(1))
        )
    };
    let mut fields = Vec::new();
    let mut rest = spec;
    while !rest.is_empty() {
        let (field, after) = match rest.strip_prefix('[') {
            Some(inner) => {
                let (v6, after) = inner.split_once(']').ok_or_else(bad)?;
                (v6, after.strip_prefix(':').unwrap_or(after))
            }
            None => match rest.split_once(':') {
                Some((field, after)) => (field, after),
                None => (rest, ""),
            },
        };
        fields.push(field.to_owned());
        rest = after;
    }
    let (bind, port, rest) = match fields.len() {
        n if n == extra + 1 => ("127.0.0.1".to_owned(), &fields[0], fields[1..].to_vec()),
        n if n == extra + 2 => (fields[0].clone(), &fields[1], fields[2..].to_vec()),
        _ => return Err(bad()),
    };
    let ip: std::net::IpAddr = match bind.as_str() {
        "" | "*" => std::net::Ipv4Addr::UNSPECIFIED.into(),
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        other => other.parse().map_err(|_| bad())?,
    };
    Ok((std::net::SocketAddr::new(ip, port_of(port, spec)?), rest))
}

fn port_of(port: &str, spec: &str) -> Result<u16, String> {
    port.parse()
        .map_err(|_| format!("forward: {spec:?}: {port:?} is not a port"))
}

fn home() -> PathBuf {
    std::env::home_dir().unwrap_or_default()
}

fn env(var: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| format!("auth: environment variable {var} is not set"))
}

/// The host key policy the options ask for, if they ask for one (the
/// config's otherwise).
fn host_keys(args: &Args) -> Option<HostKeys> {
    Some(match (&args.known_hosts, args.accept_new) {
        _ if args.accept_any_host_key => HostKeys::insecure_accept_any(),
        (Some(path), true) => HostKeys::accept_new(path),
        (None, true) => HostKeys::accept_new(home().join(".ssh/known_hosts")),
        (Some(path), false) => HostKeys::known_hosts(path),
        (None, false) => return None,
    })
}

/// Like ssh: an explicit key or password first, then the agent; with
/// neither, the config's identity files and agent.
fn auth(args: &Args, resolved: &HostConfig) -> Result<Auth, String> {
    let mut methods = Vec::new();
    if let Some(key) = &args.key {
        let passphrase = args.passphrase_env.as_deref().map(env).transpose()?;
        methods.push(Auth::key_file(key, passphrase.as_deref()));
    }
    if let Some(var) = &args.password_env {
        methods.push(Auth::password(env(var)?));
    }
    if let Some(from_config) = resolved.auth() {
        methods.push(from_config);
    }
    methods.into_iter().reduce(Auth::or).ok_or_else(|| {
        "auth: no -i KEYFILE, no --password-env, no agent (SSH_AUTH_SOCK) and no IdentityFile that exists"
            .into()
    })
}

/// `-G`: what `ssh -G` prints for the keys ssh-dial honours, with this
/// command's options applied and, where the config sets nothing,
/// ssh-dial's own defaults.
fn print_config(args: &Args, resolved: &HostConfig, port: Option<u16>, jump: Option<&[JumpHost]>) {
    let defaults = Dialer::new();
    for (key, value) in resolved.to_ssh_g() {
        let value = match key {
            "port" => port.map_or(value, |p| p.to_string()),
            // ssh-dial never asks: "ask" refuses unknown hosts.
            "stricthostkeychecking" if args.accept_any_host_key => "false".into(),
            "stricthostkeychecking" if args.accept_new => "accept-new".into(),
            "stricthostkeychecking" if args.known_hosts.is_some() => "true".into(),
            "stricthostkeychecking" if value == "ask" => "true".into(),
            "userknownhostsfile" => match &args.known_hosts {
                Some(path) => path.display().to_string(),
                None => value,
            },
            "serveraliveinterval" if resolved.server_alive_interval().is_none() => defaults
                .ssh_keepalive_interval()
                .map_or(0, |d| d.as_secs())
                .to_string(),
            "connecttimeout" => match args.connect_timeout {
                Some(t) => t.as_secs().to_string(),
                None => value,
            },
            "proxyjump" if jump.is_some() => continue,
            _ => value,
        };
        println!("{key} {value}");
    }
    if let Some(chain) = jump.filter(|c| !c.is_empty()) {
        let hops: Vec<String> = chain.iter().map(ToString::to_string).collect();
        println!("proxyjump {}", hops.join(","));
    }
    if let Some(key) = &args.key {
        println!("identityfile {}", key.display());
    }
}
