//! Local files that a script adds to an image: collected after ignore rules,
//! hashed for cache keys and packed into deterministic tar archives.
//!
//! Ignore rules are gitignore patterns relative to the added folder. The
//! lines of a `.dockerignore` in that folder are anchored at the folder, as
//! Docker anchors them at the root of its build context.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use sha2::{Digest, Sha256};

use crate::cache_key::KeyEncoder;

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
    digest: OnceLock<Result<String, String>>,
}

#[derive(Debug)]
pub struct ContextEntry {
    /// Path relative to the context root, with `/` separators.
    pub relative: String,
    pub absolute: PathBuf,
    pub mode: u32,
    pub kind: EntryKind,
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
            digest: OnceLock::new(),
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
        let metadata = fs::metadata(&source).map_err(|error| missing_or_io(&source, error))?;
        if !metadata.is_dir() {
            return Err(ContextError::ExpectedDir { path: source });
        }
        let matcher = ignore_matcher(&source, patterns, ignore_file)?;

        let mut entries = vec![entry_for(&source, String::new(), &metadata)?];
        let mut excludes_any = false;
        walk(&source, &source, &matcher, &mut entries, &mut excludes_any)?;
        entries.sort_by(|a, b| a.relative.cmp(&b.relative));

        Ok(LocalContext {
            source,
            written_as: written_as.to_string(),
            kind: ContextKind::Dir,
            entries,
            excludes_any,
            digest: OnceLock::new(),
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
            digest: OnceLock::new(),
        }
    }

    pub fn display_source(&self) -> &str {
        &self.written_as
    }

    /// Returns the hex SHA-256 over every entry's relative path, mode, kind,
    /// symlink target and content. Modification times never enter it. The
    /// digest is computed once, on first use.
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
        let mut encoder = KeyEncoder::new("local-context");
        for entry in &self.entries {
            encoder.text("path", &entry.relative);
            encoder.field("mode", &entry.mode.to_be_bytes());
            match &entry.kind {
                EntryKind::File => {
                    encoder.text("kind", "file");
                    encoder.text("sha256", &sha256_file(&entry.absolute)?);
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
        Ok(encoder.finish())
    }

    /// Returns each entry's relative path with what the cache key reads of
    /// it: a file's content digest, or a folder or symlink with its mode.
    /// Unreadable files give the error text, as [`LocalContext::digest`]
    /// does.
    pub fn entry_digests(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|entry| {
                let digest = match &entry.kind {
                    EntryKind::File => {
                        sha256_file(&entry.absolute).unwrap_or_else(|error| error.to_string())
                    }
                    EntryKind::Dir => "folder".to_string(),
                    EntryKind::Symlink { target } => format!("symlink to {}", target.display()),
                };
                (
                    entry.relative.clone(),
                    format!("{digest} mode {:o}", entry.mode),
                )
            })
            .collect()
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
            append_entry(archive, entry, &name)?;
        }
        Ok(())
    }
}

fn append_entry<W: io::Write>(
    archive: &mut tar::Builder<W>,
    entry: &ContextEntry,
    name: &str,
) -> Result<(), ContextError> {
    let io_error = |source| ContextError::Io {
        path: entry.absolute.clone(),
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
            let file = fs::File::open(&entry.absolute).map_err(io_error)?;
            // NOTE: a file that changes between planning and packing is packed
            // as it is now, so its layer can differ from the digest in its key.
            let size = file.metadata().map_err(io_error)?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            archive
                .append_data(&mut header, name, file.take(size))
                .map_err(io_error)
        }
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

fn walk(
    root: &Path,
    dir: &Path,
    matcher: &Gitignore,
    entries: &mut Vec<ContextEntry>,
    excludes_any: &mut bool,
) -> Result<(), ContextError> {
    let listing = fs::read_dir(dir).map_err(|source| ContextError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    for item in listing {
        let item = item.map_err(|source| ContextError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = item.path();
        let metadata = fs::symlink_metadata(&path).map_err(|source| ContextError::Io {
            path: path.clone(),
            source,
        })?;

        if matcher.matched(&path, metadata.is_dir()).is_ignore() {
            *excludes_any = true;
            continue;
        }

        let relative = path
            .strip_prefix(root)
            .expect("walked paths are under the root")
            .to_string_lossy()
            .into_owned();
        entries.push(entry_for(&path, relative, &metadata)?);

        if metadata.is_dir() {
            walk(root, &path, matcher, entries, excludes_any)?;
        }
    }
    Ok(())
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

    Ok(ContextEntry {
        relative,
        absolute: path.to_path_buf(),
        mode: metadata.permissions().mode() & 0o7777,
        kind,
    })
}

fn sha256_file(path: &Path) -> Result<String, ContextError> {
    let io_error = |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(io_error)?;
    Ok(hex::encode(hasher.finalize()))
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
