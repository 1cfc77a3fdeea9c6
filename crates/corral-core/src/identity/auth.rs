//! Authentication: turns a presented credential into a [`Principal`], or a 401.
//!
//! Resolved credentials are cached by the hash of their secret for a few seconds, so a busy
//! client costs one hash and one map lookup per request instead of a database round trip.
//! Every identity change made through this process (key or user deleted, role changed,
//! tenant deleted) clears the cache at once; other replicas see it within the cache TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use corral_store::{CredentialRow, Store};
use corral_types::time::now_ms;
use corral_types::{Error, Principal, TenantName, TenantRef, UserName};

use crate::secrets;

/// A credential as the request presented it (README 3.1), before it is checked.
#[derive(Debug, Clone)]
pub struct Credential {
    /// An API key or an access token.
    pub secret: String,
    /// The user the request claims (Coopr-UserID, or the user of a Basic credential).
    pub user: Option<String>,
    /// The tenant the request claims (Coopr-TenantID, or `@tenant` of a Basic credential).
    pub tenant: Option<String>,
    /// A Basic credential without `@tenant`: the user id must exist in exactly one tenant.
    pub user_must_be_unique: bool,
}

/// The one message for every rejected credential: it never says which part was wrong.
pub fn invalid_credentials() -> Error {
    Error::Unauthorized("Invalid credentials.".to_string())
}

/// Don't write `last_used_time` more often than this (coopr-v2.md 4.1).
const TOUCH_EVERY_MS: i64 = 60_000;
/// Past this many entries the cache is dropped whole; it refills from the store.
const CACHE_MAX: usize = 100_000;

pub struct Authenticator {
    store: Store,
    ttl: Duration,
    cache: Mutex<Cache>,
}

/// Resolved credentials by the hash of their secret.
#[derive(Default)]
struct Cache {
    entries: HashMap<String, (CredentialRow, Instant)>,
    /// Bumped by every invalidation. A lookup that read the store before an identity change
    /// committed must not put its (now stale) row back after the change cleared the cache:
    /// it remembers its row only if no invalidation happened since it started.
    generation: u64,
}

impl Authenticator {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Authenticator {
            store,
            ttl,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Forgets every cached credential; called after any identity change.
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.entries.clear();
            c.generation = c.generation.wrapping_add(1);
        }
    }

    fn cached(&self, hash: &str) -> Option<CredentialRow> {
        let cache = self.cache.lock().ok()?;
        let (row, at) = cache.entries.get(hash)?;
        (at.elapsed() < self.ttl).then(|| row.clone())
    }

    /// The current cache generation, read before a store lookup (`None`: do not cache).
    fn generation(&self) -> Option<u64> {
        self.cache.lock().ok().map(|c| c.generation)
    }

    /// Caches `row` unless the cache was invalidated since `generation` was read.
    fn remember(&self, hash: String, row: CredentialRow, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut c) = self.cache.lock() {
            if c.generation != generation {
                return;
            }
            if c.entries.len() >= CACHE_MAX {
                c.entries.clear();
            }
            c.entries.insert(hash, (row, Instant::now()));
        }
    }

    async fn resolve(&self, secret: &str) -> Result<Option<CredentialRow>, Error> {
        let hash = secrets::hash(secret);
        if let Some(row) = self.cached(&hash) {
            return Ok(Some(row));
        }
        let generation = self.generation();
        let row = if secret.starts_with(secrets::TOKEN_PREFIX) {
            match self.store.credential_by_token_hash(&hash).await? {
                Some(row) => Some(row),
                // The configured bootstrap key is accepted whatever its format (README 3.1),
                // so a key may look like a token too.
                None => self.store.credential_by_key_hash(&hash).await?,
            }
        } else {
            self.store.credential_by_key_hash(&hash).await?
        };
        // The store found the row by its hash; compare once more without a timing signal.
        let row = row.filter(|r| secrets::same_hash(&r.stored_hash, &hash));
        if let (Some(r), Some(generation)) = (&row, generation) {
            self.remember(hash, r.clone(), generation);
        }
        Ok(row)
    }

    /// Checks a credential and answers who it is.
    pub async fn authenticate(&self, cred: &Credential) -> Result<Principal, Error> {
        let row = self
            .resolve(&cred.secret)
            .await?
            .ok_or_else(invalid_credentials)?;
        let now = now_ms();
        if row.expire_time.is_some_and(|t| t <= now) {
            return Err(invalid_credentials());
        }
        if cred.user.as_deref().is_some_and(|u| u != row.user_id)
            || cred.tenant.as_deref().is_some_and(|t| t != row.tenant_name)
        {
            return Err(invalid_credentials());
        }
        if cred.user_must_be_unique && self.store.count_tenants_with_user(&row.user_id).await? != 1 {
            return Err(invalid_credentials());
        }
        let role = row.role;
        if row.last_used_time.is_none_or(|t| now - t >= TOUCH_EVERY_MS) {
            self.touch(&row, now);
        }
        Ok(Principal {
            tenant: TenantRef {
                id: row.tenant_id,
                name: TenantName::from_trusted(row.tenant_name),
            },
            user: UserName::from_trusted(row.user_id),
            role,
            api_key: row.api_key_id,
        })
    }

    /// Records the use in the background: authentication must not wait for a write.
    fn touch(&self, row: &CredentialRow, now: i64) {
        if let Ok(mut c) = self.cache.lock() {
            for (cached, _) in c
                .entries
                .values_mut()
                .filter(|(r, _)| r.api_key_id == row.api_key_id)
            {
                cached.last_used_time = Some(now);
            }
        }
        let store = self.store.clone();
        let id = row.api_key_id;
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(id, now).await {
                tracing::warn!(error = %e, "could not record API key use");
            }
        });
    }
}
