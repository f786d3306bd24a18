//! The values a resolve obtains, the first obtained winning, and OpenSSH's
//! defaults and expansions that make them a [`HostConfig`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::host_config::HostConfig;
use super::jump::JumpHost;
use super::local::Local;
use super::tokens::{expand, tilde, Tokens};
use super::values::parse_time;
use super::{shown, ConfigError, StrictHostKeyChecking};
use crate::tcp::AddressFamily;

/// The values obtained so far; `None` is OpenSSH's "unset".
#[derive(Debug, Default)]
pub(super) struct Options {
    pub(super) hostname: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) user: Option<String>,
    /// As written: bytes, since they name files.
    pub(super) identity_files: Vec<Vec<u8>>,
    /// As written, like the identity files.
    pub(super) certificate_files: Vec<Vec<u8>>,
    pub(super) identities_only: Option<bool>,
    pub(super) identity_agent: Option<Vec<u8>>,
    /// `Some(vec![])` is `ProxyJump none`.
    pub(super) proxy_jump: Option<Vec<JumpHost>>,
    pub(super) proxy_command: Option<String>,
    /// `None` until a value other than `none` is read: OpenSSH stores
    /// `none` as "unset", so a later line can still set the key.
    pub(super) connect_timeout: Option<u32>,
    pub(super) connection_attempts: Option<u32>,
    pub(super) server_alive_interval: Option<u32>,
    pub(super) server_alive_count_max: Option<u32>,
    pub(super) user_known_hosts_files: Option<Vec<Vec<u8>>>,
    pub(super) global_known_hosts_files: Option<Vec<Vec<u8>>>,
    pub(super) strict_host_key_checking: Option<StrictHostKeyChecking>,
    pub(super) hash_known_hosts: Option<bool>,
    pub(super) host_key_alias: Option<String>,
    pub(super) address_family: Option<AddressFamily>,
    pub(super) preferred_authentications: Option<String>,
    pub(super) pubkey_authentication: Option<String>,
    pub(super) password_authentication: Option<bool>,
    pub(super) batch_mode: Option<bool>,
    pub(super) ignore_unknown: Option<Vec<u8>>,
    pub(super) other: BTreeMap<String, Vec<String>>,
}

impl Options {
    /// `fill_default_options` and the expansions `ssh` does before `-G`.
    pub(super) fn finish(
        self,
        host_arg: &str,
        host: String,
        local: &Local,
    ) -> Result<HostConfig, ConfigError> {
        let user = self.user.unwrap_or_else(|| local.user.clone());
        let port = self.port.unwrap_or(22);
        let proxy_jump = self.proxy_jump.unwrap_or_default();
        if let Some(last) = proxy_jump.last() {
            let jump_user = last.user().unwrap_or(&user);
            if last.host() == host && last.port().unwrap_or(22) == port && jump_user == user {
                return Err(ConfigError::new(format!(
                    "jump host loop via {}",
                    shown(last.host())
                )));
            }
        }
        let host_key_alias = self.host_key_alias.map(|a| a.to_ascii_lowercase());
        let port_s = port.to_string();
        let tokens = Tokens {
            local,
            host: &host,
            host_arg,
            port: &port_s,
            user: &user,
            alias: host_key_alias.as_deref().unwrap_or(host_arg),
        }
        .list();
        let path = |raw: &[u8], what: &str| -> Result<PathBuf, ConfigError> {
            expand(&tilde(raw, local.home.as_bytes()), &tokens, true)
                .map(|p| PathBuf::from(OsString::from_vec(p)))
                .map_err(|e| ConfigError::new(format!("{what} {}: {e}", shown(raw))))
        };
        let shown_path = |p: &Path| p.to_string_lossy().into_owned();
        let identity_files: Vec<Vec<u8>> = if self.identity_files.is_empty() {
            [
                "id_rsa",
                "id_ecdsa",
                "id_ecdsa_sk",
                "id_ed25519",
                "id_ed25519_sk",
                "id_xmss",
                "id_dsa",
            ]
            .iter()
            .map(|f| format!("~/.ssh/{f}").into_bytes())
            .collect()
        } else {
            self.identity_files
        };
        let identity_paths = identity_files
            .iter()
            .map(|f| path(f, "IdentityFile"))
            .collect::<Result<_, _>>()?;
        let certificate_paths = self
            .certificate_files
            .iter()
            .map(|f| path(f, "CertificateFile"))
            .collect::<Result<_, _>>()?;
        let agent_path = self
            .identity_agent
            .map(|a| path(&a, "IdentityAgent"))
            .transpose()?;
        let user_known_hosts_paths: Vec<PathBuf> = match self.user_known_hosts_files {
            Some(files) if is_none(&files) => Vec::new(),
            Some(files) => files
                .iter()
                .map(|f| path(f, "UserKnownHostsFile"))
                .collect::<Result<_, _>>()?,
            None => vec![
                path(b"~/.ssh/known_hosts", "UserKnownHostsFile")?,
                path(b"~/.ssh/known_hosts2", "UserKnownHostsFile")?,
            ],
        };
        // As written (`ssh -G` prints them so); `~` expanded when read.
        let global_known_hosts_files: Vec<Vec<u8>> = match self.global_known_hosts_files {
            Some(files) if is_none(&files) => Vec::new(),
            Some(files) => files,
            None => vec![
                b"/etc/ssh/ssh_known_hosts".to_vec(),
                b"/etc/ssh/ssh_known_hosts2".to_vec(),
            ],
        };
        let connection_attempts = self.connection_attempts.unwrap_or(1);
        if connection_attempts == 0 {
            return Err(ConfigError::new("invalid number of ConnectionAttempts: 0"));
        }
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(HostConfig {
            host: host_arg.to_owned(),
            hostname: host,
            port,
            user,
            identity_files: identity_files.iter().map(|f| lossy(f)).collect(),
            identity_paths,
            certificate_files: self.certificate_files.iter().map(|f| lossy(f)).collect(),
            certificate_paths,
            identities_only: self.identities_only.unwrap_or(false),
            identity_agent: agent_path.as_deref().map(shown_path),
            proxy_jump,
            proxy_command: self
                .proxy_command
                .filter(|c| !c.eq_ignore_ascii_case("none")),
            connect_timeout: self.connect_timeout.map(|s| Duration::from_secs(s.into())),
            connection_attempts,
            server_alive_interval: self
                .server_alive_interval
                .map(|s| Duration::from_secs(s.into())),
            server_alive_count_max: self.server_alive_count_max.unwrap_or(3),
            user_known_hosts_files: user_known_hosts_paths
                .iter()
                .map(|p| shown_path(p))
                .collect(),
            global_known_hosts_files: global_known_hosts_files.iter().map(|f| lossy(f)).collect(),
            strict_host_key_checking: self
                .strict_host_key_checking
                .unwrap_or(StrictHostKeyChecking::Ask),
            hash_known_hosts: self.hash_known_hosts.unwrap_or(false),
            host_key_alias,
            address_family: self.address_family.unwrap_or(AddressFamily::Any),
            preferred_authentications: self.preferred_authentications,
            pubkey_authentication: self
                .pubkey_authentication
                .unwrap_or_else(|| "true".to_owned()),
            password_authentication: self.password_authentication.unwrap_or(true),
            batch_mode: self.batch_mode.unwrap_or(false),
            other: self.other,
            agent_path,
            user_known_hosts_paths,
            global_known_hosts_paths: global_known_hosts_files
                .iter()
                .map(|f| PathBuf::from(OsString::from_vec(tilde(f, local.home.as_bytes()))))
                .collect(),
        })
    }
}

fn is_none(files: &[Vec<u8>]) -> bool {
    files.len() == 1 && files[0].eq_ignore_ascii_case(b"none")
}

pub(super) fn set<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// A time value: `none` is OpenSSH's "unset", so it leaves the slot for a
/// later line.
pub(super) fn set_time(slot: &mut Option<u32>, value: &[u8]) -> Result<(), String> {
    if let Some(t) = parse_time(value)? {
        set(slot, t);
    }
    Ok(())
}
