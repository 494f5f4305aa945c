//! Local files a step reads while it runs but that must not enter its
//! layer, such as a requirements file and the files it includes. They are
//! copied into a temporary folder and bind-mounted read-only at
//! [`STAGED_FILES_PATH`], under the tmpfs at `/run` that keeps mount points
//! out of the layer.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::cache_key::KeyEncoder;

/// Path of the staged files in a step's container.
pub const STAGED_FILES_PATH: &str = "/run/imgscript-files";

#[derive(Debug)]
pub struct StagedFiles {
    /// The folder every file lies under.
    pub root: PathBuf,
    /// Paths relative to `root`, sorted.
    pub files: Vec<String>,
    /// The SHA-256 of each file's content, in the order of `files`.
    content_digests: Vec<String>,
    /// SHA-256 over the relative paths and contents.
    pub digest: String,
}

impl StagedFiles {
    /// Collects `paths` (absolute) under their nearest common folder.
    pub fn new(paths: &BTreeSet<PathBuf>) -> std::io::Result<Self> {
        let root = common_folder(paths);
        let mut files = Vec::new();
        let mut content_digests = Vec::new();
        let mut encoder = KeyEncoder::new("staged-files");
        for path in paths {
            let relative = path
                .strip_prefix(&root)
                .expect("the common folder contains every path")
                .to_string_lossy()
                .into_owned();
            let content = std::fs::read(path)?;
            encoder.text("path", &relative).field("content", &content);
            files.push(relative);
            content_digests.push(hex::encode(sha2::Sha256::digest(&content)));
        }
        Ok(StagedFiles {
            root,
            files,
            content_digests,
            digest: encoder.finish(),
        })
    }

    /// Returns each file's relative path with the SHA-256 of its content.
    pub fn file_digests(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.files
            .iter()
            .cloned()
            .zip(self.content_digests.iter().cloned())
    }

    /// Returns where `path` (absolute) appears in the container.
    pub fn container_path(&self, path: &Path) -> String {
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        format!("{STAGED_FILES_PATH}/{}", relative.display())
    }

    /// Copies the files into a new temporary folder that any user in the
    /// container can read, and returns it; it is deleted when dropped.
    pub fn stage(&self) -> std::io::Result<tempfile::TempDir> {
        let folder = tempfile::Builder::new()
            .prefix("imgscript-files-")
            .tempdir()?;
        std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o755))?;
        for relative in &self.files {
            let target = folder.path().join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(self.root.join(relative), &target)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
        }
        Ok(folder)
    }
}

fn common_folder(paths: &BTreeSet<PathBuf>) -> PathBuf {
    let mut folders = paths
        .iter()
        .map(|path| path.parent().unwrap_or(Path::new("/")).to_path_buf());
    let Some(mut common) = folders.next() else {
        return PathBuf::from("/");
    };
    for folder in folders {
        while !folder.starts_with(&common) {
            if !common.pop() {
                break;
            }
        }
    }
    common
}

/// Finds a requirements file and every file it includes with `-r` or
/// constrains with `-c`, following includes relative to the including file.
pub fn requirements_with_includes(path: &Path) -> Result<BTreeSet<PathBuf>, String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(file) = pending.pop() {
        if !found.insert(file.clone()) {
            continue;
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|error| format!("failed to read {}: {error}", file.display()))?;
        let folder = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        for reference in included_files(&text) {
            let included = normalize(&folder.join(reference));
            if !included.is_file() {
                return Err(format!(
                    "{} includes {}, which does not exist",
                    file.display(),
                    included.display()
                ));
            }
            pending.push(included);
        }
    }
    Ok(found)
}

/// Returns the paths named by `-r`, `--requirement`, `-c` and
/// `--constraint` lines; URLs are left out.
fn included_files(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or_default().trim();
        let reference = ["--requirement", "--constraint", "-r", "-c"]
            .iter()
            .find_map(|flag| {
                let rest = line.strip_prefix(flag)?;
                let rest = rest.strip_prefix('=').unwrap_or(rest);
                let rest = rest.trim();
                (!rest.is_empty()).then_some(rest)
            });
        if let Some(reference) = reference.filter(|reference| !reference.contains("://")) {
            paths.push(reference.to_string());
        }
    }
    paths
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other),
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_found() {
        let text = "six==1.16.0\n-r base.txt\n--requirement=../shared/common.txt\n-c constraints.txt  # pins\n-r https://example.invalid/r.txt\n--index-url http://127.0.0.1/simple\n";
        assert_eq!(
            included_files(text),
            ["base.txt", "../shared/common.txt", "constraints.txt"]
        );
    }

    #[test]
    fn requirements_staged_under_common_folder() {
        let folder = tempfile::tempdir().unwrap();
        let root = folder.path();
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::create_dir_all(root.join("shared")).unwrap();
        std::fs::write(
            root.join("app/requirements.txt"),
            "-r ../shared/base.txt\nsix\n",
        )
        .unwrap();
        std::fs::write(root.join("shared/base.txt"), "-c pins.txt\n").unwrap();
        std::fs::write(root.join("shared/pins.txt"), "six==1.16.0\n").unwrap();

        let files = requirements_with_includes(&root.join("app/requirements.txt")).unwrap();
        let staged = StagedFiles::new(&files).unwrap();
        assert_eq!(
            staged.files,
            ["app/requirements.txt", "shared/base.txt", "shared/pins.txt"]
        );
        assert_eq!(
            staged.container_path(&root.join("app/requirements.txt")),
            "/run/imgscript-files/app/requirements.txt"
        );

        let copy = staged.stage().unwrap();
        assert_eq!(
            std::fs::read_to_string(copy.path().join("shared/pins.txt")).unwrap(),
            "six==1.16.0\n"
        );
    }

    #[test]
    fn missing_include_is_an_error() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("r.txt"), "-r absent.txt\n").unwrap();
        let error = requirements_with_includes(&folder.path().join("r.txt")).unwrap_err();
        assert!(
            error.contains("absent.txt, which does not exist"),
            "{error}"
        );
    }
}
