//! A local index from cache key to image id, so that a run whose layers are
//! all cached needs no listing of every image in Docker's store (a call whose
//! cost grows with the size of the store).
//!
//! Docker's store stays the only truth: the planner checks each entry
//! against the image's labels before using it, and a missing, stale or
//! unreadable entry only costs that listing. Entries are files named by the
//! key under a folder per daemon address.

use std::fs;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use tracing::debug;

/// The file that marks an index complete. Cache keys are hex digests, so
/// no entry has this name.
const COMPLETE_STAMP: &str = "complete";

pub struct CacheIndex {
    /// `None` when no cache folder can be found, which turns the index off.
    folder: Option<PathBuf>,
}

impl CacheIndex {
    /// Opens the index for the daemon at `address`, under
    /// IMGSCRIPT_CACHE_DIR, else `$XDG_CACHE_HOME/imgscript`, else
    /// `~/.cache/imgscript`.
    pub fn for_daemon(address: &str) -> Self {
        let daemon = hex::encode(&Sha256::digest(address.as_bytes())[..8]);
        let folder = cache_folder().map(|base| base.join("index").join(daemon));
        CacheIndex { folder }
    }

    /// Checks whether the index has held an entry for every cached image since a
    /// full listing of the store. imgscript records each layer it builds,
    /// so a key missing from a complete index is taken as not cached,
    /// without a listing. Layers built with another cache folder are then
    /// built again rather than found, which costs time, never a wrong
    /// image.
    pub fn is_complete(&self) -> bool {
        self.folder
            .as_ref()
            .is_some_and(|folder| folder.join(COMPLETE_STAMP).is_file())
    }

    /// Records the first image of every listed key that the index lacks or
    /// records with another image, and marks the index complete. Entries that
    /// already match are left as they are, since their modification time
    /// is the layer's last use.
    pub fn record_listing(&self, listed: &std::collections::HashMap<String, Vec<String>>) {
        let Some(folder) = &self.folder else { return };
        for (key, image_ids) in listed {
            let Some(image_id) = image_ids.first() else {
                continue;
            };
            if self.lookup(key).as_deref() != Some(image_id.as_str()) {
                self.record(key, image_id);
            }
        }
        if let Err(error) = fs::write(folder.join(COMPLETE_STAMP), "") {
            debug!(folder = %folder.display(), %error, "failed to mark the cache index complete");
        }
    }

    /// Returns the image id last recorded for `key`.
    pub fn lookup(&self, key: &str) -> Option<String> {
        let path = self.folder.as_ref()?.join(key);
        let id = fs::read_to_string(path).ok()?;
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_string())
    }

    /// Returns when a run last used the layer of `key`: the time its entry
    /// was last written or touched.
    pub fn last_used(&self, key: &str) -> Option<std::time::SystemTime> {
        let path = self.folder.as_ref()?.join(key);
        fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .ok()
    }

    /// Marks the layers of `keys` as used now, for `imgscript cache prune
    /// --older-than`. Keys without an entry are skipped.
    pub fn touch(&self, keys: impl Iterator<Item = impl AsRef<str>>) {
        let Some(folder) = &self.folder else { return };
        let now = std::time::SystemTime::now();
        for key in keys {
            let path = folder.join(key.as_ref());
            let touched = fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_modified(now));
            if let Err(error) = touched {
                debug!(path = %path.display(), %error, "failed to mark a cached layer used");
            }
        }
    }

    /// Records `image_id` as the image of `key`. A failure to write only
    /// makes the next run slower, so it is logged and dropped.
    pub fn record(&self, key: &str, image_id: &str) {
        let Some(folder) = &self.folder else { return };
        if let Err(error) = write_entry(folder, key, image_id) {
            debug!(folder = %folder.display(), %key, %error, "failed to record a cache index entry");
        }
    }
}

/// Writes the entry through a temporary file and a rename, so a reader
/// never sees half an id.
fn write_entry(folder: &PathBuf, key: &str, image_id: &str) -> std::io::Result<()> {
    fs::create_dir_all(folder)?;
    let temporary = folder.join(format!(".{key}.{}", std::process::id()));
    fs::write(&temporary, image_id)?;
    fs::rename(&temporary, folder.join(key))
}

/// imgscript's own cache folder: IMGSCRIPT_CACHE_DIR, else
/// `$XDG_CACHE_HOME/imgscript`, else `~/.cache/imgscript`.
pub fn cache_folder() -> Option<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    from_env("IMGSCRIPT_CACHE_DIR")
        .or_else(|| from_env("XDG_CACHE_HOME").map(|cache| cache.join("imgscript")))
        .or_else(|| from_env("HOME").map(|home| home.join(".cache").join("imgscript")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_per_daemon() {
        let folder = tempfile::tempdir().unwrap();
        let index = |address: &str| CacheIndex {
            folder: Some(folder.path().join(address)),
        };

        index("one").record("key", "sha256:abc");

        assert_eq!(index("one").lookup("key").as_deref(), Some("sha256:abc"));
        assert_eq!(index("two").lookup("key"), None);
        assert_eq!(index("one").lookup("other"), None);
    }

    #[test]
    fn disabled_index_finds_nothing() {
        let index = CacheIndex { folder: None };
        index.record("key", "sha256:abc");
        assert_eq!(index.lookup("key"), None);
    }
}
