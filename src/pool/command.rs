//! [`PoolCommand`]: a command line run on a checkout, once more on another
//! slot or a fresh connection if it failed before it could have started.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::error::Kind;
use super::lease::Lease;
use super::state::bump;
use super::{Destination, Pool, PoolError};
use crate::channel::{ExitStatus, Pty};
use crate::process::{Command, ExecError, Output, Stdio};

/// Where streamed output goes: `true` for stderr.
pub(crate) type Sink<'a> = &'a mut (dyn FnMut(bool, &[u8]) + Send);

/// A command to run on a destination through a [`Pool`], from
/// [`Pool::command`]: the builder of [`Command`](crate::Command), for a
/// command that does not care which connection runs it.
///
/// It runs on a session slot checked out of the pool. If it fails before
/// its exec request was sent, because the server refused the session
/// channel (`MaxSessions` lower than the pool thought) or because the
/// connection turned out dead within one keepalive interval of the
/// request, it runs once more on another slot or a fresh connection,
/// within the same deadline. A command that may have started never runs
/// twice; neither does one whose connection went silent (it waited for a
/// keepalive to give up: the host is likely gone, and a second wait would
/// double the caller's).
///
/// # Examples
///
/// ```no_run
/// # async fn run(pool: &ssh_dial::pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use ssh_dial::pool::Destination;
///
/// let web = Destination::parse("web-1", "deploy")?;
/// let out = pool
///     .command(&web, "systemctl")
///     .arg("is-active")
///     .arg("nginx")
///     .timeout(Duration::from_secs(5)) // checkout and command, together
///     .output()
///     .await?;
/// println!("{}", String::from_utf8_lossy(&out.stdout).trim());
/// # Ok(()) }
/// ```
pub struct PoolCommand {
    pool: Pool,
    dest: Destination,
    line: String,
    env: Vec<(String, String)>,
    dir: Option<String>,
    pty: Option<Pty>,
    timeout: Option<Option<Duration>>,
    max_output: Option<Option<usize>>,
    kill_at_max_output: bool,
}

impl fmt::Debug for PoolCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Environment values may be secrets: names only.
        f.debug_struct("PoolCommand")
            .field("dest", &self.dest)
            .field("line", &crate::text::PeerText::new(&self.line))
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("current_dir", &self.dir)
            .field("pty", &self.pty)
            .field("timeout", &self.timeout)
            .field("max_output", &self.max_output)
            .field("kill_at_max_output", &self.kill_at_max_output)
            .finish()
    }
}

impl PoolCommand {
    pub(super) fn new(pool: Pool, dest: Destination, line: String) -> Self {
        PoolCommand {
            pool,
            dest,
            line,
            env: Vec::new(),
            dir: None,
            pty: None,
            timeout: None,
            max_output: None,
            kill_at_max_output: false,
        }
    }

    /// Appends `arg` as one word, quoted for a POSIX shell, as
    /// [`Command::arg`] does.
    pub fn arg(&mut self, arg: impl AsRef<str>) -> &mut Self {
        self.line.push(' ');
        self.line.push_str(&crate::channel::quote(arg.as_ref()));
        self
    }

    /// Appends each of `args` as [`arg`](Self::arg) does.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for arg in args {
            self.arg(arg);
        }
        self
    }

    /// Appends `arg` as it is, after a space, as [`Command::raw_arg`] does:
    /// the server's shell interprets it.
    pub fn raw_arg(&mut self, arg: impl AsRef<str>) -> &mut Self {
        self.line.push(' ');
        self.line.push_str(arg.as_ref());
        self
    }

    /// Sets an environment variable, as [`Command::env`] does.
    pub fn env(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs the command in `dir`, as [`Command::current_dir`] does.
    pub fn current_dir(&mut self, dir: impl Into<String>) -> &mut Self {
        self.dir = Some(dir.into());
        self
    }

    /// Runs the command on a pseudo-terminal, as [`Command::pty`] does.
    pub fn pty(&mut self, term: impl Into<String>, cols: u32, rows: u32) -> &mut Self {
        self.pty = Some(Pty {
            term: term.into(),
            cols,
            rows,
        });
        self
    }

    /// One deadline over the checkout (a dial included) and the command,
    /// from the call to the exit status; the checkout is also bounded by
    /// the pool's [`checkout_timeout`](super::PoolBuilder::checkout_timeout).
    ///
    /// If `None`, the command may run forever once it has a slot. Default
    /// is the pool's `checkout_timeout` for the checkout, then the
    /// dialer's [`exec_timeout`](crate::DialerBuilder::exec_timeout) (60
    /// seconds) for the command.
    pub fn timeout(&mut self, timeout: impl Into<Option<Duration>>) -> &mut Self {
        self.timeout = Some(timeout.into());
        self
    }

    /// The most output kept per stream, as [`Command::max_output`].
    ///
    /// If `None`, unbounded. Default is the dialer's
    /// [`max_output`](crate::DialerBuilder::max_output) (16 MiB).
    pub fn max_output(&mut self, max: impl Into<Option<usize>>) -> &mut Self {
        self.max_output = Some(max.into());
        self
    }

    /// Whether output past [`max_output`](Self::max_output) ends the
    /// command, as [`Command::kill_at_max_output`]. Default is `false`.
    pub fn kill_at_max_output(&mut self, kill: bool) -> &mut Self {
        self.kill_at_max_output = kill;
        self
    }

    /// Runs the command to its end on a pooled connection and collects its
    /// output (stdin is null). A non-zero exit is not an error.
    ///
    /// # Errors
    ///
    /// As [`Pool::get`] for the checkout ([`PoolError::is_timeout`],
    /// [`PoolError::dial_error`], [`PoolError::is_circuit_open`],
    /// [`PoolError::is_busy`], [`PoolError::is_pool_closed`]); then the
    /// command's [`ExecError`](crate::ExecError) in
    /// [`PoolError::exec_error`], as [`Command::output`] gives it.
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with its time driver enabled.
    ///
    /// # Cancellation
    ///
    /// As [`Command::output`]: dropping the future sends the command
    /// `KILL` and closes its channel (an open not yet answered is closed
    /// when it is); the slot goes back and the connection stays pooled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(pool: &ssh_dial::pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// use ssh_dial::pool::Destination;
    /// let db = Destination::parse("db-1", "postgres")?;
    /// match pool.command(&db, "pg_isready").output().await {
    ///     Ok(out) => println!("{}", out.status),
    ///     Err(e) if e.is_circuit_open() => println!("db-1 is down; next try in {:?}", e.retry_after()),
    ///     Err(e) => println!("{e}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn output(&mut self) -> Result<Output, PoolError> {
        self.run(false, None).await
    }

    /// Runs the command to its end and returns its status; stdin is null
    /// and the output discarded.
    ///
    /// # Errors
    ///
    /// As [`output`](Self::output).
    ///
    /// # Cancellation
    ///
    /// As [`output`](Self::output).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(pool: &ssh_dial::pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// use ssh_dial::pool::Destination;
    /// let web = Destination::parse("web-1", "deploy")?;
    /// let up = pool.command(&web, "systemctl is-active --quiet nginx").status().await?;
    /// println!("nginx {}", if up.success() { "up" } else { "down" });
    /// # Ok(()) }
    /// ```
    pub async fn status(&mut self) -> Result<ExitStatus, PoolError> {
        self.run(true, None).await.map(|out| out.status)
    }

    /// [`output`](Self::output), handing each chunk to `on_chunk` as it
    /// arrives (`true` for stderr).
    pub(crate) async fn output_with(&mut self, on_chunk: Sink<'_>) -> Result<Output, PoolError> {
        self.run(false, Some(on_chunk)).await
    }

    /// The command on `client`'s connection, with this builder's settings.
    fn build(&self, client: &crate::Client, discard: bool, deadline: Option<Instant>) -> Command {
        let mut c = client.command(self.line.clone());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(dir) = &self.dir {
            c.current_dir(dir);
        }
        if let Some(Pty { term, cols, rows }) = &self.pty {
            c.pty(term, *cols, *rows);
        }
        if let Some(max) = self.max_output {
            c.max_output(max);
        }
        match (self.timeout, deadline) {
            (Some(_), Some(deadline)) => {
                c.timeout(deadline.saturating_duration_since(Instant::now()));
            }
            (Some(None), _) => {
                c.timeout(None);
            }
            _ => {}
        }
        c.kill_at_max_output(self.kill_at_max_output);
        c.stdin(Stdio::null());
        if discard {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        }
        c
    }

    async fn run(
        &mut self,
        discard: bool,
        mut on_chunk: Option<Sink<'_>>,
    ) -> Result<Output, PoolError> {
        let start = Instant::now();
        let inner = self.pool.inner.clone();
        let deadline = self
            .timeout
            .flatten()
            .map(|t| crate::deadline::deadline_after(start, t));
        let checkout_by = crate::deadline::deadline_after(start, inner.config.checkout_timeout);
        let checkout_by = deadline.map_or(checkout_by, |d| d.min(checkout_by));
        // How soon a dead connection must show for the command to run again.
        let quick = inner
            .dialer
            .ssh_keepalive_interval()
            .unwrap_or(Duration::from_secs(5));
        let exec_error =
            |e: ExecError| PoolError::new(self.dest.to_string(), Kind::Exec(e), start.elapsed());
        let mut again = true;
        loop {
            let mut lease: Lease = inner.checkout(&self.dest, checkout_by).await?;
            let mut command = self.build(lease.client(), discard, deadline);
            let cap = command.cap();
            // The channel is counted in use during the first poll of
            // `spawn`: the lease stops counting it right after, so the
            // connection is never seen with a slot it does not have.
            let mut spawn = std::pin::pin!(command.spawn());
            let mut first = true;
            let spawned = std::future::poll_fn(|cx| {
                let polled = spawn.as_mut().poll(cx);
                if std::mem::take(&mut first) {
                    lease.counted();
                }
                polled
            })
            .await;
            let process = match spawned {
                Ok(process) => process,
                Err(e) => {
                    let refused = e.is_session_refused();
                    if refused {
                        bump(&inner.counters.refused);
                        crate::metrics::pool_session_refused();
                        lease.refused();
                    }
                    // Found dead at once (not after a keepalive's wait).
                    let dead = e.is_closed() && lease.granted().elapsed() < quick;
                    let in_time = deadline.is_none_or(|d| Instant::now() < d);
                    if again && e.never_started() && (refused || dead) && in_time {
                        again = false;
                        bump(&inner.counters.retries);
                        crate::metrics::pool_retry();
                        tracing::debug!(error = %e, "running the command again on another slot");
                        drop(lease);
                        continue;
                    }
                    return Err(exec_error(e));
                }
            };
            let result = match on_chunk.as_mut() {
                Some(sink) => process.collect_streaming(cap, |e, b| sink(e, b)).await,
                None => process.wait_with_output().await,
            };
            return result.map_err(exec_error);
        }
    }
}
