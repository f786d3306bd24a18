//! Runs one command on many hosts, bounded: a fixed number at a time, a
//! deadline per host, optional retries; a progress bar on a terminal, then a
//! summary, or one JSON object per host.
//!
//! ```text
//! cargo run --example fleet -- --help
//! cargo run --example fleet -- --hosts hosts.txt --concurrency 50 -- uptime
//! cargo run --example fleet -- --hosts hosts.txt --put build/app.tgz:/srv/app.tgz
//! cargo run --example fleet -- --hosts hosts.txt --get /var/log/syslog:logs
//! ```
//!
//! `--put` and `--get` copy a file over SFTP instead of running a command
//! (`--get` saves each host's copy as LOCALDIR/HOST:PORT/NAME). Exits 0 if
//! the command succeeded (exit status 0), or the file was copied, on every
//! host, 1 otherwise, 2 on bad arguments.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use ssh_dial::fleet::{FailedIn, Fleet, Host, HostReport, Retry};
use ssh_dial::{Auth, Dialer, HostKeys, JumpHost, SshConfig};

/// Run one command on many hosts, each under its own deadline.
#[derive(Parser)]
#[command(name = "fleet")]
struct Args {
    /// One [user@]host[:port] per line, host an address, a name or an
    /// ssh_config alias; '#' starts a comment.
    #[arg(long, value_name = "FILE")]
    hosts: PathBuf,
    /// ssh_config file to read instead of ~/.ssh/config and
    /// /etc/ssh/ssh_config (`none`: no file). Hosts take their HostName,
    /// Port, User, IdentityFile, ProxyJump, ... from it.
    #[arg(short = 'F', value_name = "CONFIG")]
    config: Option<PathBuf>,
    /// Jump hosts for every host, comma-separated [USER@]HOST[:PORT]
    /// (`none`: direct, whatever the config says).
    #[arg(short = 'J', value_name = "JUMP")]
    jump: Option<String>,
    /// Hosts behind the same jump hosts share one connection to them
    /// (one bastion handshake instead of one per host).
    #[arg(long)]
    share_jump_hosts: bool,
    /// Hosts at once.
    #[arg(long, value_name = "N", default_value_t = 20)]
    concurrency: usize,
    /// Per host, dial + command, in seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = secs)]
    timeout: Duration,
    /// Private key (default: each host's IdentityFile and the ssh-agent).
    #[arg(short = 'i', value_name = "KEYFILE")]
    key: Option<PathBuf>,
    /// Password from this environment variable.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// known_hosts file (default: OpenSSH's user and global files).
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Trust any host key (throwaway test servers only).
    #[arg(long)]
    accept_any_host_key: bool,
    /// Retry a host up to N more times on retriable failures.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,
    /// One JSON object per host on stdout, the summary on stderr.
    #[arg(long)]
    json: bool,
    /// Output kept per host and stream, in bytes; past it the command is
    /// ended and the report says "truncated".
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    max_output: usize,
    /// Write each host's stdout and stderr to DIR/HOST.out and DIR/HOST.err.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Print each line of output as it arrives, as "[host] line".
    #[arg(long)]
    stream: bool,
    /// Upload the local file LOCAL to REMOTE on every host (over SFTP)
    /// instead of running a command.
    #[arg(long, value_name = "LOCAL:REMOTE", conflicts_with_all = ["get", "command"])]
    put: Option<String>,
    /// Download REMOTE from every host into LOCALDIR/HOST:PORT/ (over
    /// SFTP) instead of running a command.
    #[arg(long, value_name = "REMOTE:LOCALDIR", conflicts_with = "command")]
    get: Option<String>,
    /// The command, after `--`.
    #[arg(last = true, required_unless_present_any = ["put", "get"])]
    command: Vec<String>,
}

fn secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

/// The hosts, each with the credentials its ssh_config gives it (used
/// when no -i or --password-env is given). The user is left empty when not
/// given, for the config's `User` (or the local user).
fn read_hosts(path: &PathBuf, ssh: &SshConfig) -> Result<Vec<Host>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let host = Host::parse(l, "").map_err(|e| format!("{}: {e}", path.display()))?;
            let name = match l.rsplit_once('@') {
                Some((user, addr)) => format!("{user}@{}", addr_host(addr)),
                None => addr_host(l).to_owned(),
            };
            let resolved = ssh.resolve(&name).map_err(|e| format!("ssh_config: {e}"))?;
            Ok(match resolved.auth() {
                Some(auth) => host.with_auth(auth),
                None => host,
            })
        })
        .collect()
}

/// The host part of `host[:port]` (IPv6 in brackets).
fn addr_host(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.split_once(':') {
        Some((host, port)) if !port.contains(':') => host,
        _ => addr,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> Result<bool, String> {
    let args = Args::parse();
    let ssh = match &args.config {
        Some(path) if path.as_os_str() == "none" => Ok(SshConfig::empty()),
        Some(path) => SshConfig::load(path),
        None => SshConfig::load_default(),
    }
    .map_err(|e| format!("ssh_config: {e}"))?;
    let mut hosts = read_hosts(&args.hosts, &ssh)?;
    let auth = match (&args.key, &args.password_env) {
        (Some(key), _) => Some(Auth::key_file(key, None)),
        (None, Some(var)) => Some(Auth::password(
            std::env::var(var).map_err(|_| format!("{var} is not set"))?,
        )),
        (None, None) => None,
    };
    if let Some(auth) = &auth {
        // Given credentials win over each host's from the config.
        hosts = hosts
            .into_iter()
            .map(|h| h.with_auth(auth.clone()))
            .collect();
    }
    let mut dialer = Dialer::builder()
        .max_output(Some(args.max_output))
        .share_jump_hosts(args.share_jump_hosts)
        .ssh_config(ssh);
    match (&args.known_hosts, args.accept_any_host_key) {
        (_, true) => dialer = dialer.host_keys(HostKeys::insecure_accept_any()),
        (Some(p), false) => dialer = dialer.host_keys(HostKeys::known_hosts(p)),
        (None, false) => {}
    }
    match args.jump.as_deref() {
        None => {}
        Some("none") => dialer = dialer.proxy_jump([]),
        Some(chain) => {
            dialer = dialer.proxy_jump(JumpHost::parse_chain(chain).map_err(|e| e.to_string())?)
        }
    }
    let dialer = dialer.build();
    let mut fleet = Fleet::builder(dialer)
        .auth(auth.unwrap_or_else(Auth::agent))
        .concurrency(args.concurrency)
        .host_timeout(args.timeout)
        .retry(Retry::attempts(args.retries + 1));
    // Per host and stream, the part of a line not yet printed.
    let partial: Arc<Mutex<Partial>> = Arc::default();
    if args.stream {
        let partial = partial.clone();
        fleet = fleet.on_output(move |chunk| {
            let mut partial = partial.lock().unwrap();
            let line = partial
                .entry((chunk.host.to_string(), chunk.stderr))
                .or_default();
            line.extend_from_slice(chunk.bytes);
            while let Some(end) = line.iter().position(|&b| b == b'\n') {
                let rest = line.split_off(end + 1);
                print_line(&chunk.host.to_string(), chunk.stderr, line);
                *line = rest;
            }
        });
    }
    let fleet = fleet.build();
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }

    let progress = indicatif::ProgressBar::with_draw_target(
        Some(hosts.len() as u64),
        indicatif::ProgressDrawTarget::stderr(), // hidden when stderr is not a terminal
    );
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} hosts, {elapsed} {msg}")
            .expect("template"),
    );
    let split = |spec: &str, what: &str| {
        spec.split_once(':')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .ok_or_else(|| format!("{spec:?}: expected {what}"))
    };
    let mut run = match (&args.put, &args.get) {
        (Some(spec), _) => {
            let (local, remote) = split(spec, "LOCAL:REMOTE")?;
            fleet.put(hosts, local, remote)
        }
        (None, Some(spec)) => {
            let (remote, dir) = split(spec, "REMOTE:LOCALDIR")?;
            fleet.get(hosts, remote, dir)
        }
        (None, None) => fleet.run(hosts, args.command.join(" ")),
    };
    let mut reports = Vec::with_capacity(run.len());
    while let Some(report) = run.next().await {
        progress.inc(1);
        let name = report.host.to_string();
        for stderr in [false, true] {
            if let Some(rest) = partial.lock().unwrap().remove(&(name.clone(), stderr)) {
                if !rest.is_empty() {
                    print_line(&name, stderr, &rest);
                }
            }
        }
        if let (Some(dir), Ok(out)) = (&args.output_dir, &report.outcome) {
            let file: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._@-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            std::fs::write(dir.join(format!("{file}.out")), &out.stdout)
                .and_then(|()| std::fs::write(dir.join(format!("{file}.err")), &out.stderr))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        if args.json {
            // Not a lock held across awaits: --stream prints from host tasks.
            println!("{}", json(&report));
        }
        reports.push(report);
    }
    progress.finish_and_clear();
    let summary = summary(&reports);
    if args.json {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    Ok(reports.iter().all(HostReport::is_success))
}

type Partial = HashMap<(String, bool), Vec<u8>>;

/// One line of live output, `[host] line` (stderr lines on stderr).
fn print_line(host: &str, stderr: bool, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\n');
    if stderr {
        eprintln!("[{host}] {text}");
    } else {
        println!("[{host}] {text}");
    }
}

fn json(r: &HostReport) -> serde_json::Value {
    let (exit_status, signal, stdout, stderr) = match &r.outcome {
        Ok(out) => (
            out.status.code(),
            out.status.signal().map(str::to_owned),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(_) => (None, None, String::new(), String::new()),
    };
    serde_json::json!({
        "host": r.host.to_string(),
        "ok": r.is_success(),
        "phase": r.failed_in().map(FailedIn::as_str),
        "error": r.outcome.as_ref().err().map(|e| e.to_string()),
        "exit_status": exit_status,
        "signal": signal,
        "stdout": stdout,
        "stderr": stderr,
        "truncated": r.outcome.as_ref().is_ok_and(|out| out.truncated),
        "transferred": r.transferred,
        "elapsed_ms": r.elapsed.as_millis() as u64,
        "attempts": r.attempts,
    })
}

fn summary(reports: &[HostReport]) -> String {
    let ok = reports.iter().filter(|r| r.is_success()).count();
    let ran = reports.iter().filter(|r| r.outcome.is_ok()).count();
    let mut by_phase: BTreeMap<&str, usize> = BTreeMap::new();
    for phase in reports
        .iter()
        .filter_map(|r| r.failed_in().map(FailedIn::as_str))
    {
        *by_phase.entry(phase).or_default() += 1;
    }
    let mut s = format!(
        "{} hosts: {} ok, {} ran but exited non-zero, {} failed\n",
        reports.len(),
        ok,
        ran - ok,
        reports.len() - ran
    );
    if !by_phase.is_empty() {
        s.push_str("failed in:\n");
        for (phase, n) in &by_phase {
            s.push_str(&format!("  {phase:<18} {n}\n"));
        }
    }
    let mut slowest: Vec<&HostReport> = reports.iter().collect();
    slowest.sort_by_key(|r| std::cmp::Reverse(r.elapsed));
    s.push_str("slowest:\n");
    for r in slowest.iter().take(5) {
        let what = match (&r.outcome, r.transferred) {
            (Ok(_), Some(n)) => format!("{n} bytes"),
            (Ok(out), None) => out.status.to_string(),
            (Err(e), _) => e.to_string(),
        };
        s.push_str(&format!(
            "  {:<28} {:>7.2}s  {what}\n",
            r.host.to_string(),
            r.elapsed.as_secs_f64()
        ));
    }
    s
}
