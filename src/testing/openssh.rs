//! The real OpenSSH programs, for tests: an `sshd` started with a temporary
//! config, host key and authorized key; an `ssh-agent`; `ssh-keygen`.

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use russh::keys::PrivateKey;

/// Where sshd lives when it is not on `PATH` (it usually is not, for
/// users other than root).
const SBIN: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// Finds an OpenSSH program (`sshd`, `ssh`, `ssh-keygen`, ...) on `PATH`
/// or in the usual sbin directories.
///
/// # Errors
///
/// `NotFound`, saying which package to install.
pub fn find_program(name: &str) -> io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let package = if name == "sshd" {
                "openssh-server"
            } else {
                "openssh-client"
            };
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} not found on PATH or in {}: install {package} (apt-get install -y {package})", SBIN.join(", ")),
            )
        })
}

/// The privilege separation directory Debian's sshd needs when run as
/// root; its package creates it only when the service starts.
const PRIVSEP_DIR: &str = "/run/sshd";

/// A real OpenSSH `sshd` in the foreground, with a fresh Ed25519 host key
/// and one authorized user key, all in a temporary directory; killed when
/// dropped. It logs at `DEBUG1` to a file (see [`log`](Sshd::log)), in
/// which each authentication request shows as `userauth-request`.
///
/// The user is whoever runs the tests; sshd runs with `UsePAM no` and
/// `StrictModes no`, so it works for root (as in CI) and for other users.
/// Sessions get `SHLVL=1`, so that bash runs commands without reading the
/// user's `~/.bashrc` (Debian's bash otherwise does for ssh sessions), and
/// an exec costs what the command costs, not what the machine's shell
/// setup does.
///
/// # Examples
///
/// ```no_run
/// use ssh_dial::testing::Sshd;
/// use ssh_dial::{Auth, Dialer, HostKeys};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sshd = Sshd::start()?;
/// let known_hosts = sshd.write_file("known_hosts", &sshd.known_hosts_line())?;
/// let client = Dialer::builder()
///     .host_keys(HostKeys::known_hosts(known_hosts))
///     .build()
///     .dial(sshd.addr(), sshd.user(), Auth::key(sshd.user_key().clone()))
///     .await?;
/// assert_eq!(client.exec("echo hi").await?.stdout, b"hi\n");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// `(kind, "type base64")` for each host key, in the builder's order.
    host_keys: Vec<(String, String)>,
    user: String,
    user_key: PrivateKey,
}

/// Configures an [`Sshd`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct SshdBuilder {
    listen: IpAddr,
    port: Option<u16>,
    certify: Option<(PathBuf, String)>,
    host_key_types: Vec<String>,
    wrapper: Vec<OsString>,
    config: String,
}

impl Default for SshdBuilder {
    fn default() -> Self {
        SshdBuilder {
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            certify: None,
            host_key_types: vec!["ed25519".into()],
            wrapper: Vec::new(),
            config: String::new(),
        }
    }
}

impl SshdBuilder {
    /// The address to listen on. Default is `127.0.0.1`.
    pub fn listen(mut self, ip: IpAddr) -> Self {
        self.listen = ip;
        self
    }

    /// The port. Default is an unused one on `127.0.0.1`.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The types of host key the server has, each as `ssh-keygen -t` names
    /// it (`"ed25519"`, `"ecdsa"`, `"rsa"`), fresh for this server.
    /// Default is `["ed25519"]`.
    pub fn host_key_types(mut self, kinds: &[&str]) -> Self {
        self.host_key_types = kinds.iter().map(|k| (*k).to_owned()).collect();
        self
    }

    /// Gives the server a host certificate for `principal`, signed with the
    /// CA private key at `ca_key`, for its first host key.
    pub fn host_certificate(mut self, ca_key: impl Into<PathBuf>, principal: &str) -> Self {
        self.certify = Some((ca_key.into(), principal.to_owned()));
        self
    }

    /// Runs sshd under this command, e.g. `["ip", "netns", "exec", "NS"]`.
    pub fn wrapper<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.wrapper = command.into_iter().map(Into::into).collect();
        self
    }

    /// Lets in users with a certificate signed by the CA whose public key
    /// is in the file `ca_public` (`TrustedUserCAKeys`), for the principal
    /// of their user name. Add `config_line("AuthorizedKeysFile none")` for
    /// a server that takes certificates only: lines given here come first,
    /// and sshd keeps the first value of a keyword.
    pub fn trusted_user_ca_keys(self, ca_public: &Path) -> Self {
        self.config_line(&format!("TrustedUserCAKeys {}", ca_public.display()))
    }

    /// Adds a line to `sshd_config`, e.g. `"MaxStartups 1000"`.
    pub fn config_line(mut self, line: &str) -> Self {
        self.config.push_str(line);
        self.config.push('\n');
        self
    }

    /// Starts sshd and waits, up to 10 s, until it accepts connections.
    ///
    /// Everything it writes is in its temporary directory, except that, run
    /// as root, it creates `/run/sshd` if missing: sshd refuses to start as
    /// root without its privilege separation directory.
    ///
    /// # Errors
    ///
    /// `NotFound` if `sshd` or `ssh-keygen` is missing, saying what to
    /// install, or whatever kept sshd from starting, with its log.
    pub fn start(self) -> io::Result<Sshd> {
        let sshd = find_program("sshd")?;
        find_program("ssh-keygen")?;
        if self.host_key_types.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "sshd needs at least one host key type",
            ));
        }
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let mut host_keys = Vec::new();
        let mut host_key_lines = String::new();
        for kind in &self.host_key_types {
            let path = d.join(format!("host_{kind}"));
            ssh_keygen(&path, kind, "")?;
            host_keys.push((kind.clone(), public_line(&path.with_extension("pub"))?));
            host_key_lines.push_str(&format!("HostKey {}\n", path.display()));
        }
        let first_host_key = d.join(format!(
            "host_{}",
            self.host_key_types
                .first()
                .map_or("ed25519", String::as_str)
        ));
        ssh_keygen(&d.join("user_ed25519"), "ed25519", "")?;
        std::fs::copy(d.join("user_ed25519.pub"), d.join("authorized_keys"))?;
        let user_key =
            russh::keys::load_secret_key(d.join("user_ed25519"), None).map_err(io::Error::other)?;
        if current_uid()? == 0 && !Path::new(PRIVSEP_DIR).is_dir() {
            std::fs::create_dir_all(PRIVSEP_DIR)?;
        }

        let mut config = self.config;
        if let Some((ca, principal)) = &self.certify {
            let status = Command::new(find_program("ssh-keygen")?)
                .args(["-q", "-s"])
                .arg(ca)
                .args([
                    "-I",
                    "ssh-dial-test-host",
                    "-h",
                    "-n",
                    principal,
                    "-V",
                    "-5m:+1h",
                ])
                .arg(first_host_key.with_extension("pub"))
                .status()?;
            if !status.success() {
                return Err(io::Error::other(
                    "ssh-keygen -s could not sign the host key",
                ));
            }
            let mut cert = first_host_key.into_os_string();
            cert.push("-cert.pub");
            config.push_str(&format!("HostCertificate {}\n", Path::new(&cert).display()));
        }
        let port = match self.port {
            Some(p) => p,
            None => std::net::TcpListener::bind((self.listen, 0))?
                .local_addr()?
                .port(),
        };
        let addr = SocketAddr::new(self.listen, port);
        // An SFTP server unless the caller's lines name one (sshd refuses a
        // subsystem defined twice).
        if !config
            .lines()
            .any(|l| l.trim_start().to_ascii_lowercase().starts_with("subsystem"))
        {
            config.push_str("Subsystem sftp internal-sftp\n");
        }
        let config_path = d.join("sshd_config");
        std::fs::write(
            &config_path,
            format!(
                "{config}Port {port}\nListenAddress {listen}\n{host_key_lines}PidFile none\n\
                 AuthorizedKeysFile {ak}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n\
                 LogLevel DEBUG1\nMaxStartups 1000\nMaxSessions 100\nSetEnv SHLVL=1\n",
                listen = match self.listen {
                    IpAddr::V6(ip) => format!("[{ip}]"),
                    ip => ip.to_string(),
                },
                ak = d.join("authorized_keys").display(),
            ),
        )?;
        let (program, prefix) = match self.wrapper.split_first() {
            Some((p, rest)) => (p.clone(), rest.to_vec()),
            None => (OsString::new(), Vec::new()),
        };
        let mut command = if program.is_empty() {
            Command::new(&sshd)
        } else {
            let mut c = Command::new(program);
            c.args(prefix).arg(&sshd);
            c
        };
        // -E, not -e: with -e the session processes' debug lines would
        // reach the client's stderr.
        let child = command
            .arg("-D")
            .arg("-E")
            .arg(d.join("sshd.log"))
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut sshd = Sshd {
            child,
            addr,
            dir,
            host_keys,
            user: current_user()?,
            user_key,
        };
        sshd.wait_listening()?;
        Ok(sshd)
    }
}

impl Sshd {
    /// Starts configuring an sshd.
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    /// Starts an sshd on `127.0.0.1` and an unused port.
    ///
    /// # Errors
    ///
    /// As [`SshdBuilder::start`].
    pub fn start() -> io::Result<Sshd> {
        Sshd::builder().start()
    }

    fn wait_listening(&mut self) -> io::Result<()> {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "sshd exited with {status}; its log:\n{}",
                    self.log()
                )));
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "sshd did not listen on {} within 10 s; its log:\n{}",
                self.addr,
                self.log()
            ),
        ))
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id of the listening sshd; each connection is served by
    /// processes it forks.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory with its config, keys and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The first host key as `ssh-ed25519 AAAA...`.
    pub fn host_key(&self) -> &str {
        &self.host_keys[0].1
    }

    /// The host key of this `ssh-keygen -t` type (`"ecdsa"`, ...), if the
    /// server has one.
    pub fn host_key_of(&self, kind: &str) -> Option<&str> {
        self.host_keys
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, line)| line.as_str())
    }

    /// The server's line for a known_hosts file: `[IP]:PORT ssh-ed25519
    /// AAAA...` (`IP ssh-ed25519 AAAA...` on port 22).
    pub fn known_hosts_line(&self) -> String {
        let ip = self.addr.ip().to_string();
        let host_port = crate::known_hosts::host_port(&ip, self.addr.port());
        format!("{host_port} {}", self.host_key())
    }

    /// The user that can log in: whoever runs this process.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The private key authorized for [`user`](Self::user).
    pub fn user_key(&self) -> &PrivateKey {
        &self.user_key
    }

    /// The file holding [`user_key`](Self::user_key).
    pub fn user_key_path(&self) -> PathBuf {
        self.dir.path().join("user_ed25519")
    }

    /// What sshd has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Writes `name` in the server's directory with `text` and a newline,
    /// and returns its path: handy for known_hosts files.
    ///
    /// # Errors
    ///
    /// If the file cannot be written.
    pub fn write_file(&self, name: &str, text: &str) -> io::Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{text}\n"))?;
        Ok(path)
    }

    /// Also lets in the key whose public half is in the file `public_key`.
    ///
    /// # Errors
    ///
    /// If either file cannot be read or written.
    pub fn authorize(&self, public_key: &Path) -> io::Result<()> {
        use std::io::Write;
        let line = std::fs::read_to_string(public_key)?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))?;
        file.write_all(line.as_bytes())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `ssh-agent` on a socket of its own; killed when dropped.
#[derive(Debug)]
pub struct SshAgent {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl SshAgent {
    /// Starts `ssh-agent -D` and waits, up to 10 s, for its socket.
    ///
    /// # Errors
    ///
    /// If `ssh-agent` is missing (install `openssh-client`) or does not start.
    pub fn start() -> io::Result<SshAgent> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("agent.sock");
        let mut child = Command::new(find_program("ssh-agent")?)
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // The socket file appears at bind(2), before the agent listens:
        // wait until it accepts a connection.
        let end = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if Instant::now() >= end || child.try_wait()?.is_some() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other("ssh-agent did not listen on its socket"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(SshAgent {
            child,
            socket,
            _dir: dir,
        })
    }

    /// The agent's socket, for `SSH_AUTH_SOCK` or [`Auth::agent_at`](crate::Auth::agent_at).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `ssh-add KEY`.
    ///
    /// # Errors
    ///
    /// If `ssh-add` fails.
    pub fn add(&self, key: &Path) -> io::Result<()> {
        let out = Command::new(find_program("ssh-add")?)
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "ssh-add {} failed: {}",
                key.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ssh-keygen -t KIND -N PASSPHRASE -f PATH`: a new key pair at `path` and
/// `path.pub`.
///
/// # Errors
///
/// If `ssh-keygen` is missing (install `openssh-client`) or fails.
pub fn ssh_keygen(path: &Path, kind: &str, passphrase: &str) -> io::Result<()> {
    let status = Command::new(find_program("ssh-keygen")?)
        .args([
            "-q",
            "-t",
            kind,
            "-N",
            passphrase,
            "-C",
            "ssh-dial-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("ssh-keygen: {e} (install openssh-client)"),
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("ssh-keygen -t {kind} failed")))
    }
}

/// `ssh-keygen -s CA -I KEY_ID -n PRINCIPALS -V VALIDITY PUBLIC`: signs
/// the public key in the file `public` (`id.pub`) with the CA private key
/// `ca`, as a user certificate, and returns the certificate's path, which
/// ssh-keygen puts beside the key (`id-cert.pub`). `principals` is
/// comma-separated (empty: none, `-n` left out); `validity` is as `-V`
/// takes it: `"-5m:+1h"`, `"20200101:20200102"`, `"always:forever"`.
///
/// # Errors
///
/// If `ssh-keygen` is missing (install `openssh-client`) or fails.
pub fn ssh_keygen_certify(
    ca: &Path,
    public: &Path,
    key_id: &str,
    principals: &str,
    validity: &str,
) -> io::Result<PathBuf> {
    let mut command = Command::new(find_program("ssh-keygen")?);
    command.args(["-q", "-s"]).arg(ca).args(["-I", key_id]);
    if !principals.is_empty() {
        command.args(["-n", principals]);
    }
    let out = command
        .args(["-V", validity])
        .arg(public)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ssh-keygen -s {} failed: {}",
            public.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let name = public.to_string_lossy();
    let stem = name.strip_suffix(".pub").unwrap_or(&name);
    Ok(PathBuf::from(format!("{stem}-cert.pub")))
}

fn public_line(path: &Path) -> io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" "))
}

/// This process's user id, as the kernel has it.
fn current_uid() -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata("/proc/self")?.uid())
}

/// This process's user name, from the passwd file (then `$USER`).
fn current_user() -> io::Result<String> {
    let uid = current_uid()?.to_string();
    let from_passwd = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() > 2 && fields[2] == uid).then(|| fields[0].to_owned())
            })
        });
    from_passwd
        .or_else(|| std::env::var("USER").ok())
        .ok_or_else(|| io::Error::other(format!("no user name for uid {uid}")))
}
