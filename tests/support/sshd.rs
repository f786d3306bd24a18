//! A real OpenSSH `sshd`, started on loopback with a temporary config, host
//! key and authorized key, and killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ssh_dial::russh::keys::PrivateKey;

/// Where Debian and most Linux distributions put sshd.
const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// `ssh-ed25519 AAAA...` of the server's host key.
    pub host_key: String,
    /// The user the tests log in as: whoever runs them.
    pub user: String,
    /// The key authorized for `user`.
    pub user_key: PrivateKey,
}

impl Sshd {
    /// Starts sshd, failing the test with a clear message if it cannot:
    /// these tests must not pass when sshd is missing (`.ci/run` installs it).
    pub fn start() -> Sshd {
        Sshd::start_on(free_port())
    }

    /// Starts sshd on `port`, with a new host key.
    pub fn start_on(port: u16) -> Sshd {
        Sshd::launch(port, None)
    }

    /// Starts sshd with a host certificate for `principal`, signed by the
    /// CA private key at `ca`.
    pub fn start_certified(ca: &Path, principal: &str) -> Sshd {
        Sshd::launch(free_port(), Some((ca, principal)))
    }

    fn launch(port: u16, certify: Option<(&Path, &str)>) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} not found: install openssh-server (`apt-get install -y openssh-server`); .ci/run does"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        keygen(&d.join("host_ed25519"));
        keygen(&d.join("user_ed25519"));
        std::fs::copy(d.join("user_ed25519.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        let host_key = public_line(&d.join("host_ed25519.pub"));
        let user_key = ssh_dial::russh::keys::load_secret_key(d.join("user_ed25519"), None)
            .expect("user key loads");
        // Privilege separation needs this directory; the package creates it
        // only when the service starts.
        let _ = std::fs::create_dir_all("/run/sshd");

        let mut extra = String::new();
        if let Some((ca, principal)) = certify {
            let status = Command::new("ssh-keygen")
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
                .arg(d.join("host_ed25519.pub"))
                .status()
                .expect("ssh-keygen -s runs");
            assert!(status.success(), "signing the host key failed");
            extra = format!(
                "HostCertificate {}\n",
                d.join("host_ed25519-cert.pub").display()
            );
        }
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "{extra}Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile none\n\
                 AuthorizedKeysFile {ak}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n\
                 LogLevel DEBUG1\nMaxStartups 100\n",
                hk = d.join("host_ed25519").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )
        .expect("sshd_config");
        // -E, not -e: with -e the session processes' debug lines would
        // reach the client's stderr.
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-E")
            .arg(d.join("sshd.log"))
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut sshd = Sshd {
            child,
            addr,
            dir,
            host_key,
            user: current_user(),
            user_key,
        };
        sshd.wait_listening();
        sshd
    }

    fn wait_listening(&mut self) {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited with {status}; its log:\n{}", self.log());
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "sshd did not listen on {} within 10 s; its log:\n{}",
            self.addr,
            self.log()
        );
    }

    /// What sshd has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Writes a known_hosts file with `line` and returns its path.
    pub fn known_hosts(&self, name: &str, line: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{line}\n")).expect("known_hosts");
        path
    }

    /// The server's correct known_hosts line.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.addr.port(), self.host_key)
    }

    pub fn user_key_path(&self) -> PathBuf {
        self.dir.path().join("user_ed25519")
    }

    /// Also lets in the key whose public half is at `public_key`.
    pub fn authorize(&self, public_key: &Path) {
        let line = std::fs::read_to_string(public_key).expect("public key");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .expect("authorized_keys");
        std::io::Write::write_all(&mut file, line.as_bytes()).expect("append");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn keygen(path: &Path) {
    keygen_with(path, "ed25519", "");
}

/// `ssh-keygen -t KIND -N PASSPHRASE -f PATH`.
pub fn keygen_with(path: &Path, kind: &str, passphrase: &str) {
    let status = Command::new("ssh-keygen")
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
        .status()
        .expect("ssh-keygen runs (install openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
}

/// A real `ssh-agent` on a socket of its own, killed when dropped.
pub struct Agent {
    child: Child,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    pub fn start() -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent starts (install openssh-client)");
        let end = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < end, "ssh-agent did not create its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent {
            child,
            socket,
            _dir: dir,
        }
    }

    /// `ssh-add KEY`.
    pub fn add(&self, key: &Path) {
        let status = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("ssh-add runs");
        assert!(status.success(), "ssh-add {} failed", key.display());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn public_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
