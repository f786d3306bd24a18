//! Runs one command on many hosts, bounded: a fixed number at a time, a
//! deadline per host, optional retries; a progress bar on a terminal, then a
//! summary, or one JSON object per host.
//!
//! ```text
//! cargo run --example fleet -- [OPTIONS] --hosts FILE -- COMMAND...
//!
//!   --hosts FILE            one [user@]host[:port] per line; '#' starts a comment
//!   --concurrency N         hosts at once (default 20)
//!   --timeout SECS          per host, dial + command, fractions allowed (default 30)
//!   -i KEYFILE              private key (default: the ssh-agent)
//!   --password-env VAR      password from environment variable VAR
//!   --known-hosts FILE      known_hosts file (default ~/.ssh/known_hosts)
//!   --accept-any-host-key   trust any host key (test servers only)
//!   --retries N             retry a host up to N more times on retriable failures
//!   --json                  one JSON object per host on stdout, summary on stderr
//! ```
//!
//! Exits 0 if the command succeeded (exit status 0) on every host, 1 otherwise.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ssh_dial::fleet::{FailedIn, Fleet, Host, HostReport, Retry};
use ssh_dial::{Auth, Dialer, ExitStatus, HostKeys};

struct Args {
    hosts: PathBuf,
    concurrency: usize,
    timeout: Duration,
    key: Option<PathBuf>,
    password_env: Option<String>,
    known_hosts: Option<PathBuf>,
    accept_any: bool,
    retries: u32,
    json: bool,
    command: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    let mut hosts = None;
    let mut args = Args {
        hosts: PathBuf::new(),
        concurrency: 20,
        timeout: Duration::from_secs(30),
        key: None,
        password_env: None,
        known_hosts: None,
        accept_any: false,
        retries: 0,
        json: false,
        command: Vec::new(),
    };
    let value = |flag: &str, v: Option<String>| v.ok_or_else(|| format!("{flag} needs a value"));
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--hosts" => hosts = Some(PathBuf::from(value(&arg, argv.next())?)),
            "--concurrency" => {
                args.concurrency = value(&arg, argv.next())?
                    .parse()
                    .map_err(|_| "--concurrency takes a number")?
            }
            "--timeout" => {
                let v = value(&arg, argv.next())?;
                args.timeout = v
                    .parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or(format!("--timeout: {v:?} is not a number of seconds"))?;
            }
            "-i" => args.key = Some(value(&arg, argv.next())?.into()),
            "--password-env" => args.password_env = Some(value(&arg, argv.next())?),
            "--known-hosts" => args.known_hosts = Some(value(&arg, argv.next())?.into()),
            "--accept-any-host-key" => args.accept_any = true,
            "--retries" => {
                args.retries = value(&arg, argv.next())?
                    .parse()
                    .map_err(|_| "--retries takes a number")?
            }
            "--json" => args.json = true,
            "--" => {
                args.command = argv.by_ref().collect();
                break;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    args.hosts = hosts.ok_or("--hosts FILE is required")?;
    if args.command.is_empty() {
        return Err("no command given after --".into());
    }
    Ok(args)
}

fn read_hosts(path: &PathBuf) -> Result<Vec<Host>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| Host::parse(l, &user).map_err(|e| format!("{}: {e}", path.display())))
        .collect()
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
    let args = parse_args()?;
    let hosts = read_hosts(&args.hosts)?;
    let auth = match (&args.key, &args.password_env) {
        (Some(key), _) => Auth::key_file(key, None),
        (None, Some(var)) => {
            Auth::password(std::env::var(var).map_err(|_| format!("{var} is not set"))?)
        }
        (None, None) => Auth::agent(),
    };
    let host_keys = match (&args.known_hosts, args.accept_any) {
        (_, true) => HostKeys::insecure_accept_any(),
        (Some(p), false) => HostKeys::known_hosts(p),
        (None, false) => HostKeys::default(),
    };
    let fleet = Fleet::builder(Dialer::builder().host_keys(host_keys).build())
        .auth(auth)
        .concurrency(args.concurrency)
        .host_timeout(args.timeout)
        .retry(Retry::attempts(args.retries + 1))
        .build();

    let progress = indicatif::ProgressBar::with_draw_target(
        Some(hosts.len() as u64),
        indicatif::ProgressDrawTarget::stderr(), // hidden when stderr is not a terminal
    );
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} hosts, {elapsed} {msg}")
            .expect("template"),
    );
    let mut run = fleet.run(hosts, args.command.join(" "));
    let mut reports = Vec::with_capacity(run.len());
    let mut stdout = std::io::stdout().lock();
    while let Some(report) = run.next().await {
        progress.inc(1);
        if args.json {
            let _ = writeln!(stdout, "{}", json(&report));
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

fn json(r: &HostReport) -> serde_json::Value {
    let (exit_status, signal, stdout, stderr) = match &r.outcome {
        Ok(out) => (
            match out.status {
                ExitStatus::Code(c) => Some(c),
                _ => None,
            },
            match &out.status {
                ExitStatus::Signal(s) => Some(s.clone()),
                _ => None,
            },
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
        let what = match &r.outcome {
            Ok(out) => out.status.to_string(),
            Err(e) => e.to_string(),
        };
        s.push_str(&format!(
            "  {:<28} {:>7.2}s  {what}\n",
            r.host.to_string(),
            r.elapsed.as_secs_f64()
        ));
    }
    s
}
