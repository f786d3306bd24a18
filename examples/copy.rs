//! scp over SFTP, every step bounded: files (and with `-r` directories)
//! to or from one host.
//!
//! ```text
//! cargo run --example copy -- --help
//! cargo run --example copy -- -p 2222 --accept-any-host-key build/app.tgz deploy@127.0.0.1:/srv/
//! cargo run --example copy -- -r -J bastion deploy@db:/var/log/app ./logs
//! ```
//!
//! Remote paths are `[USER@]HOST:PATH` (`[::1]:PATH` for an IPv6
//! address; a local path with a colon is written `./a:b`); every SOURCE is
//! on one side, DESTINATION on the other. A destination that is a
//! directory gets each source under its own name; otherwise it is the
//! file's new name (one source only). Hosts are looked up in ssh_config as
//! `ssh` looks them up (`-F FILE`). On a terminal a progress bar shows on
//! stderr. Exit status 0 when everything was copied; any failure prints
//! one line starting with `error:` and exits 255, like `scp`.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ssh_dial::{Auth, Client, Dialer, HostKeys, JumpHost, Metadata, Sftp, SshConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Copy files to or from an SSH server over SFTP, under deadlines.
#[derive(Parser)]
#[command(name = "copy")]
struct Args {
    /// What to copy: local paths, or [USER@]HOST:PATH (all on one side),
    /// then where to.
    #[arg(required = true, num_args = 2.., value_name = "SOURCE... DESTINATION")]
    paths: Vec<String>,
    /// Copy directories and what they hold.
    #[arg(short = 'r')]
    recursive: bool,
    /// Private key file, tried before the agent and the config's keys.
    #[arg(short = 'i', value_name = "KEYFILE")]
    key: Option<PathBuf>,
    /// Port (default 22, or the config's).
    #[arg(short = 'p')]
    port: Option<u16>,
    /// ssh_config file to read instead of ~/.ssh/config and
    /// /etc/ssh/ssh_config (`none`: no file).
    #[arg(short = 'F', value_name = "CONFIG")]
    config: Option<PathBuf>,
    /// Jump hosts, comma-separated [USER@]HOST[:PORT], first hop first.
    #[arg(short = 'J', value_name = "JUMP")]
    jump: Option<String>,
    /// Deadline of the dial, and of each SFTP operation other than a
    /// transfer, in seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = secs)]
    timeout: Duration,
    /// A transfer that gets no answer from the server for this long fails.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = secs)]
    stall_timeout: Duration,
    /// known_hosts file (default: OpenSSH's user and global files).
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
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

/// `[USER@]HOST:PATH`, or `None` for a local path.
fn remote(spec: &str) -> Option<(&str, &str)> {
    if spec.starts_with('[') {
        let close = spec.find("]:")?;
        let (host, path) = spec.split_at(close + 1);
        return Some((host, &path[1..]));
    }
    let colon = spec.find(':')?;
    // scp's rule: a slash before the colon makes it a local path.
    if spec[..colon].contains('/') {
        return None;
    }
    Some((&spec[..colon], &spec[colon + 1..]))
}

#[tokio::main]
async fn main() -> ExitCode {
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
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("error: {line}");
            ExitCode::from(255)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let (sources, destination) = args.paths.split_at(args.paths.len() - 1);
    let destination = &destination[0];
    let upload = remote(destination).is_some();
    if sources.iter().any(|s| remote(s).is_some() == upload) {
        return Err(
            "the sources must be local and the destination remote, or the other way".into(),
        );
    }
    let mut hosts = sources
        .iter()
        .chain([destination])
        .filter_map(|spec| remote(spec).map(|(host, _)| host));
    let host = hosts
        .next()
        .ok_or("no remote path: nothing to copy over SSH")?;
    if hosts.any(|other| other != host) {
        return Err("every remote path must be on the same host".into());
    }
    let (client, sftp) = connect(&args, host).await?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed} {msg}",
        )
        .expect("template"),
    );
    let path_of = |spec: &str| remote(spec).map_or(spec.to_owned(), |(_, p)| p.to_owned());
    let dst = path_of(destination);
    let into_dir = if upload {
        sftp.metadata(&dst).await.is_ok_and(|m| m.is_dir())
    } else {
        Path::new(&dst).is_dir()
    };
    if !into_dir && sources.len() > 1 {
        return Err(format!("{destination}: not a directory"));
    }
    for source in sources {
        let src = path_of(source);
        let target = if into_dir {
            let name = Path::new(&src)
                .file_name()
                .ok_or_else(|| format!("{source}: no file name"))?;
            format!("{}/{}", dst.trim_end_matches('/'), name.to_string_lossy())
        } else {
            dst.clone()
        };
        let copy = Copy {
            sftp: &sftp,
            bar: &bar,
            recursive: args.recursive,
        };
        if upload {
            copy.put(Path::new(&src), &target).await?;
        } else {
            copy.get(&src, Path::new(&target)).await?;
        }
    }
    bar.finish_and_clear();
    drop(sftp);
    client.close().await;
    Ok(())
}

/// The client, which must outlive its SFTP session, and the session.
async fn connect(args: &Args, host: &str) -> Result<(Client, Sftp), String> {
    let ssh = match &args.config {
        Some(path) if path.as_os_str() == "none" => Ok(SshConfig::empty()),
        Some(path) => SshConfig::load(path),
        None => SshConfig::load_default(),
    }
    .map_err(|e| format!("ssh_config: {e}"))?;
    let (user, name) = host.rsplit_once('@').unwrap_or(("", host));
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let resolved = ssh
        .resolve(&match user {
            "" => name.to_owned(),
            u => format!("{u}@{name}"),
        })
        .map_err(|e| format!("ssh_config: {e}"))?;
    let addr = match args.port {
        Some(port) if name.contains(':') => format!("[{name}]:{port}"),
        Some(port) => format!("{name}:{port}"),
        None => name.to_owned(),
    };
    let mut builder = Dialer::builder().timeout(args.timeout).ssh_config(ssh);
    if args.accept_any_host_key {
        builder = builder.host_keys(HostKeys::insecure_accept_any());
    } else if let Some(path) = &args.known_hosts {
        builder = builder.host_keys(HostKeys::known_hosts(path));
    }
    if let Some(chain) = &args.jump {
        builder = builder.proxy_jump(JumpHost::parse_chain(chain).map_err(|e| e.to_string())?);
    }
    let mut methods: Vec<Auth> = args.key.iter().map(|k| Auth::key_file(k, None)).collect();
    methods.extend(resolved.auth());
    let auth = methods
        .into_iter()
        .reduce(Auth::or)
        .ok_or("auth: no -i KEYFILE, no agent (SSH_AUTH_SOCK) and no IdentityFile that exists")?;
    let client = builder
        .build()
        .dial(addr.as_str(), user, auth)
        .await
        .map_err(|e| e.to_string())?;
    let sftp = client
        .sftp_builder()
        .timeout(args.timeout)
        .stall_timeout(args.stall_timeout)
        .open()
        .await
        .map_err(|e| e.to_string())?;
    Ok((client, sftp))
}

struct Copy<'a> {
    sftp: &'a Sftp,
    bar: &'a ProgressBar,
    recursive: bool,
}

impl Copy<'_> {
    async fn put(&self, local: &Path, remote: &str) -> Result<(), String> {
        let meta = std::fs::metadata(local).map_err(|e| format!("{}: {e}", local.display()))?;
        if meta.is_dir() {
            if !self.recursive {
                return Err(format!("{}: a directory (use -r)", local.display()));
            }
            if self.sftp.metadata(remote).await.is_err() {
                self.sftp
                    .create_dir(remote)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let entries =
                std::fs::read_dir(local).map_err(|e| format!("{}: {e}", local.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("{}: {e}", local.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                Box::pin(self.put(&entry.path(), &format!("{remote}/{name}"))).await?;
            }
            return Ok(());
        }
        self.start(meta.len(), remote);
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| format!("{}: {e}", local.display()))?;
        let mut counted = Counted {
            inner: file,
            bar: self.bar.clone(),
        };
        self.sftp
            .put_from(&mut counted, remote)
            .await
            .map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        let mode = Metadata::new().with_permissions(meta.permissions().mode() & 0o777);
        self.sftp
            .set_metadata(remote, mode)
            .await
            .map_err(|e| e.to_string())
    }

    async fn get(&self, remote: &str, local: &Path) -> Result<(), String> {
        let meta = self
            .sftp
            .metadata(remote)
            .await
            .map_err(|e| e.to_string())?;
        if meta.is_dir() {
            if !self.recursive {
                return Err(format!("{remote}: a directory (use -r)"));
            }
            std::fs::create_dir_all(local).map_err(|e| format!("{}: {e}", local.display()))?;
            for entry in self
                .sftp
                .read_dir(remote)
                .await
                .map_err(|e| e.to_string())?
            {
                let child = format!("{remote}/{}", entry.file_name());
                Box::pin(self.get(&child, &local.join(entry.file_name()))).await?;
            }
            return Ok(());
        }
        self.start(meta.len().unwrap_or(0), remote);
        let file = tokio::fs::File::create(local)
            .await
            .map_err(|e| format!("{}: {e}", local.display()))?;
        let mut counted = Counted {
            inner: tokio::io::BufWriter::with_capacity(1 << 20, file),
            bar: self.bar.clone(),
        };
        self.sftp
            .get_to(remote, &mut counted)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn start(&self, len: u64, name: &str) {
        self.bar.set_length(len);
        self.bar.set_position(0);
        self.bar.set_message(name.to_owned());
    }
}

/// A reader or writer that moves the progress bar.
struct Counted<T> {
    inner: T,
    bar: ProgressBar,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.bar.inc((buf.filled().len() - before) as u64);
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.bar.inc(n as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
