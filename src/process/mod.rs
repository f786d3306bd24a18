//! Commands as processes, in the shape of `tokio::process`: every channel
//! bounded in time and memory, and closed whatever is dropped when.
//!
//! - [`Command`] builds a command line (quoted [`arg`](Command::arg)s,
//!   environment, directory, terminal, stdio, deadline, output cap) and runs
//!   it: [`output`](Command::output), [`status`](Command::status),
//!   [`spawn`](Command::spawn).
//! - [`RemoteProcess`] is the running command: its pipes, `wait`, `kill`.
//! - The channel itself belongs to a task (`channel.rs`), never to a future
//!   the caller can drop: that file says why.

mod child;
mod error;
mod status;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use russh::client::Handle;
use tokio::time::Instant;

pub use child::{ProcessStderr, ProcessStdin, ProcessStdout, RemoteProcess};
pub use error::ExecError;
pub use status::Output;

use crate::channel::{
    self, quote, Closing, Exec, ExitStatus, Failure, Open, Overflow, Owner, Pipe, Pty, Request,
    Shared,
};
use crate::handshake::ClientHandler;

/// The default output cap, per stream.
pub(crate) const DEFAULT_MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// What to connect to a command's standard input, output or error, like
/// `std::process::Stdio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stdio(Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Piped,
    Null,
}

impl Stdio {
    /// A pipe: for stdin, a [`ProcessStdin`] to write to (EOF when it is shut
    /// down or dropped); for stdout and stderr, a reader and the output
    /// collected by `output`.
    pub fn piped() -> Stdio {
        Stdio(Kind::Piped)
    }

    /// Nothing: for stdin, EOF as soon as the command starts; for stdout
    /// and stderr, the output is read and discarded (never counted toward
    /// the cap).
    pub fn null() -> Stdio {
        Stdio(Kind::Null)
    }

    fn is_null(self) -> bool {
        self.0 == Kind::Null
    }
}

/// A signal to send to a remote command ([`RemoteProcess::signal`]): the
/// names RFC 4254 defines. OpenSSH's sshd (7.9 and later) delivers them to
/// the command's process group, except for root logins and subsystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Signal {
    Abrt,
    Alrm,
    Fpe,
    Hup,
    Ill,
    Int,
    Kill,
    Pipe,
    Quit,
    Segv,
    Term,
    Usr1,
    Usr2,
}

impl Signal {
    /// The name on the wire, without `SIG`: `"TERM"`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Abrt => "ABRT",
            Signal::Alrm => "ALRM",
            Signal::Fpe => "FPE",
            Signal::Hup => "HUP",
            Signal::Ill => "ILL",
            Signal::Int => "INT",
            Signal::Kill => "KILL",
            Signal::Pipe => "PIPE",
            Signal::Quit => "QUIT",
            Signal::Segv => "SEGV",
            Signal::Term => "TERM",
            Signal::Usr1 => "USR1",
            Signal::Usr2 => "USR2",
        }
    }

    fn to_russh(self) -> russh::Sig {
        use russh::Sig;
        match self {
            Signal::Abrt => Sig::ABRT,
            Signal::Alrm => Sig::ALRM,
            Signal::Fpe => Sig::FPE,
            Signal::Hup => Sig::HUP,
            Signal::Ill => Sig::ILL,
            Signal::Int => Sig::INT,
            Signal::Kill => Sig::KILL,
            Signal::Pipe => Sig::PIPE,
            Signal::Quit => Sig::QUIT,
            Signal::Segv => Sig::SEGV,
            Signal::Term => Sig::TERM,
            Signal::Usr1 => Sig::USR1,
            Signal::Usr2 => Sig::Custom("USR2".into()),
        }
    }
}

/// A command to run on the server, from [`Client::command`](crate::Client::command):
/// a builder in the shape of `tokio::process::Command`.
///
/// The command line is run by the user's login shell on the server, as
/// `ssh host LINE` runs it. [`arg`](Self::arg) appends a word quoted for a
/// POSIX shell, so that it reaches the program as one argument whatever it
/// holds; [`raw_arg`](Self::raw_arg) appends it as it is.
///
/// Every run is bounded: by the [`timeout`](Self::timeout) from the channel
/// open to the exit status, and by [`max_output`](Self::max_output) per
/// stream. What one command can hold in memory: up to `max_output` bytes
/// for each piped stream (stdout, stderr), plus russh's queue for the
/// channel (at most 100 messages of at most 32 KiB, only while the data is
/// on its way into the pipes, which are always drained).
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: &ssh_dial::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tokio::io::AsyncBufReadExt;
///
/// // One word per argument, whatever is in the file name.
/// let out = client.command("ls").arg("-l").arg("my file; rm -rf ~").output().await?;
/// println!("{}: {}", out.status, String::from_utf8_lossy(&out.stdout));
///
/// // Streaming, for an hour at most.
/// let mut tail = client
///     .command("tail -F /var/log/syslog")
///     .timeout(Duration::from_secs(3600))
///     .spawn()
///     .await?;
/// let mut lines = tokio::io::BufReader::new(tail.take_stdout().unwrap()).lines();
/// while let Some(line) = lines.next_line().await? {
///     println!("{line}");
/// }
/// # Ok(()) }
/// ```
pub struct Command {
    handle: Arc<Handle<ClientHandler>>,
    closing: Arc<Closing>,
    line: String,
    env: Vec<(String, String)>,
    dir: Option<String>,
    pty: Option<Pty>,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    timeout: Option<Duration>,
    max_output: Option<usize>,
    kill_at_max_output: bool,
    kill_on_drop: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Environment values may be secrets: names only.
        f.debug_struct("Command")
            .field("line", &crate::text::PeerText::new(&self.line))
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("current_dir", &self.dir)
            .field("pty", &self.pty)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("timeout", &self.timeout)
            .field("max_output", &self.max_output)
            .field("kill_at_max_output", &self.kill_at_max_output)
            .field("kill_on_drop", &self.kill_on_drop)
            .finish()
    }
}

impl Command {
    pub(crate) fn new(
        handle: Arc<Handle<ClientHandler>>,
        closing: Arc<Closing>,
        line: String,
        timeout: Option<Duration>,
        max_output: Option<usize>,
    ) -> Self {
        Command {
            handle,
            closing,
            line,
            env: Vec::new(),
            dir: None,
            pty: None,
            stdin: None,
            stdout: None,
            stderr: None,
            timeout,
            max_output,
            kill_at_max_output: false,
            kill_on_drop: true,
        }
    }

    /// Appends `arg` as one word, quoted for a POSIX shell (`'...'`, with
    /// `'` as `'\''`) unless it is made only of characters no shell treats
    /// specially. A NUL byte makes the run fail with
    /// [`ExecError::is_invalid_input`].
    pub fn arg(&mut self, arg: impl AsRef<str>) -> &mut Self {
        self.line.push(' ');
        self.line.push_str(&quote(arg.as_ref()));
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

    /// Appends `arg` as it is, after a space: the shell on the server
    /// interprets it (globs, variables, `;`, `|`). Never pass text you do
    /// not control here.
    pub fn raw_arg(&mut self, arg: impl AsRef<str>) -> &mut Self {
        self.line.push(' ');
        self.line.push_str(arg.as_ref());
        self
    }

    /// Sets an environment variable for the command. It is sent as an SSH
    /// `env` request; OpenSSH's sshd accepts only the names its `AcceptEnv`
    /// lists (by default none, or `LANG LC_*` on Debian), so a refused
    /// variable is set by the shell instead: the line becomes
    /// `export NAME='value'; LINE` (a POSIX shell on the server is assumed
    /// then; a name that is not a shell name fails as refused).
    pub fn env(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets each of `vars` as [`env`](Self::env) does.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Runs the command in `dir` on the server: the line becomes
    /// `cd 'dir' && LINE` (a POSIX shell is assumed). Default is the login
    /// directory.
    pub fn current_dir(&mut self, dir: impl Into<String>) -> &mut Self {
        self.dir = Some(dir.into());
        self
    }

    /// Runs the command on a pseudo-terminal of this type and size (stdout
    /// and stderr then arrive together on stdout). Default is no terminal.
    pub fn pty(&mut self, term: impl Into<String>, cols: u32, rows: u32) -> &mut Self {
        self.pty = Some(Pty {
            term: term.into(),
            cols,
            rows,
        });
        self
    }

    /// The command's standard input. Default is [`Stdio::piped`] for
    /// [`spawn`](Self::spawn) and [`Stdio::null`] (EOF at once) for
    /// [`output`](Self::output) and [`status`](Self::status).
    pub fn stdin(&mut self, stdin: Stdio) -> &mut Self {
        self.stdin = Some(stdin);
        self
    }

    /// The command's standard output. Default is [`Stdio::piped`], except
    /// for [`status`](Self::status): [`Stdio::null`].
    pub fn stdout(&mut self, stdout: Stdio) -> &mut Self {
        self.stdout = Some(stdout);
        self
    }

    /// The command's standard error. Default is [`Stdio::piped`], except
    /// for [`status`](Self::status): [`Stdio::null`].
    pub fn stderr(&mut self, stderr: Stdio) -> &mut Self {
        self.stderr = Some(stderr);
        self
    }

    /// The deadline, from asking for the channel to the exit status. When
    /// it passes, the command is sent `KILL` and its channel closed.
    ///
    /// If `None`, it may run forever. Default is the dialer's
    /// [`exec_timeout`](crate::DialerBuilder::exec_timeout) (60 seconds).
    pub fn timeout(&mut self, timeout: impl Into<Option<Duration>>) -> &mut Self {
        self.timeout = timeout.into();
        self
    }

    /// The most output kept per piped stream: for [`output`](Self::output),
    /// the bytes collected; for [`spawn`](Self::spawn), the bytes buffered
    /// unread. Past it the output is read and discarded, the command runs
    /// on, and [`Output::truncated`] is set (a reader of a spawned process
    /// gets an error where bytes were dropped, then the rest); unless
    /// [`kill_at_max_output`](Self::kill_at_max_output).
    ///
    /// If `None`, unbounded. Default is the dialer's
    /// [`max_output`](crate::DialerBuilder::max_output) (16 MiB).
    pub fn max_output(&mut self, max: impl Into<Option<usize>>) -> &mut Self {
        self.max_output = max.into();
        self
    }

    /// Whether a command whose output passes [`max_output`](Self::max_output)
    /// is ended there: sent `KILL`, its channel closed, its status
    /// [`ExitStatus::EndedByUs`]`(`[`EndReason::MaxOutput`](crate::EndReason::MaxOutput)`)`. Default is
    /// `false`: it runs on, the excess discarded.
    pub fn kill_at_max_output(&mut self, kill: bool) -> &mut Self {
        self.kill_at_max_output = kill;
        self
    }

    /// Whether dropping the [`RemoteProcess`] ends the command: sends
    /// `KILL` and closes its channel. If `false`, a dropped process runs on
    /// to its end or its deadline, its stdin closed and its output read and
    /// discarded, and its channel is closed then. Default is `true`.
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Self {
        self.kill_on_drop = kill;
        self
    }

    /// Starts the command and returns once the server has started it, with
    /// its pipes.
    ///
    /// # Errors
    ///
    /// [`ExecError::is_invalid_input`] before anything is sent;
    /// [`ExecError::is_timeout`] if the deadline passed before the command
    /// started; [`ExecError::is_refused`] if the server refused the channel,
    /// the terminal or the command; [`ExecError::is_closed`] if the session
    /// is gone.
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with its time driver enabled.
    ///
    /// # Cancellation
    ///
    /// Cancel safe in the sense that matters: dropping the future at any
    /// point leaves nothing behind. A channel already open is closed (the
    /// command sent `KILL` if it may have started); an open the server has
    /// not answered is closed when it does.
    pub async fn spawn(&mut self) -> Result<RemoteProcess, ExecError> {
        self.start([Stdio::piped(), Stdio::piped(), Stdio::piped()])
            .await
    }

    /// Runs the command to its end and collects its output, at most
    /// [`max_output`](Self::max_output) per stream. Stdin is null unless
    /// set.
    ///
    /// A non-zero exit is not an error: look at [`Output::status`]. The
    /// command is over once the server has sent its exit status and EOF,
    /// whether or not it then closes the channel; a channel closed without
    /// an exit status gives [`ExitStatus::NotSent`].
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn); and [`ExecError::is_timeout`] if the
    /// deadline passed, with what the command had printed so far (and its
    /// status, if the server had sent it) in [`ExecError::partial_output`].
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with its time driver enabled.
    ///
    /// # Cancellation
    ///
    /// Dropping the future sends the command `KILL` and closes its channel
    /// (or, before the server has opened it, closes it when it does).
    pub async fn output(&mut self) -> Result<Output, ExecError> {
        self.start([Stdio::null(), Stdio::piped(), Stdio::piped()])
            .await?
            .wait_with_output()
            .await
    }

    /// Runs the command to its end and returns its status; stdin is null
    /// and the output discarded unless set.
    ///
    /// # Errors
    ///
    /// As [`output`](Self::output).
    ///
    /// # Cancellation
    ///
    /// As [`output`](Self::output).
    pub async fn status(&mut self) -> Result<ExitStatus, ExecError> {
        self.start([Stdio::null(), Stdio::null(), Stdio::null()])
            .await?
            .wait()
            .await
    }

    /// The output cap per stream, as set or the dialer's.
    pub(crate) fn cap(&self) -> Option<usize> {
        self.max_output
    }

    /// [`output`](Self::output), handing each chunk to `on_chunk` as it
    /// arrives (`true` for stderr), whatever the cap keeps.
    pub(crate) async fn output_with(
        &mut self,
        on_chunk: impl FnMut(bool, &[u8]),
    ) -> Result<Output, ExecError> {
        let cap = self.max_output;
        self.start([Stdio::null(), Stdio::piped(), Stdio::piped()])
            .await?
            .collect_streaming(cap, on_chunk)
            .await
    }

    /// Spawns the channel task and waits for the command to start;
    /// `defaults` for stdin, stdout and stderr where they are not set.
    async fn start(&mut self, defaults: [Stdio; 3]) -> Result<RemoteProcess, ExecError> {
        let start = Instant::now();
        let [stdin, stdout, stderr] = defaults;
        let stdin_null = self.stdin.unwrap_or(stdin).is_null();
        let request = self
            .request(stdin_null)
            .map_err(|why| ExecError::new(Failure::InvalidInput(why), start.elapsed()))?;
        let (out, err) = (self.stdout.unwrap_or(stdout), self.stderr.unwrap_or(stderr));
        let shared = Arc::new(Shared::new(
            Pipe::new(out.is_null(), self.max_output),
            Pipe::new(err.is_null(), self.max_output),
        ));
        // From here a drop of this future is the owner's drop.
        let owner = Owner::new(shared.clone(), self.closing.clone(), self.kill_on_drop);
        // Counted in use before this first poll returns, not when the task
        // gets to run: whoever shares the connection sees it at once.
        shared.lock().counted = Some(self.closing.count_session());
        tokio::spawn(channel::run(
            Some(self.handle.clone()),
            request,
            shared.clone(),
            self.closing.clone(),
        ));
        shared.wait_for(|s| s.started || s.outcome.is_some()).await;
        RemoteProcess::started(owner, start, out.is_null(), err.is_null())
    }

    /// What the channel task is to do, once the input is checked.
    fn request(&self, stdin_null: bool) -> Result<Request, String> {
        self.validate()?;
        let line = match &self.dir {
            Some(dir) => format!("cd {} && {}", quote(dir), self.line),
            None => self.line.clone(),
        };
        Ok(Request {
            open: Open::Session,
            exec: Some(Exec {
                line,
                env: self.env.clone(),
                pty: self.pty.clone(),
                subsystem: false,
            }),
            deadline: self
                .timeout
                .map(|t| crate::deadline::deadline_after(Instant::now(), t)),
            stdin_null,
            kill_on_drop: self.kill_on_drop,
            overflow: if self.kill_at_max_output {
                Overflow::Kill
            } else {
                Overflow::Discard
            },
        })
    }

    fn validate(&self) -> Result<(), String> {
        if self.line.contains('\0') {
            return Err("the command or an argument contains a NUL byte".into());
        }
        if self.line.trim().is_empty() {
            return Err("the command is empty".into());
        }
        if self.dir.as_deref().is_some_and(|d| d.contains('\0')) {
            return Err("the directory contains a NUL byte".into());
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains(['\0', '=']) || value.contains('\0') {
                return Err(format!(
                    "environment variable {:?} is not a valid name and value",
                    crate::text::PeerText::new(name)
                ));
            }
        }
        if let Some(Pty { term, cols, rows }) = &self.pty {
            if *cols == 0 || *rows == 0 || term.is_empty() || term.contains('\0') {
                return Err(format!(
                    "pty {:?} {cols}x{rows} is not a terminal",
                    crate::text::PeerText::new(term)
                ));
            }
        }
        Ok(())
    }
}
