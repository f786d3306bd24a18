//! [`HostConfig`]: the settings resolved for one host, and what they mean
//! for host keys, for credentials and to `ssh -G`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::jump::JumpHost;
use super::StrictHostKeyChecking;
use crate::auth::Auth;
use crate::host_keys::HostKeys;
use crate::tcp::AddressFamily;

/// The settings a configuration gives one host, with OpenSSH's defaults
/// where it gives none: what `ssh -G host` prints, for the keys ssh-dial
/// honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub(super) host: String,
    pub(super) hostname: String,
    pub(super) port: u16,
    pub(super) user: String,
    pub(super) identity_files: Vec<String>,
    pub(super) identity_paths: Vec<PathBuf>,
    pub(super) certificate_files: Vec<String>,
    pub(super) certificate_paths: Vec<PathBuf>,
    pub(super) identities_only: bool,
    pub(super) identity_agent: Option<String>,
    pub(super) proxy_jump: Vec<JumpHost>,
    pub(super) proxy_command: Option<String>,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) connection_attempts: u32,
    pub(super) server_alive_interval: Option<Duration>,
    pub(super) server_alive_count_max: u32,
    pub(super) user_known_hosts_files: Vec<String>,
    pub(super) global_known_hosts_files: Vec<String>,
    pub(super) strict_host_key_checking: StrictHostKeyChecking,
    pub(super) hash_known_hosts: bool,
    pub(super) host_key_alias: Option<String>,
    pub(super) address_family: AddressFamily,
    pub(super) preferred_authentications: Option<String>,
    pub(super) pubkey_authentication: String,
    pub(super) password_authentication: bool,
    pub(super) batch_mode: bool,
    pub(super) other: BTreeMap<String, Vec<String>>,
    /// The files ssh-dial reads, byte for byte as the configuration names
    /// them (the `String`s above are for showing).
    pub(super) agent_path: Option<PathBuf>,
    pub(super) user_known_hosts_paths: Vec<PathBuf>,
    pub(super) global_known_hosts_paths: Vec<PathBuf>,
}

impl HostConfig {
    /// The name as given to
    /// [`SshConfig::resolve`](crate::SshConfig::resolve) (`%n`).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// `HostName` with `%h` expanded, or the name as given; lowercase
    /// unless an address.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }
    /// `Port`, 22 by default.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The user from the destination, `User`, or the local user.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// `IdentityFile`s as written (OpenSSH's defaults if none), as `ssh -G`
    /// prints them.
    pub fn identity_files(&self) -> &[String] {
        &self.identity_files
    }
    /// The `IdentityFile`s with `~`, `%` tokens and `${VAR}` expanded: the
    /// paths ssh-dial reads.
    pub fn identity_paths(&self) -> &[PathBuf] {
        &self.identity_paths
    }
    /// `CertificateFile`s as written, as `ssh -G` prints them.
    pub fn certificate_files(&self) -> &[String] {
        &self.certificate_files
    }
    /// The `CertificateFile`s with `~`, `%` tokens and `${VAR}` expanded:
    /// the paths ssh-dial reads.
    pub fn certificate_paths(&self) -> &[PathBuf] {
        &self.certificate_paths
    }
    /// `IdentitiesOnly`.
    pub fn identities_only(&self) -> bool {
        self.identities_only
    }
    /// `IdentityAgent`, expanded; `none` turns the agent off, `SSH_AUTH_SOCK`
    /// (or unset) means the environment's. Bytes that are not UTF-8 are
    /// shown as U+FFFD here and kept in the path ssh-dial uses.
    pub fn identity_agent(&self) -> Option<&str> {
        self.identity_agent.as_deref()
    }
    /// The `ProxyJump` chain, first hop first; empty for a direct dial.
    pub fn proxy_jump(&self) -> &[JumpHost] {
        &self.proxy_jump
    }
    /// `ProxyCommand`, as written (tokens unexpanded); `None` for `none`.
    /// A dial runs it as `ssh` does (see
    /// [`DialerBuilder::proxy_command`](crate::DialerBuilder::proxy_command)).
    pub fn proxy_command(&self) -> Option<&str> {
        self.proxy_command.as_deref()
    }
    /// `ConnectTimeout`.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }
    /// `ConnectionAttempts`, 1 by default.
    pub fn connection_attempts(&self) -> u32 {
        self.connection_attempts
    }
    /// `ServerAliveInterval`, if set; zero is off, as is unset in
    /// OpenSSH. (Debian's `ssh` makes unset 300 s under `BatchMode yes`.)
    pub fn server_alive_interval(&self) -> Option<Duration> {
        self.server_alive_interval
    }
    /// `ServerAliveCountMax`, 3 by default.
    pub fn server_alive_count_max(&self) -> u32 {
        self.server_alive_count_max
    }
    /// `UserKnownHostsFile`s, expanded; empty for `none`. Bytes that are not
    /// UTF-8 are shown as U+FFFD here and kept in the paths ssh-dial reads.
    pub fn user_known_hosts_files(&self) -> &[String] {
        &self.user_known_hosts_files
    }
    /// `GlobalKnownHostsFile`s as written; empty for `none`.
    pub fn global_known_hosts_files(&self) -> &[String] {
        &self.global_known_hosts_files
    }
    /// `StrictHostKeyChecking`.
    pub fn strict_host_key_checking(&self) -> StrictHostKeyChecking {
        self.strict_host_key_checking
    }
    /// `HashKnownHosts`.
    pub fn hash_known_hosts(&self) -> bool {
        self.hash_known_hosts
    }
    /// `HostKeyAlias`, lowercased: the name the host key is looked up and
    /// learned under, instead of `[host]:port`.
    pub fn host_key_alias(&self) -> Option<&str> {
        self.host_key_alias.as_deref()
    }
    /// `AddressFamily`.
    pub fn address_family(&self) -> AddressFamily {
        self.address_family
    }
    /// `PreferredAuthentications`, if set.
    pub fn preferred_authentications(&self) -> Option<&str> {
        self.preferred_authentications.as_deref()
    }
    /// Whether `PubkeyAuthentication` allows keys (anything but `no`).
    pub fn pubkey_authentication(&self) -> bool {
        self.pubkey_authentication != "false"
    }
    /// `PasswordAuthentication`.
    pub fn password_authentication(&self) -> bool {
        self.password_authentication
    }
    /// `BatchMode`. ssh-dial never prompts, so it changes nothing.
    pub fn batch_mode(&self) -> bool {
        self.batch_mode
    }
    /// A key ssh-dial does not honour, with its arguments as read (the
    /// first obtained value), by its lowercase name.
    pub fn other(&self, key: &str) -> Option<&[String]> {
        self.other.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// The host key policy these settings describe: `UserKnownHostsFile`s
    /// and `GlobalKnownHostsFile`s read, unknown hosts refused under
    /// `yes` and `ask` (ssh-dial never asks), learned into the first user
    /// file under `accept-new` (hashed if `HashKnownHosts`), and any key
    /// accepted under `no`.
    pub fn host_keys(&self) -> HostKeys {
        let user = self.user_known_hosts_paths.clone();
        let global = self.global_known_hosts_paths.clone();
        match self.strict_host_key_checking {
            StrictHostKeyChecking::No => HostKeys::insecure_accept_any(),
            StrictHostKeyChecking::AcceptNew => {
                let learn = user.first().cloned();
                HostKeys::files(user, global, learn, self.hash_known_hosts)
            }
            StrictHostKeyChecking::Yes | StrictHostKeyChecking::Ask => {
                HostKeys::files(user, global, None, self.hash_known_hosts)
            }
        }
    }

    /// The credentials these settings offer, as `ssh` would: each
    /// `IdentityFile` that exists (unencrypted, or the dial fails naming
    /// it) with the certificate beside it (`<file>-cert.pub`), then the
    /// agent at `IdentityAgent` (or `$SSH_AUTH_SOCK`) unless
    /// `IdentitiesOnly` or `IdentityAgent none`; nothing if
    /// `PubkeyAuthentication no`. With `CertificateFile`s, as `ssh` orders
    /// them: the certificates first (each signed for by the identity file
    /// or agent key it certifies), then the agent, then the identity files
    /// (without looking beside them). `None` when there is nothing to offer.
    pub fn auth(&self) -> Option<Auth> {
        if !self.pubkey_authentication() {
            return None;
        }
        let mut auth: Option<Auth> = None;
        let mut add = |a: Auth| {
            auth = Some(match auth.take() {
                Some(prev) => prev.or(a),
                None => a,
            })
        };
        let certificates = !self.certificate_paths.is_empty();
        let keys: Vec<&PathBuf> = self.identity_paths.iter().filter(|p| p.is_file()).collect();
        if certificates {
            for path in &self.certificate_paths {
                add(Auth::certificate_file(path.clone()));
            }
        } else {
            for path in &keys {
                add(Auth::key_file((*path).clone(), None));
            }
        }
        if let Some(agent) = self.agent() {
            add(agent);
        }
        if certificates {
            for path in &keys {
                add(Auth::key_file_alone((*path).clone(), None));
            }
        }
        // Certificates alone sign with nothing: offer them only with a key.
        if certificates && keys.is_empty() && self.agent().is_none() {
            return None;
        }
        auth
    }

    /// The agent these settings use, if any.
    fn agent(&self) -> Option<Auth> {
        if self.identities_only {
            return None;
        }
        match self.identity_agent.as_deref() {
            Some("none") => None,
            None | Some("SSH_AUTH_SOCK") | Some("$SSH_AUTH_SOCK") => {
                std::env::var_os("SSH_AUTH_SOCK").map(|_| Auth::agent())
            }
            Some(socket) if socket.starts_with('$') => {
                std::env::var_os(&socket[1..]).map(Auth::agent_at)
            }
            Some(_) => self.agent_path.clone().map(Auth::agent_at),
        }
    }

    /// The settings as `ssh -G` prints them: `key value` lines, keys in
    /// lower case, for every key ssh-dial honours.
    pub fn to_ssh_g(&self) -> Vec<(&'static str, String)> {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let mut out = vec![
            ("host", self.host.clone()),
            ("user", self.user.clone()),
            ("hostname", self.hostname.clone()),
            ("port", self.port.to_string()),
            ("addressfamily", family_str(self.address_family).to_owned()),
            ("batchmode", yes_no(self.batch_mode)),
            ("hashknownhosts", yes_no(self.hash_known_hosts)),
            ("identitiesonly", yes_no(self.identities_only)),
            (
                "passwordauthentication",
                yes_no(self.password_authentication),
            ),
            ("pubkeyauthentication", self.pubkey_authentication.clone()),
            (
                "stricthostkeychecking",
                self.strict_host_key_checking.as_str().to_owned(),
            ),
            ("connectionattempts", self.connection_attempts.to_string()),
            (
                "serveralivecountmax",
                self.server_alive_count_max.to_string(),
            ),
            (
                "serveraliveinterval",
                self.server_alive_interval
                    .unwrap_or_default()
                    .as_secs()
                    .to_string(),
            ),
        ];
        if let Some(alias) = &self.host_key_alias {
            out.push(("hostkeyalias", alias.clone()));
        }
        if let Some(agent) = &self.identity_agent {
            out.push(("identityagent", agent.clone()));
        }
        if let Some(pref) = &self.preferred_authentications {
            out.push(("preferredauthentications", pref.clone()));
        }
        for file in &self.identity_files {
            out.push(("identityfile", file.clone()));
        }
        for file in &self.certificate_files {
            out.push(("certificatefile", file.clone()));
        }
        let one_line = |files: &[String]| {
            if files.is_empty() {
                "none".to_owned()
            } else {
                files.join(" ")
            }
        };
        out.push((
            "globalknownhostsfile",
            one_line(&self.global_known_hosts_files),
        ));
        out.push(("userknownhostsfile", one_line(&self.user_known_hosts_files)));
        out.push((
            "connecttimeout",
            match self.connect_timeout {
                Some(t) => t.as_secs().to_string(),
                None => "none".to_owned(),
            },
        ));
        if let Some((last, first)) = self.proxy_jump.split_last() {
            let mut value = String::new();
            for hop in first {
                value.push_str(&hop.spec);
                value.push(',');
            }
            value.push_str(&last.to_string());
            out.push(("proxyjump", value));
        } else if let Some(command) = &self.proxy_command {
            out.push(("proxycommand", command.clone()));
        }
        out
    }
}

fn family_str(family: AddressFamily) -> &'static str {
    match family {
        AddressFamily::Inet => "inet",
        AddressFamily::Inet6 => "inet6",
        _ => "any",
    }
}
