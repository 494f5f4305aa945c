//! Local files that a script adds to an image: collected after ignore rules,
//! hashed for cache keys and packed into deterministic tar archives.
//!
//! Ignore rules are gitignore patterns relative to the added folder. The
//! lines of a `.dockerignore` in that folder are anchored at the folder, as
//! Docker anchors them at the root of its build context.
//!
//! Files are hashed on every CPU, and a stat cache skips the files whose
//! metadata has not changed since they were last hashed.

mod stat_cache;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tracing::debug;

use crate::cache_key::KeyEncoder;
use stat_cache::{FileStat, StatCache, Timestamp};

/// Modification time written into every archive entry (1980-01-01, the
/// earliest time a ZIP archive can hold, so Python wheels built from these
/// files still work). Real times would make layers differ between hosts.
pub const ARCHIVE_MTIME: u64 = 315_532_800;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("local path {} does not exist", path.display())]
    Missing { path: PathBuf },

    #[error("{} is a folder; use add_local_dir for folders", path.display())]
    ExpectedFile { path: PathBuf },

    #[error("{} is not a folder; use add_local_file for files", path.display())]
    ExpectedDir { path: PathBuf },

    #[error("invalid ignore pattern {pattern:?}: {reason}")]
    InvalidPattern { pattern: String, reason: String },

    #[error("failed to read {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    File,
    Dir,
}

/// A local file, or a folder's entries after ignore rules.
#[derive(Debug)]
pub struct LocalContext {
    /// Absolute path of the file or folder on this machine.
    pub source: PathBuf,
    /// The path as written in the script, for messages.
    pub written_as: String,
    pub kind: ContextKind,
    /// Entries sorted by relative path. A folder's own entry comes first
    /// with an empty relative path.
    pub entries: Vec<ContextEntry>,
    /// True when ignore rules left out at least one entry.
    pub excludes_any: bool,
    /// The time just before the first entry's metadata was read, which the
    /// stat cache's racy-entry rule compares file times with.
    collected_at: Timestamp,
    digest: OnceLock<Result<String, String>>,
    /// The SHA-256 of each entry that the digest read, `None` for folders
    /// and symlinks. Set only when the digest succeeded.
    file_sha256s: OnceLock<Vec<Option<[u8; 32]>>>,
}

#[derive(Debug)]
pub struct ContextEntry {
    /// Path relative to the context root, with `/` separators; empty for
    /// the root. [`LocalContext::path_of`] gives the path on this machine,
    /// which is not kept: a context may hold a million entries.
    pub relative: String,
    pub mode: u32,
    pub kind: EntryKind,
    /// Metadata of a regular file when it was collected, or `None` for
    /// folders and symlinks.
    stat: Option<FileStat>,
}

/// The SHA-256 of a regular file's content, and whether the file was read
/// to get it rather than found in the stat cache.
#[derive(Debug, Clone, Copy)]
struct FileContent {
    sha256: [u8; 32],
    read: bool,
}

#[derive(Debug)]
pub enum EntryKind {
    File,
    Dir,
    Symlink { target: PathBuf },
}

impl LocalContext {
    /// Collects a single file. A symlink is followed, so the file's content
    /// is what gets added, as Docker's `COPY` does for a named source.
    pub fn file(source: PathBuf, written_as: &str) -> Result<Self, ContextError> {
        let collected_at = Timestamp::now();
        let metadata = fs::metadata(&source).map_err(|error| missing_or_io(&source, error))?;
        if metadata.is_dir() {
            return Err(ContextError::ExpectedFile { path: source });
        }
        let entry = entry_for(&source, String::new(), &metadata)?;

        Ok(LocalContext {
            source,
            written_as: written_as.to_string(),
            kind: ContextKind::File,
            entries: vec![entry],
            excludes_any: false,
            collected_at,
            digest: OnceLock::new(),
            file_sha256s: OnceLock::new(),
        })
    }

    /// Collects a folder's entries, leaving out those that `patterns` or the
    /// folder's `.dockerignore` match.
    pub fn dir(
        source: PathBuf,
        written_as: &str,
        patterns: &[String],
    ) -> Result<Self, ContextError> {
        let dockerignore = source.join(".dockerignore");
        Self::dir_with_ignore_file(source, written_as, patterns, Some(&dockerignore))
    }

    /// Collects a folder's entries, leaving out those that `patterns` or the
    /// lines of `ignore_file` (a `.dockerignore`, where it exists) match.
    pub fn dir_with_ignore_file(
        source: PathBuf,
        written_as: &str,
        patterns: &[String],
        ignore_file: Option<&Path>,
    ) -> Result<Self, ContextError> {
        let collected_at = Timestamp::now();
        let metadata = fs::metadata(&source).map_err(|error| missing_or_io(&source, error))?;
        if !metadata.is_dir() {
            return Err(ContextError::ExpectedDir { path: source });
        }
        let matcher = ignore_matcher(&source, patterns, ignore_file)?;

        let Walked {
            mut entries,
            excludes_any,
        } = walk(&source, &source, &matcher)?;
        // Exactly one more: a push would double the capacity, and with
        // 100,000 entries that is megabytes held for nothing.
        entries.reserve_exact(1);
        entries.push(entry_for(&source, String::new(), &metadata)?);
        // Relative paths are unique, so an unstable sort gives one order.
        entries.par_sort_unstable_by(|a, b| a.relative.cmp(&b.relative));

        Ok(LocalContext {
            source,
            written_as: written_as.to_string(),
            kind: ContextKind::Dir,
            entries,
            excludes_any,
            collected_at,
            digest: OnceLock::new(),
            file_sha256s: OnceLock::new(),
        })
    }

    /// Returns a folder context with no entries, for builds that read no
    /// local files.
    pub fn empty() -> Self {
        LocalContext {
            source: PathBuf::new(),
            written_as: String::new(),
            kind: ContextKind::Dir,
            entries: Vec::new(),
            excludes_any: false,
            collected_at: Timestamp::now(),
            digest: OnceLock::new(),
            file_sha256s: OnceLock::new(),
        }
    }

    /// Returns the path of `entry` on this machine.
    pub fn path_of(&self, entry: &ContextEntry) -> PathBuf {
        if entry.relative.is_empty() {
            self.source.clone()
        } else {
            self.source.join(&entry.relative)
        }
    }

    pub fn display_source(&self) -> &str {
        &self.written_as
    }

    /// Returns the hex SHA-256 over every entry's relative path, mode, kind,
    /// symlink target and content. Modification times never enter it. The
    /// digest is computed once, on first use. Files whose metadata matches
    /// their stat cache entry are not read again.
    ///
    /// A file that cannot be read at this point (removed since it was
    /// collected, say) yields a digest of the error text. The build then
    /// fails when it packs the archive, with the path in the message.
    pub fn digest(&self) -> &str {
        let result = self
            .digest
            .get_or_init(|| self.compute_digest().map_err(|error| error.to_string()));
        match result {
            Ok(digest) | Err(digest) => digest,
        }
    }

    /// Checks whether [`LocalContext::digest`] has run, so that it returns
    /// at once.
    pub fn is_hashed(&self) -> bool {
        self.digest.get().is_some()
    }

    fn compute_digest(&self) -> Result<String, ContextError> {
        let has_files = self.entries.iter().any(|entry| entry.stat.is_some());
        if !has_files {
            let sha256s = vec![None; self.entries.len()];
            let digest = self.encode_digest(&sha256s);
            let _ = self.file_sha256s.set(sha256s);
            return Ok(digest);
        }
        let cache = StatCache::for_root(&self.source);
        let (digest, files_read) = self.digest_with_cache(&cache)?;
        debug!(
            context = %self.source.display(),
            entries = self.entries.len(),
            files_read,
            "hashed a local context"
        );
        Ok(digest)
    }

    /// Computes the digest, reading only the files that have no trusted
    /// entry in `cache`, and saves the cache when that changed it. Returns
    /// the digest and the number of files read.
    fn digest_with_cache(&self, cache: &StatCache) -> Result<(String, usize), ContextError> {
        let contents = self.hash_files(cache)?;
        let sha256s: Vec<_> = contents
            .iter()
            .map(|content| content.map(|content| content.sha256))
            .collect();
        let digest = self.encode_digest(&sha256s);
        let _ = self.file_sha256s.set(sha256s);

        let files = contents.iter().flatten().count();
        let files_read = contents
            .iter()
            .flatten()
            .filter(|content| content.read)
            .count();
        if files_read > 0 || files != cache.len() {
            let recorded = self
                .entries
                .iter()
                .zip(&contents)
                .filter_map(|(entry, content)| {
                    Some((
                        entry.relative.as_str(),
                        entry.stat?,
                        content.as_ref()?.sha256,
                    ))
                });
            cache.save(self.collected_at, recorded);
        }
        Ok((digest, files_read))
    }

    /// Returns each regular file's content digest, in entry order, and
    /// `None` for other entries. Files are read in parallel. The error is
    /// that of the first entry that failed.
    fn hash_files(&self, cache: &StatCache) -> Result<Vec<Option<FileContent>>, ContextError> {
        let results: Vec<_> = self
            .entries
            .par_iter()
            .map(|entry| {
                let Some(stat) = entry.stat else {
                    return Ok(None);
                };
                if let Some(sha256) = cache.lookup(&entry.relative, &stat) {
                    return Ok(Some(FileContent {
                        sha256,
                        read: false,
                    }));
                }
                let sha256 = sha256_file(&self.path_of(entry))?;
                Ok(Some(FileContent { sha256, read: true }))
            })
            .collect();
        results.into_iter().collect()
    }

    /// Encodes every entry, with `sha256s[i]` as the content of entry `i`
    /// when it is a regular file.
    fn encode_digest(&self, sha256s: &[Option<[u8; 32]>]) -> String {
        let mut encoder = KeyEncoder::new("local-context");
        for (entry, sha256) in self.entries.iter().zip(sha256s) {
            encoder.text("path", &entry.relative);
            encoder.field("mode", &entry.mode.to_be_bytes());
            match &entry.kind {
                EntryKind::File => {
                    encoder.text("kind", "file");
                    let sha256 = sha256.expect("every regular file is hashed");
                    encoder.text("sha256", &hex::encode(sha256));
                }
                EntryKind::Dir => {
                    encoder.text("kind", "dir");
                }
                EntryKind::Symlink { target } => {
                    encoder.text("kind", "symlink");
                    encoder.field("target", target.as_os_str().as_encoded_bytes());
                }
            }
        }
        encoder.finish()
    }

    /// Returns each entry's relative path with what the cache key reads of
    /// it: a file's content digest, or a folder or symlink with its mode.
    /// The file digests are those the key was computed from, so no file is
    /// read again. When the key's digest failed, each file is read here, and
    /// unreadable files give the error text, as [`LocalContext::digest`]
    /// does.
    pub fn entry_digests(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.digest();
        let key_sha256s = self.file_sha256s.get();

        self.entries.iter().enumerate().map(move |(index, entry)| {
            let digest = match &entry.kind {
                EntryKind::File => match key_sha256s.and_then(|sha256s| sha256s[index]) {
                    Some(sha256) => hex::encode(sha256),
                    None => sha256_file(&self.path_of(entry))
                        .map(hex::encode)
                        .unwrap_or_else(|error| error.to_string()),
                },
                EntryKind::Dir => "folder".to_string(),
                EntryKind::Symlink { target } => format!("symlink to {}", target.display()),
            };
            (
                entry.relative.clone(),
                format!("{digest} mode {:o}", entry.mode),
            )
        })
    }

    /// Appends every entry to `archive`, placed at `destination` (an
    /// absolute path in the image), owned by root and with a fixed
    /// modification time so the same files always give the same layer.
    pub fn append_to_archive<W: io::Write>(
        &self,
        archive: &mut tar::Builder<W>,
        destination: &str,
    ) -> Result<(), ContextError> {
        self.append_entries_to_archive(archive, destination, |_| true)
    }

    /// Appends the entries that `include` accepts, as
    /// [`LocalContext::append_to_archive`] does.
    pub fn append_entries_to_archive<W: io::Write>(
        &self,
        archive: &mut tar::Builder<W>,
        destination: &str,
        include: impl Fn(&ContextEntry) -> bool,
    ) -> Result<(), ContextError> {
        let root = destination.trim_start_matches('/').trim_end_matches('/');

        for entry in self.entries.iter().filter(|entry| include(entry)) {
            let name = match (root.is_empty(), entry.relative.is_empty()) {
                (_, true) => root.to_string(),
                (true, false) => entry.relative.clone(),
                (false, false) => format!("{root}/{}", entry.relative),
            };
            if name.is_empty() {
                // The root folder itself when the destination is `/`.
                continue;
            }
            append_entry(archive, entry, &self.path_of(entry), &name)?;
        }
        Ok(())
    }
}

fn append_entry<W: io::Write>(
    archive: &mut tar::Builder<W>,
    entry: &ContextEntry,
    path: &Path,
    name: &str,
) -> Result<(), ContextError> {
    let io_error = |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    };

    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(ARCHIVE_MTIME);

    match &entry.kind {
        EntryKind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            archive
                .append_data(&mut header, format!("{name}/"), io::empty())
                .map_err(io_error)
        }
        EntryKind::Symlink { target } => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            archive
                .append_link(&mut header, name, target)
                .map_err(io_error)
        }
        EntryKind::File => {
            let file = fs::File::open(path).map_err(io_error)?;
            // NOTE: a file that changes between planning and packing is packed
            // as it is now, so its layer can differ from the digest in its key.
            let size = file.metadata().map_err(io_error)?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            let content = ExactSize {
                file: file.take(size),
                remaining: size,
            };
            archive
                .append_data(&mut header, name, content)
                .map_err(io_error)
        }
    }
}

/// A file's content that fails when the file ends before `remaining`
/// bytes, because the tar header already gave that size. Without the check,
/// a file that shrinks while it is packed gives a corrupt archive.
struct ExactSize<R> {
    file: R,
    remaining: u64,
}

impl<R: Read> Read for ExactSize<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read(buffer)?;
        if read == 0 && self.remaining > 0 && !buffer.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file became {} bytes shorter while it was packed",
                    self.remaining
                ),
            ));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

fn ignore_matcher(
    root: &Path,
    patterns: &[String],
    ignore_file: Option<&Path>,
) -> Result<Gitignore, ContextError> {
    let mut builder = GitignoreBuilder::new(root);

    for pattern in patterns {
        add_pattern(&mut builder, pattern)?;
    }

    if let Some(dockerignore) = ignore_file.filter(|file| file.is_file()) {
        let text = fs::read_to_string(dockerignore).map_err(|source| ContextError::Io {
            path: dockerignore.to_path_buf(),
            source,
        })?;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            add_pattern(&mut builder, &anchor_dockerignore_line(line))?;
        }
    }

    builder
        .build()
        .map_err(|error| ContextError::InvalidPattern {
            pattern: patterns.join(", "),
            reason: error.to_string(),
        })
}

fn add_pattern(builder: &mut GitignoreBuilder, pattern: &str) -> Result<(), ContextError> {
    builder
        .add_line(None, pattern)
        .map(|_| ())
        .map_err(|error| ContextError::InvalidPattern {
            pattern: pattern.to_string(),
            reason: error.to_string(),
        })
}

/// Turns a `.dockerignore` line into a gitignore line with the same meaning:
/// Docker matches `foo` only at the context root, where gitignore would match
/// it at any depth.
fn anchor_dockerignore_line(line: &str) -> String {
    let (negation, pattern) = match line.strip_prefix('!') {
        Some(rest) => ("!", rest.trim()),
        None => ("", line),
    };
    let pattern = pattern.trim_start_matches("./");
    if pattern.starts_with('/') || pattern.starts_with("**") {
        format!("{negation}{pattern}")
    } else {
        format!("{negation}/{pattern}")
    }
}

/// Entries found under a folder, in no particular order.
#[derive(Default)]
struct Walked {
    entries: Vec<ContextEntry>,
    /// True when ignore rules left out at least one entry.
    excludes_any: bool,
}

impl Walked {
    fn absorb(&mut self, other: Walked) {
        self.entries.extend(other.entries);
        self.excludes_any |= other.excludes_any;
    }
}

/// Collects the entries under `dir` that `matcher` keeps. The items of a
/// folder, and the folders below it, are read in parallel.
fn walk(root: &Path, dir: &Path, matcher: &Gitignore) -> Result<Walked, ContextError> {
    let items = fs::read_dir(dir)
        .and_then(|listing| listing.collect::<io::Result<Vec<_>>>())
        .map_err(|source| ContextError::Io {
            path: dir.to_path_buf(),
            source,
        })?;

    items
        .par_iter()
        .map(|item| walk_item(root, item, matcher))
        .try_fold(Walked::default, |mut walked, item| {
            walked.absorb(item?);
            Ok(walked)
        })
        .try_reduce(Walked::default, |mut walked, other| {
            walked.absorb(other);
            Ok(walked)
        })
}

/// Collects one item of a folder listing, and everything below it when it
/// is a folder.
fn walk_item(
    root: &Path,
    item: &fs::DirEntry,
    matcher: &Gitignore,
) -> Result<Walked, ContextError> {
    let path = item.path();
    // Read relative to the open folder, and without following symlinks.
    let metadata = item.metadata().map_err(|source| ContextError::Io {
        path: path.clone(),
        source,
    })?;

    if matcher.matched(&path, metadata.is_dir()).is_ignore() {
        return Ok(Walked {
            entries: Vec::new(),
            excludes_any: true,
        });
    }

    let relative = path
        .strip_prefix(root)
        .expect("walked paths are under the root")
        .to_string_lossy()
        .into_owned();
    let entry = entry_for(&path, relative, &metadata)?;
    if !metadata.is_dir() {
        return Ok(Walked {
            entries: vec![entry],
            excludes_any: false,
        });
    }

    let mut below = walk(root, &path, matcher)?;
    below.entries.push(entry);
    Ok(below)
}

fn entry_for(
    path: &Path,
    relative: String,
    metadata: &fs::Metadata,
) -> Result<ContextEntry, ContextError> {
    let file_type = metadata.file_type();
    let kind = if file_type.is_symlink() {
        let target = fs::read_link(path).map_err(|source| ContextError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        EntryKind::Symlink { target }
    } else if file_type.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    let stat = matches!(kind, EntryKind::File).then(|| FileStat::of(metadata));

    Ok(ContextEntry {
        relative,
        mode: metadata.permissions().mode() & 0o7777,
        kind,
        stat,
    })
}

fn sha256_file(path: &Path) -> Result<[u8; 32], ContextError> {
    let io_error = |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(io_error)?;
    Ok(hasher.finalize().into())
}

fn missing_or_io(path: &Path, source: io::Error) -> ContextError {
    if source.kind() == io::ErrorKind::NotFound {
        ContextError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        ContextError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relative_paths(context: &LocalContext) -> Vec<&str> {
        context
            .entries
            .iter()
            .map(|entry| entry.relative.as_str())
            .collect()
    }

    #[test]
    fn dockerignore_lines_are_anchored() {
        let cases = [
            ("foo", "/foo"),
            ("/foo", "/foo"),
            ("**/foo", "**/foo"),
            ("!keep.txt", "!/keep.txt"),
            ("./build", "/build"),
        ];
        for (line, expected) in cases {
            assert_eq!(anchor_dockerignore_line(line), expected, "line {line:?}");
        }
    }

    #[test]
    fn ignore_patterns_and_dockerignore_apply() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("src/__pycache__")).unwrap();
        fs::create_dir_all(root.join("nested/secret")).unwrap();
        fs::write(root.join("src/main.py"), "print(1)").unwrap();
        fs::write(root.join("src/__pycache__/main.pyc"), "x").unwrap();
        fs::write(root.join("secret"), "root only").unwrap();
        fs::write(root.join("nested/secret/keep"), "kept").unwrap();
        fs::write(root.join(".dockerignore"), "secret\n").unwrap();

        let patterns = vec!["**/__pycache__".to_string()];
        let context = LocalContext::dir(root.to_path_buf(), ".", &patterns).unwrap();

        assert_eq!(
            relative_paths(&context),
            [
                "",
                ".dockerignore",
                "nested",
                "nested/secret",
                "nested/secret/keep",
                "src",
                "src/main.py"
            ]
        );
        assert!(context.excludes_any);
    }

    #[test]
    fn digest_ignores_mtime_but_not_content_or_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        fs::write(&file, "one").unwrap();
        let digest = |path: &Path| {
            LocalContext::dir(path.to_path_buf(), ".", &[])
                .unwrap()
                .digest()
                .to_string()
        };
        let first = digest(dir.path());

        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(digest(dir.path()), first, "mtime changed the digest");

        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        let after_mode = digest(dir.path());
        assert_ne!(after_mode, first, "mode did not change the digest");

        fs::write(&file, "two").unwrap();
        assert_ne!(
            digest(dir.path()),
            after_mode,
            "content did not change the digest"
        );
    }

    /// Collects `root` as if a minute later than now, so that no file is
    /// young enough for the stat cache's racy-entry rule.
    fn collect_a_minute_later(root: &Path) -> LocalContext {
        let mut context = LocalContext::dir(root.to_path_buf(), ".", &[]).unwrap();
        context.collected_at = context
            .collected_at
            .plus(std::time::Duration::from_secs(60));
        context
    }

    fn tree_of_three_files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("pkg")).unwrap();
        fs::write(dir.path().join("a.txt"), "one").unwrap();
        fs::write(dir.path().join("pkg/b.txt"), "two").unwrap();
        fs::write(dir.path().join("pkg/c.txt"), "three").unwrap();
        dir
    }

    #[test]
    fn stat_cache_skips_unchanged_files() {
        let tree = tree_of_three_files();
        let cache_folder = tempfile::tempdir().unwrap();
        let cache_file = cache_folder.path().join("stat");
        let uncached = LocalContext::dir(tree.path().to_path_buf(), ".", &[])
            .unwrap()
            .compute_digest()
            .unwrap();

        let cold = collect_a_minute_later(tree.path())
            .digest_with_cache(&StatCache::load(cache_file.clone()))
            .unwrap();
        let warm = collect_a_minute_later(tree.path())
            .digest_with_cache(&StatCache::load(cache_file))
            .unwrap();

        assert_eq!(cold.1, 3, "files read with an empty cache");
        assert_eq!(warm.1, 0, "files read with a warm cache");
        assert_eq!(cold.0, uncached, "the cache changed the digest");
        assert_eq!(warm.0, uncached, "the cache changed the digest");
    }

    #[test]
    fn stat_cache_catches_same_size_rewrites() {
        let tree = tree_of_three_files();
        let cache_folder = tempfile::tempdir().unwrap();
        let cache_file = cache_folder.path().join("stat");
        let digest = || {
            collect_a_minute_later(tree.path())
                .digest_with_cache(&StatCache::load(cache_file.clone()))
                .unwrap()
        };
        let restore_mtime = |path: &Path, mtime| {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        };
        let first = digest();
        // A coarse kernel clock ticks every few milliseconds, and the
        // change time must move past the one the cache recorded.
        std::thread::sleep(std::time::Duration::from_millis(50));

        // Rewritten in place: same inode and size, modification time put back.
        let a = tree.path().join("a.txt");
        let a_mtime = fs::metadata(&a).unwrap().modified().unwrap();
        fs::write(&a, "uno").unwrap();
        restore_mtime(&a, a_mtime);
        let in_place = digest();
        assert_eq!(in_place.1, 1, "files read after an in-place rewrite");
        assert_ne!(in_place.0, first.0, "an in-place rewrite kept the digest");

        // Replaced by another file: a new inode, same size and times.
        let b = tree.path().join("pkg/b.txt");
        let b_mtime = fs::metadata(&b).unwrap().modified().unwrap();
        let replacement = tree.path().join("pkg/b.new");
        fs::write(&replacement, "dos").unwrap();
        restore_mtime(&replacement, b_mtime);
        fs::rename(&replacement, &b).unwrap();
        let replaced = digest();
        assert_eq!(replaced.1, 1, "files read after a replacement");
        assert_ne!(replaced.0, in_place.0, "a replacement kept the digest");
    }

    #[test]
    fn stat_cache_rereads_racy_files() {
        let tree = tree_of_three_files();
        let cache_folder = tempfile::tempdir().unwrap();
        let cache_file = cache_folder.path().join("stat");
        // Collected in the same instant as the newest write, however slow
        // the machine running the test is.
        let digest = || {
            let mut context = LocalContext::dir(tree.path().to_path_buf(), ".", &[]).unwrap();
            context.collected_at = context
                .entries
                .iter()
                .filter_map(|entry| entry.stat)
                .map(|stat| stat.modified.max(stat.changed))
                .max()
                .unwrap();
            context
                .digest_with_cache(&StatCache::load(cache_file.clone()))
                .unwrap()
        };

        let first = digest();
        let second = digest();

        assert_eq!(second.1, 3, "racy files were trusted");
        assert_eq!(second.0, first.0);
    }

    #[test]
    fn damaged_stat_cache_costs_a_rehash() {
        let tree = tree_of_three_files();
        let cache_folder = tempfile::tempdir().unwrap();
        let cache_file = cache_folder.path().join("stat");
        let digest = || {
            collect_a_minute_later(tree.path())
                .digest_with_cache(&StatCache::load(cache_file.clone()))
                .unwrap()
        };
        let first = digest();
        let mut bytes = fs::read(&cache_file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&cache_file, bytes).unwrap();

        let after_damage = digest();

        assert_eq!(after_damage.1, 3, "files read after the cache was damaged");
        assert_eq!(after_damage.0, first.0);
        assert_eq!(digest().1, 0, "the cache was not rewritten");
    }

    #[test]
    fn shrunken_file_fails_packing() {
        let mut content = ExactSize {
            file: &b"abc"[..],
            remaining: 5,
        };
        let mut read = Vec::new();

        let error = content.read_to_end(&mut read).unwrap_err();

        assert_eq!(read, b"abc");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(error.to_string().contains("2 bytes shorter"), "{error}");
    }

    #[test]
    fn entry_digests_are_the_keys_inputs() {
        let tree = tree_of_three_files();
        let context = LocalContext::dir(tree.path().to_path_buf(), ".", &[]).unwrap();
        context.digest();
        // Changed after the key was computed: the listing still shows what
        // the key read, because it reads no file again.
        fs::write(tree.path().join("a.txt"), "changed").unwrap();

        let digests: std::collections::BTreeMap<_, _> = context.entry_digests().collect();

        let one = hex::encode(Sha256::digest(b"one"));
        assert_eq!(digests["a.txt"], format!("{one} mode 644"));
        assert_eq!(digests["pkg"], "folder mode 755");
        assert_eq!(digests.len(), 5, "{digests:?}");
    }

    fn archive_names(bytes: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                entry
                    .unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn archive_at_root_has_relative_names() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), "a").unwrap();
        let context = LocalContext::dir(dir.path().to_path_buf(), ".", &[]).unwrap();
        let mut archive = tar::Builder::new(Vec::new());
        context.append_to_archive(&mut archive, "/").unwrap();
        let bytes = archive.into_inner().unwrap();
        let names = archive_names(&bytes);
        assert_eq!(names, ["a.txt"]);
    }

    #[test]
    fn archive_entries_are_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("pkg")).unwrap();
        fs::write(dir.path().join("pkg/mod.py"), "x = 1").unwrap();
        let context = LocalContext::dir(dir.path().to_path_buf(), ".", &[]).unwrap();

        let pack = || {
            let mut archive = tar::Builder::new(Vec::new());
            context.append_to_archive(&mut archive, "/app/").unwrap();
            archive.into_inner().unwrap()
        };
        let bytes = pack();
        assert_eq!(bytes, pack());

        let names = archive_names(&bytes);
        assert_eq!(names, ["app/", "app/pkg/", "app/pkg/mod.py"]);
    }
}
