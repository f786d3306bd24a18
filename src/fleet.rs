//! One command on many hosts: bounded concurrency, a deadline per host
//! (dial + exec) and optionally one for the whole run, retries with backoff
//! for the failures worth retrying, and a report per host as each completes.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use ssh_dial::fleet::{Fleet, Host, Retry};
//! use ssh_dial::{Auth, Dialer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hosts = ["web-1:22", "web-2:22", "deploy@db-1"]
//!     .iter()
//!     .map(|spec| Host::parse(spec, "root"))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let fleet = Fleet::builder(Dialer::new())
//!     .auth(Auth::agent())
//!     .concurrency(20)
//!     .host_timeout(Duration::from_secs(30))
//!     .retry(Retry::attempts(3))
//!     .build();
//! let mut run = fleet.run(hosts, "uptime");
//! while let Some(report) = run.next().await {
//!     match &report.outcome {
//!         Ok(out) => println!("{}: {}", report.host, String::from_utf8_lossy(&out.stdout).trim()),
//!         Err(e) => println!("{}: {e}", report.host),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::deadline::deadline_after;
use crate::pool::{Credentials, Destination, Pool, PoolError};
use crate::target::{InvalidTarget, Target, ToTarget};
use crate::{Auth, Client, DialError, DialTimings, Dialer, ExecError, Output, Phase, SftpError};

/// A host to run on: where, as whom, and optionally with its own credentials.
#[derive(Clone, Debug)]
pub struct Host {
    target: Target,
    user: String,
    /// Its own credentials, with the identity a pool tells them apart by.
    auth: Option<Credentials>,
    /// Whether the address named its port: if not, a dialer with an
    /// ssh_config takes the port from the file.
    names_port: bool,
}

impl Host {
    /// A host at `addr` (anything [`Dialer::dial`] accepts), logged into as
    /// `user`. With a dialer that has an
    /// [`ssh_config`](crate::DialerBuilder::ssh_config), `addr` may be an
    /// alias, and an empty `user` is the config's.
    ///
    /// # Errors
    ///
    /// [`InvalidTarget`] if the address cannot be dialed.
    pub fn new(addr: impl ToTarget, user: impl Into<String>) -> Result<Host, InvalidTarget> {
        Ok(Host {
            target: addr.to_target()?,
            user: user.into(),
            auth: None,
            names_port: addr.names_port(),
        })
    }

    /// Parses `[user@]host[:port]`, with `default_user` when none is given.
    ///
    /// # Errors
    ///
    /// [`InvalidTarget`] if the address cannot be dialed.
    pub fn parse(spec: &str, default_user: &str) -> Result<Host, InvalidTarget> {
        let spec = spec.trim();
        match spec.rsplit_once('@') {
            Some((user, addr)) if !user.is_empty() => Host::new(addr, user),
            _ => Host::new(spec, default_user),
        }
    }

    /// Uses these credentials for this host instead of the fleet's. Through
    /// a [pool](FleetBuilder::pool) they are an identity of their own:
    /// connections made with them serve this host and its clones only.
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Host {
        self.auth = Some(Credentials::new(auth));
        self
    }

    /// The address, as `host:port`.
    pub fn addr(&self) -> String {
        self.target.display()
    }

    /// The user to log in as.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl From<&Host> for Destination {
    fn from(host: &Host) -> Destination {
        Destination::from_parts(
            host.target.clone(),
            host.names_port,
            host.user.clone(),
            host.auth.clone(),
        )
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.user.is_empty() {
            return f.write_str(&self.target.display());
        }
        write!(f, "{}@{}", self.user, self.target.display())
    }
}

/// How to retry a failed dial. Only failures that another try may cure are
/// retried (see [`is_retriable`]): a failed TCP connect (refused, timed out,
/// reset, unreachable), a busy resolver, a version exchange that timed out,
/// a connection closed or reset during the handshake. Rejected
/// credentials, host key failures and bad input are not; neither is a failed
/// command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Retry {
    /// One attempt, no retry. The default.
    pub fn never() -> Retry {
        Retry::attempts(1)
    }

    /// Up to `attempts` attempts in all (at least one), waiting 250 ms before
    /// the second, doubling each time up to 4 s, each wait jittered down by
    /// up to half so that a fleet's retries do not arrive in step. All
    /// attempts share the host's deadline.
    pub fn attempts(attempts: u32) -> Retry {
        Retry {
            attempts: attempts.max(1),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
        }
    }

    /// The first wait and the cap on waits.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Retry {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The wait before attempt `next` (2 or more).
    fn delay(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(20);
        let full = self
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        crate::deadline::jittered(full)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry::never()
    }
}

/// Whether another attempt may cure `e`: [`DialError::is_retriable`].
pub fn is_retriable(e: &DialError) -> bool {
    e.is_retriable()
}

/// Runs a command on many hosts. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    dialer: Dialer,
    auth: Option<Auth>,
    concurrency: usize,
    host_timeout: Duration,
    run_timeout: Option<Duration>,
    retry: Retry,
    on_output: Option<Arc<OnOutput>>,
    pool: Option<Pool>,
}

type OnOutput = dyn Fn(Chunk<'_>) + Send + Sync;

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("dialer", &self.dialer)
            .field("concurrency", &self.concurrency)
            .field("host_timeout", &self.host_timeout)
            .field("run_timeout", &self.run_timeout)
            .field("retry", &self.retry)
            .field("on_output", &self.on_output.is_some())
            .field("pool", &self.pool.is_some())
            .finish_non_exhaustive()
    }
}

/// Output of a host's command as it arrives, for
/// [`FleetBuilder::on_output`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Chunk<'a> {
    /// The host.
    pub host: &'a Host,
    /// True for standard error.
    pub stderr: bool,
    /// The bytes, as they came (not split into lines).
    pub bytes: &'a [u8],
}

/// Configures a [`Fleet`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct FleetBuilder {
    fleet: Fleet,
}

impl FleetBuilder {
    /// Credentials for hosts that have none of their own. Default is the
    /// ssh-agent ([`Auth::agent`]).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.fleet.auth = Some(auth);
        self
    }

    /// How many hosts at once. Default is 50; at least 1.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.fleet.concurrency = n.max(1);
        self
    }

    /// The deadline of each host, from its first dial to its command's exit,
    /// retries included. It replaces the dialer's own timeout for these
    /// dials. Default is 60 seconds.
    pub fn host_timeout(mut self, timeout: Duration) -> Self {
        self.fleet.host_timeout = timeout;
        self
    }

    /// A deadline for the whole run: when it passes, hosts in progress are
    /// stopped and they and those not started are reported
    /// [`HostError::Cancelled`]. If `None`, none. Default is `None`.
    pub fn run_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.fleet.run_timeout = timeout.into();
        self
    }

    /// Called with each piece of a command's output as it arrives, on the
    /// host's task (it must not block), for live output (`[host] line`).
    /// The report still carries the output, up to the dialer's
    /// [`max_output`](crate::DialerBuilder::max_output). Default is none.
    pub fn on_output(mut self, f: impl Fn(Chunk<'_>) + Send + Sync + 'static) -> Self {
        self.fleet.on_output = Some(Arc::new(f));
        self
    }

    /// When to try a host again. Default is [`Retry::never`].
    pub fn retry(mut self, retry: Retry) -> Self {
        self.fleet.retry = retry;
        self
    }

    /// Runs each host's command through `pool` instead of a dial of its
    /// own: a host named several times in a run, or in later runs, reuses
    /// the pool's connections (at most the pool's
    /// [`max_sessions_per_connection`](crate::pool::PoolBuilder::max_sessions_per_connection)
    /// at once on each), and a host whose circuit is open fails at once.
    /// The pool's dialer and credentials replace the fleet's (a host's own
    /// credentials still win); the [`host_timeout`](Self::host_timeout)
    /// bounds the checkout and the command together. A [`put`](Fleet::put)
    /// or [`get`](Fleet::get) runs on a pooled connection too, its SFTP
    /// session counted among the connection's sessions. Reports carry no
    /// [`timings`](HostReport::timings): the connection may be older than
    /// the run.
    ///
    /// Default is none: each host is dialed, and its connection closed
    /// after its command.
    pub fn pool(mut self, pool: Pool) -> Self {
        self.fleet.pool = Some(pool);
        self
    }

    /// Builds the fleet.
    pub fn build(self) -> Fleet {
        self.fleet
    }
}

/// What happened on one host.
#[derive(Debug)]
#[non_exhaustive]
pub struct HostReport {
    /// The host.
    pub host: Host,
    /// Dial attempts made (0 if cancelled before the first).
    pub attempts: u32,
    /// From the first attempt to the report.
    pub elapsed: Duration,
    /// The phases of the dial that succeeded, if one did.
    pub timings: Option<DialTimings>,
    /// The command's output, or why there is none. For a transfer
    /// ([`Fleet::put`], [`Fleet::get`]) that succeeded: no output, status 0.
    pub outcome: Result<Output, HostError>,
    /// The bytes a transfer sent or received (`None` for a command).
    pub transferred: Option<u64>,
}

impl HostReport {
    /// True if the command ran and exited 0.
    pub fn is_success(&self) -> bool {
        matches!(&self.outcome, Ok(out) if out.status.success())
    }

    /// Where it failed; `None` if the command ran (whatever its exit status).
    pub fn failed_in(&self) -> Option<FailedIn> {
        match &self.outcome {
            Ok(_) => None,
            Err(HostError::Dial(e)) => Some(FailedIn::Dial(e.phase())),
            Err(HostError::Exec(_)) => Some(FailedIn::Exec),
            Err(HostError::Transfer(_)) => Some(FailedIn::Transfer),
            Err(HostError::Cancelled) => Some(FailedIn::Cancelled),
            Err(HostError::Pool(e)) => Some(match (e.dial_error(), e.exec_error()) {
                (Some(dial), _) if !e.is_circuit_open() => FailedIn::Dial(dial.phase()),
                (_, Some(_)) => FailedIn::Exec,
                _ => FailedIn::Checkout,
            }),
        }
    }
}

/// Where a host's run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailedIn {
    /// This phase of the dial.
    Dial(Phase),
    /// Running the command.
    Exec,
    /// The SFTP transfer.
    Transfer,
    /// The run was cancelled (its deadline passed) before the host finished.
    Cancelled,
    /// Through a pool: no connection was had, and no dial failed for this
    /// request (the host's circuit was open, the wait for a slot timed
    /// out, too many were waiting).
    Checkout,
}

impl FailedIn {
    /// The name used in messages: the dial phase's (`"connect"`, `"auth"`,
    /// ...), `"exec"`, `"transfer"` or `"cancelled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailedIn::Dial(phase) => phase.as_str(),
            FailedIn::Exec => "exec",
            FailedIn::Transfer => "transfer",
            FailedIn::Cancelled => "cancelled",
            FailedIn::Checkout => "checkout",
        }
    }
}

impl fmt::Display for FailedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a host has no output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The dial failed (after any retries).
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The dial worked; running the command failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The dial worked; the SFTP transfer (or a local file) failed.
    #[error(transparent)]
    Transfer(#[from] SftpError),
    /// The run's deadline passed first.
    #[error("cancelled: the run's deadline passed")]
    Cancelled,
    /// Through a [pool](FleetBuilder::pool): the checkout or the command
    /// failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
}

impl Fleet {
    /// Starts configuring a fleet that dials with `dialer`.
    pub fn builder(dialer: Dialer) -> FleetBuilder {
        FleetBuilder {
            fleet: Fleet {
                dialer,
                auth: None,
                concurrency: 50,
                host_timeout: Duration::from_secs(60),
                run_timeout: None,
                retry: Retry::never(),
                on_output: None,
                pool: None,
            },
        }
    }

    /// Starts running `command` on every host, at most `concurrency` at a
    /// time, and returns at once.
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with its time driver enabled
    /// (`enable_time` or `enable_all`, as `#[tokio::main]` does).
    ///
    /// # Cancellation
    ///
    /// Dropping the returned [`FleetRun`] stops the run: hosts in progress
    /// are abandoned like dropped dials (their sockets and session tasks go),
    /// and the rest are not started.
    pub fn run(
        &self,
        hosts: impl IntoIterator<Item = Host>,
        command: impl Into<String>,
    ) -> FleetRun {
        self.start(hosts, Job::Command(Arc::from(command.into())))
    }

    /// Starts uploading the local file `local` to `remote` on every host
    /// over SFTP ([`Sftp::put`](crate::Sftp::put)), as [`run`](Self::run)
    /// runs a command: the host timeout covers dial and transfer.
    ///
    /// # Panics
    ///
    /// As [`run`](Self::run).
    ///
    /// # Cancellation
    ///
    /// As [`run`](Self::run); a transfer abandoned closes its remote file.
    pub fn put(
        &self,
        hosts: impl IntoIterator<Item = Host>,
        local: impl Into<PathBuf>,
        remote: impl Into<String>,
    ) -> FleetRun {
        let job = Job::Transfer(Transfer::Put {
            local: local.into(),
            remote: remote.into(),
        });
        self.start(hosts, job)
    }

    /// Starts downloading `remote` from every host over SFTP into
    /// `local_dir/HOST/NAME`, where HOST is the host's address
    /// ([`Host::addr`], `web-1:22`) and NAME the last part of `remote`.
    ///
    /// # Panics
    ///
    /// As [`run`](Self::run).
    ///
    /// # Cancellation
    ///
    /// As [`put`](Self::put).
    pub fn get(
        &self,
        hosts: impl IntoIterator<Item = Host>,
        remote: impl Into<String>,
        local_dir: impl Into<PathBuf>,
    ) -> FleetRun {
        let job = Job::Transfer(Transfer::Get {
            remote: remote.into(),
            dir: local_dir.into(),
        });
        self.start(hosts, job)
    }

    fn start(&self, hosts: impl IntoIterator<Item = Host>, job: Job) -> FleetRun {
        let hosts: Vec<Host> = hosts.into_iter().collect();
        let total = hosts.len();
        let (tx, rx) = mpsc::channel(self.concurrency);
        let driver = tokio::spawn(drive(self.clone(), hosts, Arc::new(job), tx));
        FleetRun { rx, driver, total }
    }
}

/// What to do on each host.
#[derive(Debug)]
enum Job {
    Command(Arc<str>),
    Transfer(Transfer),
}

/// A file to move over SFTP.
#[derive(Debug)]
enum Transfer {
    Put { local: PathBuf, remote: String },
    Get { remote: String, dir: PathBuf },
}

/// A run in progress: reports arrive as hosts complete. Dropping it stops
/// the run.
#[derive(Debug)]
pub struct FleetRun {
    rx: mpsc::Receiver<HostReport>,
    driver: tokio::task::JoinHandle<()>,
    total: usize,
}

impl FleetRun {
    /// The next host to complete, or `None` when every host has reported.
    ///
    /// # Cancellation
    ///
    /// Cancel safe: a report is never lost by dropping this future.
    pub async fn next(&mut self) -> Option<HostReport> {
        self.rx.recv().await
    }

    /// How many hosts the run has in all.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True if the run has no hosts.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Waits for every report.
    pub async fn collect(mut self) -> Vec<HostReport> {
        let mut all = Vec::with_capacity(self.total);
        while let Some(r) = self.next().await {
            all.push(r);
        }
        all
    }
}

impl Drop for FleetRun {
    fn drop(&mut self) {
        // Aborting the driver drops its JoinSet, which aborts every host task.
        self.driver.abort();
    }
}

async fn drive(fleet: Fleet, hosts: Vec<Host>, job: Arc<Job>, tx: mpsc::Sender<HostReport>) {
    let run_deadline = fleet.run_timeout.map(|t| deadline_after(Instant::now(), t));
    let mut pending = hosts.into_iter();
    let mut running: JoinSet<HostReport> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, Host> = HashMap::new();
    loop {
        while running.len() < fleet.concurrency {
            let Some(host) = pending.next() else { break };
            let handle = running.spawn(run_host(fleet.clone(), host.clone(), job.clone()));
            in_flight.insert(handle.id(), host);
        }
        let joined = match run_deadline {
            Some(deadline) => tokio::select! {
                joined = running.join_next_with_id() => joined,
                () = tokio::time::sleep_until(deadline) => {
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    let left = in_flight.into_values().chain(pending);
                    for host in left {
                        let report = HostReport {
                            host,
                            attempts: 0,
                            elapsed: Duration::ZERO,
                            timings: None,
                            outcome: Err(HostError::Cancelled),
                            transferred: None,
                        };
                        if tx.send(report).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
            },
            None => running.join_next_with_id().await,
        };
        match joined {
            None => return,
            Some(Ok((id, report))) => {
                in_flight.remove(&id);
                if tx.send(report).await.is_err() {
                    // Nobody is listening: dropping `running` stops the rest.
                    return;
                }
            }
            // A host task panicked; there is nothing to report it with but
            // its host.
            Some(Err(e)) => {
                if let Some(host) = in_flight.remove(&e.id()) {
                    tracing::error!(%host, error = %e, "fleet host task failed");
                }
            }
        }
    }
}

async fn run_host(fleet: Fleet, host: Host, job: Arc<Job>) -> HostReport {
    if let Some(pool) = &fleet.pool {
        return run_pooled(&fleet, pool, host, &job).await;
    }
    let start = Instant::now();
    let deadline = deadline_after(start, fleet.host_timeout);
    let auth = host
        .auth
        .as_ref()
        .map(|own| own.auth().clone())
        .or(fleet.auth.clone())
        .unwrap_or_else(Auth::agent);
    let mut attempts = 0;
    let report = |attempts, timings, (outcome, transferred)| HostReport {
        host: host.clone(),
        attempts,
        elapsed: start.elapsed(),
        timings,
        outcome,
        transferred,
    };
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let dialer = fleet.dialer.with_timeout(remaining);
        let dialed = if host.names_port {
            dialer
                .dial(&host.target, host.user.as_str(), auth.clone())
                .await
        } else {
            dialer
                .dial(host.target.host(), host.user.as_str(), auth.clone())
                .await
        };
        match dialed {
            Ok(client) => {
                let timings = client.timings();
                let result = match &*job {
                    Job::Command(command) => {
                        let result = run_command(&fleet, &host, &client, command, deadline).await;
                        (result.map_err(HostError::Exec), None)
                    }
                    Job::Transfer(t) => match transfer(&client, &host, t, deadline, || {}).await {
                        Ok(n) => (Ok(transferred()), Some(n)),
                        Err(e) => (Err(HostError::Transfer(e)), None),
                    },
                };
                // A goodbye, within what is left of the deadline.
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = tokio::time::timeout(left, client.close()).await;
                return report(attempts, Some(timings), result);
            }
            Err(e) => {
                if attempts < fleet.retry.attempts && is_retriable(&e) {
                    let wait = fleet.retry.delay(attempts + 1);
                    if Instant::now()
                        .checked_add(wait)
                        .is_some_and(|at| at < deadline)
                    {
                        tracing::debug!(host = %host, error = %e, ?wait, "retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
                return report(attempts, None, (Err(HostError::Dial(e)), None));
            }
        }
    }
}

/// A host's job through the fleet's pool, retried as the fleet's [`Retry`]
/// says for failures no command ran in. A transfer runs on a pooled
/// connection like a command; its SFTP session is counted among the
/// connection's sessions.
async fn run_pooled(fleet: &Fleet, pool: &Pool, host: Host, job: &Job) -> HostReport {
    let start = Instant::now();
    let deadline = deadline_after(start, fleet.host_timeout);
    let dest = Destination::from(&host);
    let mut attempts = 0;
    let command = match job {
        Job::Command(command) => command,
        Job::Transfer(t) => return transfer_pooled(pool, host, &dest, t, start, deadline).await,
    };
    loop {
        attempts += 1;
        let mut run = pool.command(&dest, &**command);
        run.timeout(deadline.saturating_duration_since(Instant::now()));
        let result = match &fleet.on_output {
            Some(sink) => {
                let mut chunk = |stderr: bool, bytes: &[u8]| {
                    sink(Chunk {
                        host: &host,
                        stderr,
                        bytes,
                    })
                };
                run.output_with(&mut chunk).await
            }
            None => run.output().await,
        };
        let e = match result {
            Ok(out) => {
                return HostReport {
                    host,
                    attempts,
                    elapsed: start.elapsed(),
                    timings: None,
                    outcome: Ok(out),
                    transferred: None,
                }
            }
            Err(e) => e,
        };
        if attempts < fleet.retry.attempts && e.exec_error().is_none() && e.is_retriable() {
            let wait = fleet
                .retry
                .delay(attempts + 1)
                .max(e.retry_after().unwrap_or_default());
            if Instant::now()
                .checked_add(wait)
                .is_some_and(|at| at < deadline)
            {
                tracing::debug!(host = %host, error = %e, ?wait, "retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        return HostReport {
            host,
            attempts,
            elapsed: start.elapsed(),
            timings: None,
            outcome: Err(HostError::Pool(e)),
            transferred: None,
        };
    }
}

/// A put or get on a connection checked out of the pool, under what is left
/// of the host's deadline.
async fn transfer_pooled(
    pool: &Pool,
    host: Host,
    dest: &Destination,
    job: &Transfer,
    start: Instant,
    deadline: Instant,
) -> HostReport {
    let (outcome, transferred) = match pool.get_by(dest, deadline).await {
        // The session's channel is counted by the connection once open:
        // the checkout stops counting it then (until then it counts twice,
        // never too few).
        Ok(mut client) => {
            let conn = client.client().clone();
            match transfer(&conn, &host, job, deadline, || client.counted()).await {
                Ok(n) => (Ok(transferred()), Some(n)),
                Err(e) => (Err(HostError::Transfer(e)), None),
            }
        }
        Err(e) => (Err(HostError::Pool(e)), None),
    };
    HostReport {
        host,
        attempts: 1,
        elapsed: start.elapsed(),
        timings: None,
        outcome,
        transferred,
    }
}

/// Runs the command under what is left of the host's deadline.
async fn run_command(
    fleet: &Fleet,
    host: &Host,
    client: &Client,
    command: &str,
    deadline: Instant,
) -> Result<Output, ExecError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut run = client.command(command);
    run.timeout(remaining);
    match &fleet.on_output {
        Some(sink) => {
            run.output_with(|stderr, bytes| {
                sink(Chunk {
                    host,
                    stderr,
                    bytes,
                })
            })
            .await
        }
        None => run.output().await,
    }
}

/// A transfer's report when it worked: no output, status 0.
fn transferred() -> Output {
    Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
        status: crate::ExitStatus::Code(0),
        truncated: false,
    }
}

/// Puts or gets over SFTP under what is left of the host's deadline.
/// `opened` runs once the SFTP session's channel is open.
async fn transfer(
    client: &Client,
    host: &Host,
    job: &Transfer,
    deadline: Instant,
    opened: impl FnOnce(),
) -> Result<u64, SftpError> {
    let (op, remote) = match job {
        Transfer::Put { remote, .. } => ("put", remote),
        Transfer::Get { remote, .. } => ("get", remote),
    };
    // One bound over it all: the open, the local directory, the transfer.
    let remaining = deadline.saturating_duration_since(Instant::now());
    crate::sftp::within(op, remote, Some(remaining), async {
        let sftp = client.sftp_builder().timeout(remaining).open().await?;
        opened();
        match job {
            Transfer::Put { local, remote } => sftp.put(local, remote).await,
            Transfer::Get { remote, dir } => {
                let name = remote.rsplit('/').find(|n| !n.is_empty()).unwrap_or("file");
                let dir = dir.join(host.addr());
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| SftpError::local("get", remote, e))?;
                sftp.get(remote, dir.join(name)).await
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_with_and_without_user() {
        let h = Host::parse("deploy@db-1:2222", "root").unwrap();
        assert_eq!((h.user(), h.addr().as_str()), ("deploy", "db-1:2222"));
        let h = Host::parse("web-1", "root").unwrap();
        assert_eq!(h.to_string(), "root@web-1:22");
        assert!(Host::parse("u@host:0", "root").is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let r = Retry::attempts(10).backoff(Duration::from_millis(100), Duration::from_millis(350));
        for (next, full) in [(2, 100), (3, 200), (4, 350), (9, 350)] {
            let d = r.delay(next);
            let full = Duration::from_millis(full);
            assert!(d >= full / 2 && d <= full, "attempt {next}: {d:?}");
        }
        assert_eq!(Retry::attempts(0), Retry::never());
    }
}
