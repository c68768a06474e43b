//! The stored login: `credentials.json` in the CLI's config directory, readable by its owner only
//! (directory 0700, file 0600, written atomically so a crash never leaves half a file).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The file name inside the config directory.
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// What `emporiumctl login` stores.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The issuer the tokens came from (refresh and revocation go back there).
    pub issuer: String,
    pub client_id: String,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, in seconds since 1970.
    pub expires_at: i64,
}

/// The config directory and the credentials file in it.
#[derive(Clone, Debug)]
pub struct CredentialStore {
    directory: PathBuf,
}

// === impl Credentials ===

impl Credentials {
    /// Whether the access token has expired at `now` (or will within a few seconds, so a call
    /// does not start with a token that dies on the way).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at <= now + 10
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        f.debug_struct("Credentials")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

// === impl CredentialStore ===

impl CredentialStore {
    pub fn new(directory: &Path) -> CredentialStore {
        CredentialStore {
            directory: directory.to_owned(),
        }
    }

    /// `$EMPORIUMCTL_CONFIG_DIR`, else `$XDG_CONFIG_HOME/emporiumctl`, else
    /// `$HOME/.config/emporiumctl`; `None` when none of them is set.
    pub fn default_directory(get: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
        let get = |name: &str| get(name).filter(|value| !value.is_empty());
        if let Some(directory) = get("EMPORIUMCTL_CONFIG_DIR") {
            return Some(PathBuf::from(directory));
        }
        if let Some(config_home) = get("XDG_CONFIG_HOME") {
            return Some(PathBuf::from(config_home).join("emporiumctl"));
        }
        get("HOME").map(|home| PathBuf::from(home).join(".config").join("emporiumctl"))
    }

    pub fn path(&self) -> PathBuf {
        self.directory.join(CREDENTIALS_FILE)
    }

    /// The stored credentials, or `None` when nobody is logged in.
    pub fn load(&self) -> anyhow::Result<Option<Credentials>> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| format!("Failed to read {}", path.display()));
            }
        };
        let credentials = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a credentials file; run `emporiumctl login`",
                path.display()
            )
        })?;
        Ok(Some(credentials))
    }

    /// Writes `credentials`: the directory is created 0700, the file written to a 0600 temporary
    /// file beside it and renamed over the old one.
    pub fn save(&self, credentials: &Credentials) -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.directory)
            .with_context(|| format!("Failed to create {}", self.directory.display()))?;
        let path = self.path();
        let temporary = self
            .directory
            .join(format!(".{CREDENTIALS_FILE}.{}.tmp", std::process::id()));
        let json =
            serde_json::to_vec_pretty(credentials).context("Failed to encode credentials")?;
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(&json)?;
                file.sync_all()
            });
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(error).with_context(|| format!("Failed to write {}", temporary.display()));
        }
        std::fs::rename(&temporary, &path).with_context(|| {
            let _ = std::fs::remove_file(&temporary);
            format!("Failed to replace {}", path.display())
        })
    }

    /// Deletes the stored credentials; nothing to delete is fine.
    pub fn delete(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.path()) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => {
                Err(error).with_context(|| format!("Failed to delete {}", self.path().display()))
            }
        }
    }
}
