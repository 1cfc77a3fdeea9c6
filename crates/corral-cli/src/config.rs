//! Named contexts (like kubectl's): `~/.config/corral/config.toml`, or the file named by
//! `$CORRAL_CLI_CONFIG`. The file holds API keys, so it is written with mode 0600 (its
//! directory 0700) and no command ever prints a stored key.
//!
//! Precedence: flags, then the environment (`CORRAL_ADDR`, `CORRAL_API_KEY`, `CORRAL_TENANT`,
//! `CORRAL_USER`; clap merges these two), then the selected context (`--context`,
//! `$CORRAL_CONTEXT`, or the file's current one).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// `CORRAL_CONFIG` already names the server's settings file (`corral serve --config`), so
/// the client's file has its own variable.
pub const CONFIG_ENV: &str = "CORRAL_CLI_CONFIG";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// Where the contexts file lives.
pub fn path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(x).join("corral").join("config.toml"));
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(h) => Ok(PathBuf::from(h)
            .join(".config")
            .join("corral")
            .join("config.toml")),
        None => Err(CliError::usage(format!(
            "cannot find the contexts file: set HOME or {CONFIG_ENV}"
        ))),
    }
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<ConfigFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(CliError::failure(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let io = |e: std::io::Error| CliError::failure(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let text = toml::to_string(self).map_err(|e| CliError::failure(e.to_string()))?;
        let tmp = path.with_extension("toml.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The context to use: `name` if given, else the current one (none is fine).
    pub fn select(&self, name: Option<&str>) -> Result<Option<(String, Context)>> {
        match name.or(self.current.as_deref()) {
            None => Ok(None),
            Some(n) => match self.contexts.get(n) {
                Some(c) => Ok(Some((n.to_string(), c.clone()))),
                None if name.is_some() => Err(CliError::not_found(format!(
                    "no context '{n}' (see `corral context list`)"
                ))),
                // A stale `current` falls back to flags and environment only.
                None => Ok(None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("corral-cli-cfg-{}", std::process::id()));
        let p = dir.join("sub").join("config.toml");
        let mut c = ConfigFile::default();
        c.contexts.insert(
            "dev".into(),
            Context {
                addr: Some("http://127.0.0.1:1".into()),
                api_key: Some("crk_x".into()),
                ..Context::default()
            },
        );
        c.current = Some("dev".into());
        c.save(&p).unwrap_or_else(|e| unreachable!("{e}"));
        let mode = std::fs::metadata(&p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let back = ConfigFile::load(&p).unwrap_or_default();
        assert_eq!(
            back.select(None).ok().flatten().map(|c| c.1),
            c.contexts.get("dev").cloned()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
