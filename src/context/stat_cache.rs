//! A cache of file digests keyed by file metadata, so that the digest of an
//! unchanged context is computed without reading its files.
//!
//! Each context root has one cache file under `<cache folder>/stat-cache/`.
//! It maps every file's path relative to the root to the size, modification
//! time, change time, inode and device that `stat` reported, and to the
//! SHA-256 of the file's content. A file whose metadata still matches is
//! taken as unchanged. The cache only saves work: a missing, unreadable or
//! corrupt cache file (a trailing SHA-256 over its bytes detects damage)
//! costs a rehash, never a wrong digest, and no time enters a digest.
//! Contexts with the same root but other ignore rules share the cache file,
//! and each save keeps only the files of its own context.
//!
//! Racy entries: file systems stamp times from a coarse clock (a kernel tick
//! on Linux, whole seconds on some file systems), so a file written again in
//! the same tick as the metadata the cache recorded can keep every field.
//! As git does for its index, an entry is trusted only when the file's
//! modification and change times are older than the time its context was
//! collected, here by at least [`RACY_MARGIN`]. A younger file is hashed
//! again on every run until it is old enough.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tracing::debug;

/// How much older than the collection time a file's times must be for its
/// cache entry to be trusted. Two seconds covers file systems with a
/// two-second timestamp resolution (FAT) as well as a kernel tick.
///
/// NOTE: a network file system whose server clock runs behind this
/// machine's by more than this margin weakens the rule.
pub const RACY_MARGIN: Duration = Duration::from_secs(2);

/// Cache files not written or read for this long are deleted when another
/// cache file is saved, so that roots that are gone (temporary folders, say)
/// do not pile up.
const UNUSED_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The first bytes of a cache file. The last byte is the format version.
const MAGIC: &[u8; 8] = b"imgstat\x01";

/// A point in time as file metadata gives it: seconds and nanoseconds since
/// the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanoseconds: u32,
}

impl Timestamp {
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    fn from_system_time(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(since) => Timestamp {
                seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
                nanoseconds: since.subsec_nanos(),
            },
            // A clock before 1970 trusts nothing, which is safe.
            Err(_) => Timestamp {
                seconds: i64::MIN,
                nanoseconds: 0,
            },
        }
    }

    /// Returns this time moved `duration` later, saturating at the end of time.
    pub fn plus(self, duration: Duration) -> Self {
        let nanoseconds = u64::from(self.nanoseconds) + u64::from(duration.subsec_nanos());
        let carry = (nanoseconds / 1_000_000_000) as i64;
        let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        Timestamp {
            seconds: self.seconds.saturating_add(seconds).saturating_add(carry),
            nanoseconds: (nanoseconds % 1_000_000_000) as u32,
        }
    }
}

/// The metadata of a regular file that the cache compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    pub modified: Timestamp,
    /// The inode change time (`st_ctime`), which every write, rename and
    /// change of times or mode sets to the current time.
    pub changed: Timestamp,
    pub inode: u64,
    pub device: u64,
}

impl FileStat {
    pub fn of(metadata: &fs::Metadata) -> Self {
        FileStat {
            size: metadata.size(),
            modified: Timestamp {
                seconds: metadata.mtime(),
                nanoseconds: metadata.mtime_nsec() as u32,
            },
            changed: Timestamp {
                seconds: metadata.ctime(),
                nanoseconds: metadata.ctime_nsec() as u32,
            },
            inode: metadata.ino(),
            device: metadata.dev(),
        }
    }

    /// Checks whether the file may still change without its metadata
    /// changing, judged against the time its context was collected.
    pub fn is_racy(&self, collected_at: Timestamp) -> bool {
        let newest = self.modified.max(self.changed);
        newest.plus(RACY_MARGIN) >= collected_at
    }
}

/// A file's metadata when it was hashed, and the SHA-256 of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CachedFile {
    stat: FileStat,
    sha256: [u8; 32],
}

/// The stat cache of one context root, as loaded at the start of a digest.
pub struct StatCache {
    /// `None` when no cache folder can be found, which turns the cache off.
    file: Option<PathBuf>,
    /// When the context that the entries were recorded for was collected.
    collected_at: Timestamp,
    entries: HashMap<String, CachedFile>,
}

impl StatCache {
    /// Loads the cache of the context rooted at `root` from imgscript's
    /// cache folder.
    pub fn for_root(root: &Path) -> Self {
        let name = hex::encode(&Sha256::digest(root.as_os_str().as_encoded_bytes())[..16]);
        match crate::cache_index::cache_folder() {
            Some(folder) => Self::load(folder.join("stat-cache").join(name)),
            None => StatCache {
                file: None,
                collected_at: Timestamp::now(),
                entries: HashMap::new(),
            },
        }
    }

    /// Loads the cache stored in `file`. A file that is missing or fails to
    /// decode gives an empty cache.
    pub fn load(file: PathBuf) -> Self {
        let decoded = match fs::read(&file) {
            Ok(bytes) => decode(&bytes),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => {
                debug!(file = %file.display(), %error, "failed to read the stat cache");
                None
            }
        };
        let (collected_at, entries) = match decoded {
            Some(decoded) => {
                mark_used(&file);
                decoded
            }
            None => (Timestamp::now(), HashMap::new()),
        };
        StatCache {
            file: Some(file),
            collected_at,
            entries,
        }
    }

    /// Number of entries loaded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns the SHA-256 recorded for the file at `relative` if its
    /// metadata is still `stat` and the entry is not racy.
    pub fn lookup(&self, relative: &str, stat: &FileStat) -> Option<[u8; 32]> {
        let cached = self.entries.get(relative)?;
        let trusted = cached.stat == *stat && !cached.stat.is_racy(self.collected_at);
        trusted.then_some(cached.sha256)
    }

    /// Replaces the cache with `files` (relative path, metadata at
    /// collection, SHA-256), recorded for a context collected at
    /// `collected_at`. A failure to write only costs a rehash next time, so
    /// it is logged and dropped.
    pub fn save<'a>(
        &self,
        collected_at: Timestamp,
        files: impl Iterator<Item = (&'a str, FileStat, [u8; 32])>,
    ) {
        let Some(file) = &self.file else { return };
        let bytes = encode(collected_at, files);
        if let Err(error) = write_atomically(file, &bytes) {
            debug!(file = %file.display(), %error, "failed to write the stat cache");
            return;
        }
        if let Some(folder) = file.parent() {
            remove_unused(folder);
        }
    }
}

fn encode<'a>(
    collected_at: Timestamp,
    files: impl Iterator<Item = (&'a str, FileStat, [u8; 32])>,
) -> Vec<u8> {
    let mut body = Vec::new();
    let mut count: u64 = 0;
    for (relative, stat, sha256) in files {
        body.extend_from_slice(&(relative.len() as u64).to_le_bytes());
        body.extend_from_slice(relative.as_bytes());
        body.extend_from_slice(&stat.size.to_le_bytes());
        push_timestamp(&mut body, stat.modified);
        push_timestamp(&mut body, stat.changed);
        body.extend_from_slice(&stat.inode.to_le_bytes());
        body.extend_from_slice(&stat.device.to_le_bytes());
        body.extend_from_slice(&sha256);
        count += 1;
    }

    let mut bytes = Vec::with_capacity(body.len() + 64);
    bytes.extend_from_slice(MAGIC);
    push_timestamp(&mut bytes, collected_at);
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&body);
    let checksum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&checksum);
    bytes
}

fn push_timestamp(bytes: &mut Vec<u8>, time: Timestamp) {
    bytes.extend_from_slice(&time.seconds.to_le_bytes());
    bytes.extend_from_slice(&time.nanoseconds.to_le_bytes());
}

/// Decodes a cache file, or returns `None` when its checksum, magic bytes
/// or layout are wrong.
fn decode(bytes: &[u8]) -> Option<(Timestamp, HashMap<String, CachedFile>)> {
    let (content, checksum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if Sha256::digest(content).as_slice() != checksum {
        debug!("ignored a stat cache whose checksum does not match");
        return None;
    }

    let mut reader = Reader { rest: content };
    if reader.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let collected_at = reader.timestamp()?;
    let count = reader.u64()?;

    // Each entry takes at least 80 bytes, which bounds the capacity that a
    // damaged count could ask for.
    let mut entries = HashMap::with_capacity((count as usize).min(content.len() / 80));
    for _ in 0..count {
        let length = usize::try_from(reader.u64()?).ok()?;
        let relative = std::str::from_utf8(reader.take(length)?).ok()?.to_string();
        let stat = FileStat {
            size: reader.u64()?,
            modified: reader.timestamp()?,
            changed: reader.timestamp()?,
            inode: reader.u64()?,
            device: reader.u64()?,
        };
        let sha256 = reader.take(32)?.try_into().ok()?;
        entries.insert(relative, CachedFile { stat, sha256 });
    }
    reader.rest.is_empty().then_some((collected_at, entries))
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(length)?;
        self.rest = rest;
        Some(taken)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn timestamp(&mut self) -> Option<Timestamp> {
        let seconds = i64::from_le_bytes(self.take(8)?.try_into().ok()?);
        let nanoseconds = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        Some(Timestamp {
            seconds,
            nanoseconds,
        })
    }
}

/// Writes `bytes` to a temporary file beside `file` and renames it over
/// `file`, so that a reader sees the old cache or the new one, never half.
fn write_atomically(file: &Path, bytes: &[u8]) -> io::Result<()> {
    let folder = file.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(folder)?;
    let mut temporary = tempfile::NamedTempFile::new_in(folder)?;
    temporary.write_all(bytes)?;
    temporary.persist(file).map_err(|error| error.error)?;
    Ok(())
}

/// Sets the modification time of a cache file that was just read, so that
/// [`remove_unused`] keeps caches in use that never change.
fn mark_used(file: &Path) {
    let touched = fs::File::options()
        .write(true)
        .open(file)
        .and_then(|opened| opened.set_modified(SystemTime::now()));
    if let Err(error) = touched {
        debug!(file = %file.display(), %error, "failed to mark the stat cache as used");
    }
}

/// Deletes the cache files in `folder` that were not used for
/// [`UNUSED_LIFETIME`]. Temporary files that a killed process left are
/// removed the same way.
fn remove_unused(folder: &Path) {
    let Ok(listing) = fs::read_dir(folder) else {
        return;
    };
    let now = SystemTime::now();
    for item in listing.flatten() {
        let unused_for = item
            .metadata()
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok());
        if unused_for.is_some_and(|age| age > UNUSED_LIFETIME) {
            let _ = fs::remove_file(item.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(seconds: i64) -> FileStat {
        let time = Timestamp {
            seconds,
            nanoseconds: 5,
        };
        FileStat {
            size: 3,
            modified: time,
            changed: time,
            inode: 7,
            device: 9,
        }
    }

    #[test]
    fn cache_file_round_trips() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("cache");
        let collected_at = Timestamp {
            seconds: 1_000,
            nanoseconds: 0,
        };
        let cache = StatCache::load(file.clone());
        cache.save(collected_at, [("a/b.txt", stat(100), [1; 32])].into_iter());

        let loaded = StatCache::load(file);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded.lookup("a/b.txt", &stat(100)), Some([1; 32]));
        assert_eq!(loaded.lookup("a/b.txt", &stat(101)), None, "stale stat");
        assert_eq!(loaded.lookup("other", &stat(100)), None, "unknown path");
    }

    #[test]
    fn racy_entries_are_not_trusted() {
        let collected_at = Timestamp {
            seconds: 1_000,
            nanoseconds: 0,
        };
        let cases = [
            (990, false),
            (997, false),
            (998, true),
            (999, true),
            (1_000, true),
            (1_005, true),
        ];
        for (seconds, racy) in cases {
            let mut modified_only = stat(seconds);
            modified_only.changed = stat(0).changed;
            let mut changed_only = stat(seconds);
            changed_only.modified = stat(0).modified;
            assert_eq!(modified_only.is_racy(collected_at), racy, "mtime {seconds}");
            assert_eq!(changed_only.is_racy(collected_at), racy, "ctime {seconds}");
        }
    }

    #[test]
    fn racy_entry_lookup_misses() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("cache");
        let collected_at = Timestamp {
            seconds: 1_000,
            nanoseconds: 0,
        };
        StatCache::load(file.clone())
            .save(collected_at, [("young", stat(999), [2; 32])].into_iter());

        assert_eq!(StatCache::load(file).lookup("young", &stat(999)), None);
    }

    #[test]
    fn damaged_cache_file_is_ignored() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("cache");
        let collected_at = Timestamp {
            seconds: 1_000,
            nanoseconds: 0,
        };
        StatCache::load(file.clone()).save(collected_at, [("a", stat(100), [3; 32])].into_iter());
        let good = fs::read(&file).unwrap();

        let mut flipped = good.clone();
        flipped[20] ^= 1;
        let damaged: [(&str, Vec<u8>); 4] = [
            ("flipped bit", flipped),
            ("truncated", good[..good.len() - 10].to_vec()),
            ("empty", Vec::new()),
            ("text", b"not a stat cache".to_vec()),
        ];
        for (name, bytes) in damaged {
            fs::write(&file, bytes).unwrap();
            let loaded = StatCache::load(file.clone());
            assert_eq!(loaded.len(), 0, "{name}");
            assert_eq!(loaded.lookup("a", &stat(100)), None, "{name}");
        }
    }

    #[test]
    fn old_cache_files_are_removed_on_save() {
        let folder = tempfile::tempdir().unwrap();
        let old = folder.path().join("old");
        let recent = folder.path().join("recent");
        fs::write(&old, "x").unwrap();
        fs::write(&recent, "x").unwrap();
        let long_ago = SystemTime::now() - UNUSED_LIFETIME - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();

        StatCache::load(folder.path().join("new")).save(Timestamp::now(), std::iter::empty());

        assert!(!old.exists(), "an unused cache file was kept");
        assert!(recent.exists(), "a recent cache file was removed");
        assert!(
            folder.path().join("new").exists(),
            "the saved cache is missing"
        );
    }
}
