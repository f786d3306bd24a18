//! Name resolution that a stalled DNS server cannot turn into a leak.
//!
//! `getaddrinfo` cannot be cancelled. `tokio::net::lookup_host` runs it on
//! Tokio's shared blocking pool, so every lookup of a name whose DNS server
//! never answers holds a pool thread and a UDP socket for the resolver's own
//! timeout (`resolv.conf`: 5 s × attempts), long after the dial gave up. A
//! fleet with one sick zone fills the pool (512 threads), and then every
//! healthy dial, and everything else that uses `spawn_blocking`, waits
//! behind it; the runtime's shutdown waits for the stalled lookups too.
//!
//! So lookups run on threads of their own, never on the runtime's pool:
//!
//! - at most [`max_lookups`](Resolver::new) of them at once per dialer; past
//!   that a dial fails at once with "resolver busy" (retriable), not a hang;
//! - identical lookups in flight share one thread;
//! - a name listed in `/etc/hosts` is answered from that file, without a
//!   thread, when `/etc/nsswitch.conf` consults `files` first (the usual
//!   setup, and then `getaddrinfo` would answer from it too), so it resolves
//!   in microseconds whatever DNS does;
//! - a dial whose deadline passes stops waiting; the thread finishes on its
//!   own, detached, and never delays the runtime's shutdown or the
//!   process's exit.
//!
//! Why not an async resolver (hickory): `getaddrinfo` is what `ssh` uses, so
//! names resolve as they do for `ssh`, through nsswitch (files, DNS, mDNS,
//! LDAP, systemd-resolved), `/etc/gai.conf` ordering and `resolv.conf`
//! options alike. The price is that a lookup cannot be cancelled, only
//! bounded, which is what this module does.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::target::Target;

/// The default bound on lookups in flight per dialer.
pub(crate) const DEFAULT_MAX_LOOKUPS: usize = 64;

/// A lookup's result, shared by every dial waiting on it.
type Outcome = Result<Arc<[SocketAddr]>, (io::ErrorKind, String)>;

/// Where the dials waiting on one lookup wait.
type Waiting = watch::Receiver<Option<Outcome>>;

/// Why a name did not resolve.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// The resolver said so (no such name, no network, ...).
    Failed(io::Error),
    /// `max` lookups are already in flight.
    Busy { max: usize },
}

/// Resolves names on threads of its own, at most `max` at once. Cheap to
/// clone; clones share the bound.
#[derive(Clone, Debug)]
pub(crate) struct Resolver {
    inner: Arc<Inner>,
}

/// The blocking lookup itself: `getaddrinfo`, or a stand-in in tests.
type LookupFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

struct Inner {
    max: usize,
    in_flight: Mutex<HashMap<(String, u16), Waiting>>,
    getaddrinfo: Box<LookupFn>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("max_lookups", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new(DEFAULT_MAX_LOOKUPS)
    }
}

impl Resolver {
    /// A resolver with at most `max_lookups` (at least 1) lookups in flight.
    pub(crate) fn new(max_lookups: usize) -> Self {
        Resolver::with(max_lookups, |host, port| {
            (host, port).to_socket_addrs().map(Iterator::collect)
        })
    }

    fn with(
        max_lookups: usize,
        getaddrinfo: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Self {
        Resolver {
            inner: Arc::new(Inner {
                max: max_lookups.max(1),
                in_flight: Mutex::new(HashMap::new()),
                getaddrinfo: Box::new(getaddrinfo),
            }),
        }
    }

    /// The addresses of `target`; an address literal is its own.
    pub(crate) async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, ResolveError> {
        match target.host().parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, target.port())]),
            Err(_) => self.lookup(target.host(), target.port()).await,
        }
    }

    /// Resolves the name `host` for `port`.
    ///
    /// # Cancellation
    ///
    /// Dropping the future stops waiting; a lookup already started finishes
    /// on its thread and is forgotten.
    pub(crate) async fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Some(addrs) = HOSTS.lookup(host) {
            return Ok(addrs
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect());
        }
        let mut waiting = self.start(host, port)?;
        let outcome = match waiting.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(addrs)) => Ok(addrs.to_vec()),
            Some(Err((kind, message))) => Err(ResolveError::Failed(io::Error::new(kind, message))),
            None => Err(ResolveError::Failed(io::Error::other(
                "the resolver thread ended without an answer",
            ))),
        }
    }

    /// Joins the lookup of `(host, port)` in flight, or starts one.
    fn start(
        &self,
        host: &str,
        port: u16,
    ) -> Result<watch::Receiver<Option<Outcome>>, ResolveError> {
        let key = (host.to_owned(), port);
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(waiting) = in_flight.get(&key) {
            return Ok(waiting.clone());
        }
        if in_flight.len() >= self.inner.max {
            return Err(ResolveError::Busy {
                max: self.inner.max,
            });
        }
        let (tx, rx) = watch::channel(None);
        let inner = self.inner.clone();
        let thread_key = key.clone();
        std::thread::Builder::new()
            .name("ssh-dial-resolve".into())
            // getaddrinfo keeps DNS packets on its stack; 512 KiB is ample
            // and only what is touched is resident.
            .stack_size(512 * 1024)
            .spawn(move || {
                let outcome = (inner.getaddrinfo)(&thread_key.0, thread_key.1)
                    .map(Arc::from)
                    .map_err(|e| (e.kind(), e.to_string()));
                inner
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&thread_key);
                let _ = tx.send(Some(outcome));
            })
            .map_err(ResolveError::Failed)?;
        in_flight.insert(key, rx.clone());
        Ok(rx)
    }
}

/// `/etc/hosts`, read again whenever it (or `/etc/nsswitch.conf`) changes.
static HOSTS: HostsFile = HostsFile {
    cache: Mutex::new(None),
};

struct HostsFile {
    cache: Mutex<Option<Cached>>,
}

struct Cached {
    stamp: (Option<SystemTime>, Option<SystemTime>),
    /// `None` when nsswitch does not consult `files` first.
    names: Option<HashMap<String, Vec<IpAddr>>>,
}

const HOSTS_PATH: &str = "/etc/hosts";
const NSSWITCH_PATH: &str = "/etc/nsswitch.conf";

fn modified(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl HostsFile {
    /// The addresses `/etc/hosts` lists for `host`, if it is consulted
    /// first and lists any.
    fn lookup(&self, host: &str) -> Option<Vec<IpAddr>> {
        let stamp = (modified(HOSTS_PATH), modified(NSSWITCH_PATH));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_none_or(|c| c.stamp != stamp) {
            let names = files_first(Path::new(NSSWITCH_PATH))
                .then(|| std::fs::read(HOSTS_PATH).ok().map(|t| parse_hosts(&t)))
                .flatten();
            *cache = Some(Cached { stamp, names });
        }
        let names = cache.as_ref()?.names.as_ref()?;
        names.get(&host.to_ascii_lowercase()).cloned()
    }
}

/// Whether the `hosts:` line of nsswitch.conf starts with `files`. Without
/// the file, glibc's default (`dns [!UNAVAIL=return] files`) does not.
fn files_first(nsswitch: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(nsswitch) else {
        return false;
    };
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .find_map(|l| l.strip_prefix("hosts:"))
        .and_then(|sources| sources.split_whitespace().next())
        == Some("files")
}

/// `address name [aliases...]` lines; every address of a name, in file
/// order, as glibc's `files` source returns them.
fn parse_hosts(text: &[u8]) -> HashMap<String, Vec<IpAddr>> {
    let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in String::from_utf8_lossy(text).lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        for name in fields {
            let addrs = names.entry(name.to_ascii_lowercase()).or_default();
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lines_give_every_address_of_a_name() {
        let names = parse_hosts(
            b"127.0.0.1 localhost\n::1 localhost ip6-localhost # x\n\n# c\n10.0.0.7 Build-7 b7\nbad line\n",
        );
        assert_eq!(
            names["localhost"],
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(names["build-7"], names["b7"]);
        assert!(!names.contains_key("bad"));
    }

    #[test]
    fn only_a_files_first_nsswitch_enables_the_hosts_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nsswitch.conf");
        for (text, first) in [
            ("passwd: files\nhosts:          files dns\n", true),
            ("hosts: files mdns4_minimal [NOTFOUND=return] dns", true),
            ("hosts: dns files\n", false),
            (
                "# hosts: files\nhosts: resolve [!UNAVAIL=return] files\n",
                false,
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(files_first(&path), first, "{text}");
        }
        assert!(!files_first(&dir.path().join("missing")));
    }

    #[tokio::test]
    async fn lookups_are_bounded_shared_and_freed() {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let resolver = Resolver::with(1, move |_, port| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = gate.lock().unwrap().recv();
            Ok(vec![SocketAddr::from(([192, 0, 2, 1], port))])
        });
        let first = tokio::spawn({
            let r = resolver.clone();
            async move { r.lookup("stalled.test", 22).await }
        });
        let second = tokio::spawn({
            let r = resolver.clone();
            async move { r.lookup("stalled.test", 22).await }
        });
        // Both wait on the one slot's lookup; a third name is refused.
        while resolver.inner.in_flight.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            resolver.lookup("other.test", 22).await,
            Err(ResolveError::Busy { max: 1 })
        ));
        // A waiter that gives up leaves the lookup to the others.
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            resolver.lookup("stalled.test", 22),
        )
        .await;
        assert!(gave_up.is_err());
        release.send(()).unwrap();
        let answer = vec![SocketAddr::from(([192, 0, 2, 1], 22))];
        assert_eq!(first.await.unwrap().unwrap(), answer);
        assert_eq!(second.await.unwrap().unwrap(), answer);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "shared");
        // The slot is free again.
        release.send(()).unwrap();
        assert!(resolver.lookup("other.test", 22).await.is_ok());
    }
}
