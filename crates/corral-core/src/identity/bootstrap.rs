//! First start: on an empty store, create tenant `superadmin`, its user `admin` and one API
//! key, and write that key to `<data-dir>/bootstrap-key` (mode 0600). Never twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use corral_store::{NewTenant, TenantRow};
use corral_types::Error;
use corral_types::ctx::SUPERADMIN_TENANT;
use corral_types::time::now_ms;
use corral_types::views::UNLIMITED;

use crate::identity::Identity;
use crate::identity::{admin_user, key_record, new_tenant_id};
use crate::secrets;

/// A configured bootstrap key must be at least this long (README 2.4).
pub const MIN_BOOTSTRAP_KEY_LEN: usize = 32;

/// Checks a configured bootstrap key: at least 32 visible ASCII characters.
pub fn validate_bootstrap_key(key: &str) -> Result<(), String> {
    if key.len() < MIN_BOOTSTRAP_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the bootstrap API key must be at least {MIN_BOOTSTRAP_KEY_LEN} visible ASCII characters"
        ));
    }
    Ok(())
}

/// What the first-start check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The store was empty: the key is in this file.
    Created(PathBuf),
    /// The store had been bootstrapped before; nothing was created.
    AlreadyDone,
}

fn write_key_file(path: &Path, key: &str) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(".bootstrap-key.tmp");
    let write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        writeln!(f, "{key}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))
}

impl Identity {
    /// Runs the first-start bootstrap. `configured` is the operator's key, already validated.
    pub async fn bootstrap(&self, data_dir: &Path, configured: Option<&str>) -> Result<Bootstrap, Error> {
        let secret = match configured {
            Some(k) => k.to_string(),
            None => secrets::generate(secrets::API_KEY_PREFIX)?,
        };
        let path = data_dir.join("bootstrap-key");
        let new = NewTenant {
            tenant: TenantRow {
                id: new_tenant_id(),
                name: SUPERADMIN_TENANT.into(),
                description: String::new(),
                workers: 10,
                max_clusters: UNLIMITED,
                max_nodes: UNLIMITED,
                create_time: now_ms(),
            },
            admin: admin_user(),
            key: key_record(&secret, "bootstrap key".into(), None),
            copy_from_superadmin: false,
            worker_capacity: i64::MAX,
        };
        let created = self
            .store
            .bootstrap(&new, || write_key_file(&path, &secret))
            .await?;
        Ok(if created {
            Bootstrap::Created(path)
        } else {
            Bootstrap::AlreadyDone
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_key_rule() {
        assert!(validate_bootstrap_key(&"a".repeat(32)).is_ok());
        assert!(validate_bootstrap_key(&"a".repeat(31)).is_err());
        assert!(validate_bootstrap_key(&format!("{} b", "a".repeat(32))).is_err());
    }

    #[test]
    fn key_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap-key");
        write_key_file(&path, "crk_x").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "crk_x\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
