//! Encryption of secrets at rest (host SSH keys, container manager tokens): AES-256-GCM with
//! a server key that lives in the data dir (`server.key`, mode 0600) or comes from the
//! configuration. Stored form: `v1:` + base64(nonce ‖ ciphertext ‖ tag). The tenant and the
//! purpose are bound in as associated data, so a ciphertext copied to another row or tenant
//! does not decrypt.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use corral_types::Error;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;

const PREFIX: &str = "v1:";

/// Seals and opens secrets with the server key.
pub struct SecretBox {
    key: LessSafeKey,
    /// HMAC-SHA256 keyed with the server key, from which [`SecretBox::mac_key`] derives one
    /// key per purpose (the console's CSRF tokens), so no purpose reuses the sealing key.
    derive: hmac::Key,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn from_key(bytes: &[u8; 32]) -> Result<SecretBox, Error> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| Error::internal("bad server key"))?;
        Ok(SecretBox {
            key: LessSafeKey::new(key),
            derive: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    /// An HMAC-SHA256 key of its own for `purpose`, derived from the server key (so replicas
    /// sharing the server key derive the same one).
    pub fn mac_key(&self, purpose: &str) -> hmac::Key {
        let derived = hmac::sign(&self.derive, purpose.as_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
    }

    /// Loads `<data_dir>/server.key`, creating it (32 random bytes, base64, mode 0600) on first
    /// use. `configured` (base64 of 32 bytes) wins when given.
    pub fn load_or_create(data_dir: &Path, configured: Option<&str>) -> Result<SecretBox, Error> {
        let text = match configured {
            Some(k) => k.trim().to_string(),
            None => {
                let path = data_dir.join("server.key");
                match std::fs::read_to_string(&path) {
                    Ok(t) => t.trim().to_string(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let mut bytes = [0u8; 32];
                        getrandom::fill(&mut bytes)
                            .map_err(|e| Error::internal(format!("random source: {e}")))?;
                        let text = STANDARD.encode(bytes);
                        write_private(&path, &text)?;
                        tracing::info!(file = %path.display(), "created the server key that encrypts secrets at rest");
                        text
                    }
                    Err(e) => return Err(Error::internal(format!("cannot read {}: {e}", path.display()))),
                }
            }
        };
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(|_| Error::internal("the server key is not base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::internal("the server key must be 32 bytes (base64)"))?;
        Self::from_key(&bytes)
    }

    /// Encrypts `plain`, bound to `context` (e.g. `host-key:<tenant>:<address>`).
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::internal(format!("random source: {e}")))?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| Error::internal("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    /// Decrypts what [`SecretBox::seal`] produced with the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, Error> {
        let bad =
            || Error::internal("a stored secret cannot be decrypted (wrong server key or corrupted row)");
        let raw = STANDARD
            .decode(sealed.strip_prefix(PREFIX).ok_or_else(bad)?)
            .map_err(|_| bad())?;
        if raw.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut body)
            .map_err(|_| bad())?;
        Ok(plain.to_vec())
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let write = || -> std::io::Result<()> {
        let mut f = opts.open(path)?;
        writeln!(f, "{text}")?;
        f.sync_all()
    };
    write().map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_bound_to_context() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretBox::load_or_create(dir.path(), None).unwrap();
        let sealed = a
            .seal("host-key:t1:10.0.0.1", b"-----BEGIN OPENSSH PRIVATE KEY-----")
            .unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("OPENSSH"));
        assert_eq!(
            a.open("host-key:t1:10.0.0.1", &sealed).unwrap(),
            b"-----BEGIN OPENSSH PRIVATE KEY-----"
        );
        assert!(
            a.open("host-key:t2:10.0.0.1", &sealed).is_err(),
            "context is bound"
        );
        // The same data dir gives the same key; another key cannot open it.
        let again = SecretBox::load_or_create(dir.path(), None).unwrap();
        assert!(again.open("host-key:t1:10.0.0.1", &sealed).is_ok());
        let other = SecretBox::from_key(&[7u8; 32]).unwrap();
        assert!(other.open("host-key:t1:10.0.0.1", &sealed).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("server.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn mac_keys_differ_by_purpose_and_server_key() {
        let a = SecretBox::from_key(&[1u8; 32]).unwrap();
        let b = SecretBox::from_key(&[2u8; 32]).unwrap();
        let tag = |k: &hmac::Key| hmac::sign(k, b"data").as_ref().to_vec();
        assert_eq!(tag(&a.mac_key("x")), tag(&a.mac_key("x")));
        assert_ne!(tag(&a.mac_key("x")), tag(&a.mac_key("y")));
        assert_ne!(tag(&a.mac_key("x")), tag(&b.mac_key("x")));
    }

    #[test]
    fn tampering_is_detected() {
        let b = SecretBox::from_key(&[1u8; 32]).unwrap();
        let sealed = b.seal("c", b"secret").unwrap();
        let mut raw = STANDARD.decode(&sealed[3..]).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(b.open("c", &format!("v1:{}", STANDARD.encode(raw))).is_err());
        assert!(b.open("c", "garbage").is_err());
    }
}
