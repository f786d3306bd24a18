//! Jump host connections shared by a dialer's dials
//! ([`DialerBuilder::share_jump_hosts`](super::DialerBuilder::share_jump_hosts)).

use std::sync::Arc;

use crate::client::Client;

/// Jump host connections in use, by chain (`user@host:port>` per hop),
/// held weakly: a jump host lives as long as a client goes through it.
#[derive(Clone, Debug, Default)]
pub(super) struct SharedJumps(
    Arc<std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<Client>>>>,
);

impl SharedJumps {
    pub(super) fn get(&self, chain: &str) -> Option<Arc<Client>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let live = map.get(chain).and_then(std::sync::Weak::upgrade);
        match live {
            Some(client) if !client.is_closed() => Some(client),
            _ => {
                map.remove(chain);
                None
            }
        }
    }

    pub(super) fn put(&self, chain: &str, client: &Arc<Client>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, weak| weak.strong_count() > 0);
        map.insert(chain.to_owned(), Arc::downgrade(client));
    }
}
