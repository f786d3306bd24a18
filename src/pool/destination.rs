//! What a pooled connection goes to, and the key that says which
//! connections may serve which requests.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::auth::Auth;
use crate::dialer::Dialer;
use crate::error::DialError;
use crate::target::{InvalidTarget, Target, ToTarget};
use crate::Client;

/// A host to run on through a [`Pool`](super::Pool): where, as whom, and
/// optionally with credentials of its own instead of the pool's.
///
/// Two requests share connections when their destinations have the same
/// address as given (an ssh_config alias stays an alias; `web-1` and
/// `web-1:22` are different unless both name the port), the same user and
/// the same credentials. Credentials given with [`with_auth`](Self::with_auth)
/// are told apart by the value: clones of this destination share them,
/// another `with_auth` call makes another identity, so a connection made
/// with one password never serves a request that brought another. Jump
/// hosts and every other setting come from the pool's
/// [`Dialer`](crate::Dialer), the same for all its connections.
///
/// # Examples
///
/// ```
/// use ssh_dial::pool::Destination;
///
/// let web = Destination::parse("deploy@web-1:2222", "root").unwrap();
/// assert_eq!(web.to_string(), "deploy@web-1:2222");
/// assert_eq!(Destination::parse("db-1", "root").unwrap().user(), "root");
/// assert!(Destination::parse("u@host:0", "root").is_err());
/// ```
#[derive(Clone)]
pub struct Destination {
    target: Target,
    /// Whether the address named its port: if not, a dialer with an
    /// ssh_config takes the port from the file.
    names_port: bool,
    user: String,
    credentials: Option<Credentials>,
}

/// Credentials of a destination's own, with the identity that tells them
/// apart from any other (clones share it).
#[derive(Clone)]
pub(crate) struct Credentials {
    auth: Auth,
    id: CredentialsId,
}

impl Credentials {
    pub(crate) fn new(auth: Auth) -> Self {
        Credentials {
            auth,
            id: CredentialsId(Arc::new(())),
        }
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.auth.fmt(f)
    }
}

/// Compared and hashed by address: a live `Arc` is never at the address
/// of another, and the key holds one.
#[derive(Clone)]
struct CredentialsId(Arc<()>);

impl PartialEq for CredentialsId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CredentialsId {}

impl Hash for CredentialsId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(state);
    }
}

/// Which connections may serve a request: the address as given, the user
/// and the credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    addr: String,
    user: String,
    credentials: Option<CredentialsId>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.addr)?;
        if self.credentials.is_some() {
            f.write_str(" (own credentials)")?;
        }
        Ok(())
    }
}

impl Destination {
    /// A destination at `addr` (anything [`Dialer::dial`] accepts), logged
    /// into as `user`. With a dialer that has an
    /// [`ssh_config`](crate::DialerBuilder::ssh_config), `addr` may be an
    /// alias, and an empty `user` is the config's.
    ///
    /// # Errors
    ///
    /// [`InvalidTarget`] if the address cannot be dialed.
    pub fn new(addr: impl ToTarget, user: impl Into<String>) -> Result<Destination, InvalidTarget> {
        Ok(Destination {
            target: addr.to_target()?,
            names_port: addr.names_port(),
            user: user.into(),
            credentials: None,
        })
    }

    /// Parses `[user@]host[:port]`, with `default_user` when none is given.
    ///
    /// # Errors
    ///
    /// [`InvalidTarget`] if the address cannot be dialed.
    pub fn parse(spec: &str, default_user: &str) -> Result<Destination, InvalidTarget> {
        let spec = spec.trim();
        match spec.rsplit_once('@') {
            Some((user, addr)) if !user.is_empty() => Destination::new(addr, user),
            _ => Destination::new(spec, default_user),
        }
    }

    /// Uses these credentials for this destination instead of the pool's.
    /// They are a new identity: connections made with them serve this
    /// destination and its clones only.
    pub fn with_auth(mut self, auth: Auth) -> Destination {
        self.credentials = Some(Credentials::new(auth));
        self
    }

    pub(crate) fn from_parts(
        target: Target,
        names_port: bool,
        user: String,
        credentials: Option<Credentials>,
    ) -> Destination {
        Destination {
            target,
            names_port,
            user,
            credentials,
        }
    }

    /// The address, as `host:port`.
    pub fn addr(&self) -> String {
        self.target.display()
    }

    /// The user to log in as (empty: ssh_config's `User`, or the local user).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The address as dialed: `host:port`, or the host alone when the port
    /// was not named (ssh_config's `Port` then applies).
    fn dialed(&self) -> String {
        if self.names_port {
            self.target.display()
        } else {
            self.target.host().to_owned()
        }
    }

    pub(super) fn key(&self) -> Key {
        Key {
            addr: self.dialed(),
            user: self.user.clone(),
            credentials: self.credentials.as_ref().map(|c| c.id.clone()),
        }
    }

    /// Dials this destination with `dialer`, and `auth` unless it has its own.
    pub(super) async fn dial(&self, dialer: &Dialer, auth: &Auth) -> Result<Client, DialError> {
        let auth = match &self.credentials {
            Some(own) => own.auth.clone(),
            None => auth.clone(),
        };
        if self.names_port {
            dialer.dial(&self.target, self.user.as_str(), auth).await
        } else {
            dialer
                .dial(self.target.host(), self.user.as_str(), auth)
                .await
        }
    }
}

impl Destination {
    /// Dials this destination through `via`, an open connection to a jump
    /// host (as an address: ssh_config is not read for it).
    pub(super) async fn dial_via(
        &self,
        dialer: &Dialer,
        via: &Arc<Client>,
        auth: &Auth,
    ) -> Result<Client, DialError> {
        let auth = match &self.credentials {
            Some(own) => own.auth.clone(),
            None => auth.clone(),
        };
        dialer
            .dial_via(via, &self.target, self.user.as_str(), auth)
            .await
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.user.is_empty() {
            write!(f, "{}@", crate::text::Escaped(&self.user))?;
        }
        f.write_str(&self.target.display())
    }
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("addr", &self.target.display())
            .field("user", &crate::text::Escaped(&self.user).to_string())
            .field("own_credentials", &self.credentials.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tell_apart_what_makes_a_connection_different() {
        let d = |s: &str| Destination::parse(s, "root").unwrap();
        assert!(d("web-1:22").key() == d("root@web-1:22").key());
        assert!(d("web-1:22").key() != d("deploy@web-1:22").key());
        assert!(d("web-1:22").key() != d("web-1:2222").key());
        // An alias stays an alias: its port may come from ssh_config.
        assert!(d("web-1").key() != d("web-1:22").key());
        let own = d("web-1:22").with_auth(Auth::password("a"));
        assert!(own.key() != d("web-1:22").key());
        assert!(own.clone().key() == own.key());
        let other = d("web-1:22").with_auth(Auth::password("a"));
        assert!(
            other.key() != own.key(),
            "each with_auth is its own identity"
        );
    }

    #[test]
    fn a_user_with_control_characters_is_shown_escaped() {
        let d = Destination::new("h:22", "a\x1b[31m").unwrap();
        assert!(!d.to_string().contains('\x1b'));
        assert!(!format!("{d:?}").contains('\x1b'));
    }
}
