//! A local index from cache key to image id, so that a run whose layers are
//! all cached needs no listing of every image in Docker's store (a call whose
//! cost grows with the size of the store).
//!
//! Docker's store stays the only truth: the planner checks each entry
//! against the image's labels before using it, and a missing, stale or
//! unreadable entry only costs that listing. Entries are files named by the
//! key under a folder per daemon address.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use tracing::debug;

use crate::backend::CachedImage;

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

    /// Records the newest listed image of every key that the index lacks
    /// or records with another image, and marks the index complete.
    /// Entries that already match are left as they are, since their
    /// modification time is the layer's last use. A new entry's last use is
    /// unknown, so it is dated by the image's creation. Otherwise a new cache
    /// folder would make every layer in the store look used now.
    pub fn record_listing(&self, listed: &[CachedImage]) {
        let Some(folder) = &self.folder else { return };
        let mut newest: HashMap<&str, &CachedImage> = HashMap::new();
        for image in listed {
            let entry = newest.entry(&image.key).or_insert(image);
            if image.created > entry.created {
                *entry = image;
            }
        }
        for image in newest.into_values() {
            if self.lookup(&image.key).as_deref() != Some(image.image_id.as_str()) {
                self.record_seen(image);
            }
        }
        if let Err(error) = fs::write(folder.join(COMPLETE_STAMP), "") {
            debug!(folder = %folder.display(), %error, "failed to mark the cache index complete");
        }
    }

    /// Records a listed image whose last use is unknown, dated by its
    /// creation.
    pub fn record_seen(&self, image: &CachedImage) {
        self.record(&image.key, &image.image_id);
        let Some(folder) = &self.folder else { return };
        let created = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(image.created.max(0).unsigned_abs());
        let dated = fs::File::options()
            .write(true)
            .open(folder.join(&image.key))
            .and_then(|file| file.set_modified(created));
        if let Err(error) = dated {
            debug!(key = %image.key, %error, "failed to date a cache index entry");
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
    fn listing_dates_new_entries_by_creation() {
        let folder = tempfile::tempdir().unwrap();
        let index = CacheIndex {
            folder: Some(folder.path().to_path_buf()),
        };
        let image = |key: &str, id: &str, created: i64| CachedImage {
            key: key.to_string(),
            image_id: id.to_string(),
            size: 0,
            created,
            tags: Vec::new(),
            parent: String::new(),
        };
        index.record("used", "sha256:used");
        let used_at = index.last_used("used").unwrap();

        index.record_listing(&[
            image("old", "sha256:older", 1_000),
            image("old", "sha256:old", 2_000),
            image("used", "sha256:used", 1_000),
        ]);

        assert_eq!(index.lookup("old").as_deref(), Some("sha256:old"));
        let old_used = index.last_used("old").unwrap();
        let since_epoch = old_used.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(since_epoch.as_secs(), 2_000);
        assert_eq!(index.last_used("used").unwrap(), used_at);
        assert!(index.is_complete());
    }

    #[test]
    fn disabled_index_finds_nothing() {
        let index = CacheIndex { folder: None };
        index.record("key", "sha256:abc");
        assert_eq!(index.lookup("key"), None);
    }
}
