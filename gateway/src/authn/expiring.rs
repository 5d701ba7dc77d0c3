//! The bounded map behind the verified-credential caches
//! ([`super::bearer_cache`], [`super::session_cache`]): 32-byte keys (a
//! hash of the credential), each entry used until its own expiry time,
//! at most a fixed number of entries. When full, expired entries go
//! first, then arbitrary ones.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Entries with the Unix time after which each is not used.
#[derive(Debug)]
pub(crate) struct ExpiringMap<V> {
    map: Mutex<HashMap<[u8; 32], (V, u64)>>,
    capacity: usize,
}

impl<V> ExpiringMap<V> {
    /// An empty map holding at most `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// `f` of the entry for `key`, if there is one and `now` is before its
    /// expiry; an expired entry is removed.
    pub(crate) fn get_with<R>(
        &self,
        key: &[u8; 32],
        now: u64,
        f: impl FnOnce(&mut V) -> R,
    ) -> Option<R> {
        let mut map = self.lock();
        match map.get_mut(key) {
            Some((v, until)) if now < *until => Some(f(v)),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// `f` of the entry for `key`, expired or not.
    pub(crate) fn peek_with<R>(&self, key: &[u8; 32], f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.lock().get_mut(key).map(|(v, _)| f(v))
    }

    /// Keeps `value` until `until`; nothing when that is not after `now`.
    pub(crate) fn insert(&self, key: [u8; 32], value: V, until: u64, now: u64) {
        if until <= now {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (_, u)| now < *u);
            while map.len() >= self.capacity {
                let Some(k) = map.keys().next().copied() else {
                    break;
                };
                map.remove(&k);
            }
        }
        map.insert(key, (value, until));
    }

    /// Number of entries (expired ones included until evicted).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], (V, u64)>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
