//! Python builds for the `add_python` option: the relocatable CPython
//! archives of python-build-standalone (the builds `uv python install` uses),
//! pinned to one release so that a version always means the same files.
//!
//! An archive is downloaded on the host when a step first needs it, checked
//! against the release's `SHA256SUMS`, and kept in the user's cache folder.
//! Planning and cache hits never touch the network.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::info;

/// The python-build-standalone release every version is taken from.
const RELEASE: &str = "20241016";

/// The patch release of each minor version in [`RELEASE`].
const VERSIONS: &[(&str, &str)] = &[
    ("3.9", "3.9.20"),
    ("3.10", "3.10.15"),
    ("3.11", "3.11.10"),
    ("3.12", "3.12.7"),
    ("3.13", "3.13.0"),
];

/// The address releases are downloaded from, unless `IMGSCRIPT_PYTHON_MIRROR`
/// names a mirror with the same layout (`<mirror>/<release>/<file>`).
const DEFAULT_MIRROR: &str =
    "https://github.com/astral-sh/python-build-standalone/releases/download";

/// Path of the archive in the container of the step that unpacks it.
pub const ARCHIVE_PATH: &str = "/run/imgscript-python.tar.gz";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("failed to download {url}: {reason}")]
    Download { url: String, reason: String },

    #[error("{file} is not listed in {sums_url}")]
    NotListed { file: String, sums_url: String },

    #[error("{file} from {url} does not match its SHA-256 in SHA256SUMS (expected {expected}, got {actual})")]
    Mismatch {
        file: String,
        url: String,
        expected: String,
        actual: String,
    },

    #[error("failed to keep {} in the download cache: {reason}", path.display())]
    Cache { path: PathBuf, reason: String },
}

/// One CPython build: a minor version, resolved to its patch release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonBuild {
    /// The version as written in the script, such as `3.11`.
    pub version: String,
    /// The patch release, such as `3.11.10`.
    pub full_version: String,
}

impl PythonBuild {
    /// Returns the build for a minor version such as `3.11`, or `None` when
    /// the pinned release has none.
    pub fn for_version(version: &str) -> Option<Self> {
        VERSIONS
            .iter()
            .find(|(minor, _)| *minor == version)
            .map(|(minor, full)| PythonBuild {
                version: minor.to_string(),
                full_version: full.to_string(),
            })
    }

    /// Lists the minor versions that have builds.
    pub fn versions() -> impl Iterator<Item = &'static str> {
        VERSIONS.iter().map(|(minor, _)| *minor)
    }

    /// The archive's file name, which names the release, version and
    /// platform and so enters the cache key.
    pub fn file_name(&self) -> String {
        format!(
            "cpython-{}+{RELEASE}-x86_64-unknown-linux-gnu-install_only.tar.gz",
            self.full_version
        )
    }

    /// Returns the archive's path in the download cache, downloading and
    /// checking it first when it is not there. This blocks on the network.
    pub fn fetch(&self) -> Result<PathBuf, FetchError> {
        let folder = cache_folder();
        let path = folder.join(self.file_name());
        if path.is_file() {
            return Ok(path);
        }

        let mirror = mirror();
        let file = self.file_name();
        let sums_url = format!("{mirror}/{RELEASE}/SHA256SUMS");
        let sums = String::from_utf8_lossy(&download(&sums_url)?).into_owned();
        let expected = sums
            .lines()
            .filter_map(|line| line.split_once(char::is_whitespace))
            .find(|(_, name)| name.trim().trim_start_matches('*') == file)
            .map(|(sum, _)| sum.to_ascii_lowercase())
            .ok_or_else(|| FetchError::NotListed {
                file: file.clone(),
                sums_url: sums_url.clone(),
            })?;

        // `+` must be escaped in the path, as GitHub's own links do.
        let url = format!("{mirror}/{RELEASE}/{}", file.replace('+', "%2B"));
        info!(%url, "downloading Python {}", self.full_version);
        let archive = download(&url)?;
        let actual = hex::encode(Sha256::digest(&archive));
        if actual != expected {
            return Err(FetchError::Mismatch {
                file,
                url,
                expected,
                actual,
            });
        }
        keep(&path, &archive)?;
        Ok(path)
    }
}

/// Returns the `python` folder of imgscript's cache folder.
fn cache_folder() -> PathBuf {
    crate::cache_index::cache_folder()
        .unwrap_or_else(|| std::env::temp_dir().join("imgscript"))
        .join("python")
}

fn mirror() -> String {
    std::env::var("IMGSCRIPT_PYTHON_MIRROR")
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// Writes `bytes` beside `path` and renames it into place, so that an
/// interrupted download never leaves a partial archive under its name.
fn keep(path: &std::path::Path, bytes: &[u8]) -> Result<(), FetchError> {
    let failed = |error: std::io::Error| FetchError::Cache {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    let folder = path.parent().expect("the cache path has a folder");
    std::fs::create_dir_all(folder).map_err(failed)?;
    let mut partial = tempfile::NamedTempFile::new_in(folder).map_err(failed)?;
    std::io::Write::write_all(&mut partial, bytes).map_err(failed)?;
    partial.persist(path).map_err(|error| failed(error.error))?;
    Ok(())
}

fn download(url: &str) -> Result<Vec<u8>, FetchError> {
    let failed = |reason: String| FetchError::Download {
        url: url.to_string(),
        reason,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .proxy(ureq::Proxy::try_from_env())
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|error| failed(error.to_string()))?;
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .read_to_end(&mut bytes)
        .map_err(|error| failed(error.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_resolve_to_pinned_archives() {
        let build = PythonBuild::for_version("3.11").unwrap();
        assert_eq!(
            build.file_name(),
            "cpython-3.11.10+20241016-x86_64-unknown-linux-gnu-install_only.tar.gz"
        );
        assert!(PythonBuild::for_version("3.8").is_none());
        assert!(PythonBuild::for_version("3.11.10").is_none());
    }
}
