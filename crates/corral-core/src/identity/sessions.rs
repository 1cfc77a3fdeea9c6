//! Console sessions (docs/security.md): a signed-in browser holds its API key in a cookie,
//! sealed with the server key (AES-256-GCM, `crypto.rs`), so the server keeps no session
//! state and replicas sharing the server key accept each other's sessions.
//!
//! Invariants:
//! - the cookie carries a sealed key, never a principal: every request re-authenticates the
//!   key through the [`crate::auth::Authenticator`], so a revoked key, a deleted user or a
//!   changed role takes effect on the session's next request;
//! - a session has a fixed end (`session_ttl` after sign-in) checked on every request;
//! - a cookie-authenticated change request must carry the session's CSRF token, an HMAC of
//!   the session id under a key derived from the server key, compared in constant time.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use corral_types::time::now_ms;
use corral_types::{Error, Principal};
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::Identity;
use crate::auth::{Credential, invalid_credentials};

/// The sealing context: a value sealed for another purpose does not open as a session.
const SEAL_CONTEXT: &str = "corral-console-session-v1";
/// The purpose of the derived key that signs session ids into CSRF tokens.
const CSRF_PURPOSE: &str = "corral-console-csrf-v1";

/// The one text of every refused CSRF check.
pub const CSRF_REFUSED: &str = "CSRF token missing or invalid.";

/// What a sign-in form presents: a key (or access token) and, optionally, the user and tenant
/// it must belong to (the credential forms a and c of README 3.1 map to this).
#[derive(Debug, Clone, Default)]
pub struct SignIn {
    pub secret: String,
    pub user: Option<String>,
    pub tenant: Option<String>,
}

/// An open session: what its cookie sealed.
#[derive(Serialize, Deserialize)]
pub struct Session {
    /// 16 random bytes, URL-safe base64: what the CSRF token signs.
    sid: String,
    /// The secret the browser signed in with.
    key: String,
    user: String,
    tenant: String,
    /// Milliseconds since the epoch.
    iat: i64,
    exp: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("tenant", &self.tenant)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// When the session ends, milliseconds since the epoch.
    pub fn expires_at(&self) -> i64 {
        self.exp
    }
}

/// A successful sign-in: who, and the cookie value that carries the session.
pub struct SignedIn {
    pub principal: Principal,
    pub session: Session,
    /// The sealed session: the cookie's value. A secret (it holds the key): never log it.
    pub cookie: String,
}

impl Identity {
    /// How long a console session lasts (`[console] session_ttl`).
    pub fn session_ttl(&self) -> Duration {
        self.settings.session_ttl
    }

    /// Signs in: checks the credential exactly as a request's (401 `Invalid credentials.`
    /// otherwise) and seals a new session for it.
    pub async fn sign_in(&self, input: SignIn) -> Result<SignedIn, Error> {
        if input.secret.is_empty() {
            return Err(invalid_credentials());
        }
        let cred = Credential {
            user_must_be_unique: input.user.is_some() && input.tenant.is_none(),
            secret: input.secret,
            user: input.user,
            tenant: input.tenant,
        };
        let principal = self.auth.authenticate(&cred).await?;
        let mut sid = [0u8; 16];
        getrandom::fill(&mut sid).map_err(|e| Error::internal(format!("random source: {e}")))?;
        let now = now_ms();
        let ttl_ms = i64::try_from(self.settings.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let session = Session {
            sid: URL_SAFE_NO_PAD.encode(sid),
            key: cred.secret,
            user: principal.user.as_str().to_string(),
            tenant: principal.tenant.name.as_str().to_string(),
            iat: now,
            exp: now.saturating_add(ttl_ms),
        };
        let plain = serde_json::to_vec(&session).map_err(|e| Error::internal(format!("session: {e}")))?;
        let cookie = self.secrets.seal(SEAL_CONTEXT, &plain)?;
        tracing::info!(tenant = %principal.tenant.name, user = %principal.user, "console sign-in");
        Ok(SignedIn {
            principal,
            session,
            cookie,
        })
    }

    /// Opens a session cookie: 401 `Invalid credentials.` for one that does not unseal (another
    /// server key, tampered, not a session) or has expired. The key is not checked here.
    pub fn open_session(&self, cookie: &str) -> Result<Session, Error> {
        let plain = self
            .secrets
            .open(SEAL_CONTEXT, cookie)
            .map_err(|_| invalid_credentials())?;
        let session: Session = serde_json::from_slice(&plain).map_err(|_| invalid_credentials())?;
        if session.exp <= now_ms() {
            return Err(invalid_credentials());
        }
        Ok(session)
    }

    /// Authenticates an open session's key for its user and tenant, through the same
    /// authenticator (and cache) as a request's `Authorization`.
    pub async fn session_principal(&self, session: &Session) -> Result<Principal, Error> {
        let cred = Credential {
            secret: session.key.clone(),
            user: Some(session.user.clone()),
            tenant: Some(session.tenant.clone()),
            user_must_be_unique: false,
        };
        self.auth.authenticate(&cred).await
    }

    fn csrf_key(&self) -> hmac::Key {
        self.secrets.mac_key(CSRF_PURPOSE)
    }

    /// The session's CSRF token: base64url(HMAC-SHA256(derived key, session id)).
    pub fn session_csrf(&self, session: &Session) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.csrf_key(), session.sid.as_bytes()))
    }

    /// Checks the token a cookie-authenticated change request presents: 403 unless it is the
    /// session's (compared in constant time by `ring::hmac::verify`).
    pub fn check_session_csrf(&self, session: &Session, presented: Option<&str>) -> Result<(), Error> {
        let refused = || Error::Forbidden(CSRF_REFUSED.to_string());
        let tag = URL_SAFE_NO_PAD
            .decode(presented.ok_or_else(refused)?.trim())
            .map_err(|_| refused())?;
        hmac::verify(&self.csrf_key(), session.sid.as_bytes(), &tag).map_err(|_| refused())
    }
}

/// A fresh sign-in form token (the double-submit value of the pre-session cookie): 32 random
/// bytes, URL-safe base64.
pub fn new_form_token() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("random source: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Is `token` shaped like one [`new_form_token`] makes?
pub fn is_form_token(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Do two form tokens match? (Constant time: the cookie is a secret the page echoes.)
pub fn same_form_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    is_form_token(a) && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_tokens_have_their_shape_and_compare() {
        let a = new_form_token().unwrap();
        let b = new_form_token().unwrap();
        assert!(is_form_token(&a) && is_form_token(&b));
        assert_ne!(a, b);
        assert!(same_form_token(&a, &a.clone()));
        assert!(!same_form_token(&a, &b));
        assert!(!same_form_token("short", "short"));
        assert!(!is_form_token(&format!("{}=", &a[..42])));
    }

    /// A core on a fresh SQLite store, bootstrapped with key `k` x 40, sealing with `server_key`.
    async fn core(dir: &std::path::Path, server_key: u8, ttl: Duration) -> crate::Core {
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let store = corral_store::Store::open(&url, 2).await.unwrap();
        let settings = crate::CoreSettings {
            session_ttl: ttl,
            ..Default::default()
        };
        let core = crate::Core::new(
            store,
            settings,
            crate::crypto::SecretBox::from_key(&[server_key; 32]).unwrap(),
        );
        let _ = core.identity().bootstrap(dir, Some(&"k".repeat(40))).await;
        core
    }

    #[tokio::test]
    async fn sessions_open_only_under_their_key_context_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let a = core(dir.path(), 1, Duration::from_secs(60)).await;
        let id = a.identity();
        let signed = id
            .sign_in(SignIn {
                secret: "k".repeat(40),
                user: Some("admin".into()),
                tenant: None,
            })
            .await
            .unwrap();
        assert!(!signed.cookie.contains(&"k".repeat(40)), "the key is sealed");
        let session = id.open_session(&signed.cookie).unwrap();
        assert_eq!(
            id.session_principal(&session).await.unwrap().user.as_str(),
            "admin"
        );
        // The CSRF token is the session's, and only it passes.
        let token = id.session_csrf(&session);
        assert!(id.check_session_csrf(&session, Some(&token)).is_ok());
        let other = id
            .open_session(
                &id.sign_in(SignIn {
                    secret: "k".repeat(40),
                    ..SignIn::default()
                })
                .await
                .unwrap()
                .cookie,
            )
            .unwrap();
        for bad in [None, Some(""), Some("x"), Some(id.session_csrf(&other).as_str())] {
            assert_eq!(id.check_session_csrf(&session, bad).unwrap_err().status(), 403);
        }
        // The same plaintext sealed for another purpose, or under another server key, does not
        // open as a session.
        let plain = serde_json::to_vec(&session).unwrap();
        let foreign = id.secrets.seal("host-key:t:a", &plain).unwrap();
        assert_eq!(id.open_session(&foreign).unwrap_err().status(), 401);
        let dir_b = tempfile::tempdir().unwrap();
        let b = core(dir_b.path(), 2, Duration::from_secs(60)).await;
        assert_eq!(
            b.identity().open_session(&signed.cookie).unwrap_err().status(),
            401
        );
        // Wrong credentials are refused at sign-in.
        for (secret, user, tenant) in [("nope", None, None), ("", None, None)] {
            let r = id
                .sign_in(SignIn {
                    secret: secret.into(),
                    user,
                    tenant,
                })
                .await;
            assert_eq!(r.err().map(|e| e.status()), Some(401));
        }
        let r = id
            .sign_in(SignIn {
                secret: "k".repeat(40),
                user: Some("admin".into()),
                tenant: Some("acme".into()),
            })
            .await;
        assert_eq!(r.err().map(|e| e.status()), Some(401));
        // A session past its end does not open.
        let dir_c = tempfile::tempdir().unwrap();
        let c = core(dir_c.path(), 1, Duration::ZERO).await;
        let ended = c
            .identity()
            .sign_in(SignIn {
                secret: "k".repeat(40),
                ..SignIn::default()
            })
            .await
            .unwrap();
        assert_eq!(
            c.identity().open_session(&ended.cookie).unwrap_err().status(),
            401
        );
    }
}
