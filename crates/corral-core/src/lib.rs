//! Corral's application layer: every operation the API offers, as one function that takes the
//! operation context, checks authorization, applies the business rules and calls the store.
//!
//! Architecture invariant: no HTTP and no SQL text here. Handlers call exactly one function
//! of [`Core`]; the tenant of every store call comes from the [`OpCtx`].

pub mod auth;
pub mod bootstrap;
pub mod crypto;
mod identity;
pub mod jobs;
mod namespaces;
pub mod secrets;

use std::time::Duration;

use corral_store::Store;
pub use corral_types::OpCtx;

use crate::auth::Authenticator;
use crate::crypto::SecretBox;

/// Settings the business rules depend on.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
    /// The most workers all tenants may hold together.
    pub worker_capacity: i64,
    /// How long a resolved credential is reused without asking the store.
    pub auth_cache_ttl: Duration,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            token_ttl: Duration::from_secs(3600),
            worker_capacity: 1000,
            auth_cache_ttl: Duration::from_secs(5),
        }
    }
}

/// The application: cheap to share behind an `Arc`.
pub struct Core {
    store: Store,
    settings: CoreSettings,
    auth: Authenticator,
    secrets: SecretBox,
}

impl Core {
    pub fn new(store: Store, settings: CoreSettings, secrets: SecretBox) -> Core {
        let auth = Authenticator::new(store.clone(), settings.auth_cache_ttl);
        Core {
            store,
            settings,
            auth,
            secrets,
        }
    }

    /// Encrypts and decrypts secrets kept at rest.
    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &CoreSettings {
        &self.settings
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// `GET /ping`: can the store be reached?
    pub async fn ping(&self) -> bool {
        self.store.ping().await
    }
}
