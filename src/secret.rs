//! Secrets: named sets of environment variables that a build step can read
//! while it runs and that never enter a layer, the image config, a cache key or a
//! log.
//!
//! A step's secrets reach its container as a file of `export` lines,
//! bind-mounted read-only under a tmpfs at `/run` and sourced by the step
//! driver. They never go into the container's Env, Cmd or Labels, because
//! a committed image keeps those in its `container_config`.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::render::quote;

/// Path of a step's secret file in its container.
pub const SECRETS_PATH: &str = "/run/imgscript-secrets.env";

/// A named set of variables. Its `Debug` output shows the variable names,
/// never the values.
#[derive(Clone)]
pub struct Secret {
    /// The name that enters cache keys, such as `hf-token` or
    /// `env:HF_TOKEN`.
    pub name: String,
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Secret")
            .field("name", &self.name)
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name:?} not found: {} does not exist", path.display())]
    NotFound { name: String, path: PathBuf },

    #[error("secret file {} is readable or writable by other users (mode {mode:o})", path.display())]
    TooOpen { path: PathBuf, mode: u32 },

    #[error("failed to read secret file {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },

    #[error(".env file {} does not exist", path.display())]
    DotenvNotFound { path: PathBuf },

    #[error("invalid line {line} in {}: expected NAME=value", path.display())]
    InvalidLine { path: PathBuf, line: usize },

    #[error("environment variable {name} is not set, so secret_from_env cannot read it")]
    MissingVariable { name: String },

    #[error("invalid secret variable name {name:?}: use letters, digits and '_', not starting with a digit")]
    InvalidName { name: String },

    #[error("no folder for named secrets: set XDG_CONFIG_HOME or HOME")]
    NoConfigFolder,
}

impl Secret {
    /// Reads the named secret from `<config>/imgscript/secrets/<name>.env`,
    /// where `<config>` is XDG_CONFIG_HOME or `~/.config`. The file must not
    /// be readable by other users.
    pub fn named(name: &str) -> Result<Self, SecretError> {
        let folder = config_folder().ok_or(SecretError::NoConfigFolder)?;
        let path = folder
            .join("imgscript")
            .join("secrets")
            .join(format!("{name}.env"));
        if !path.exists() {
            return Err(SecretError::NotFound {
                name: name.to_string(),
                path,
            });
        }
        let mode = std::fs::metadata(&path)
            .map_err(|error| unreadable(&path, error))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(SecretError::TooOpen {
                path,
                mode: mode & 0o777,
            });
        }
        Ok(Secret {
            name: name.to_string(),
            vars: read_dotenv(&path)?,
        })
    }

    /// Reads a `.env` file of `NAME=value` lines.
    pub fn from_dotenv(path: &Path, written_as: &str) -> Result<Self, SecretError> {
        Ok(Secret {
            name: format!("dotenv:{written_as}"),
            vars: read_dotenv(path)?,
        })
    }

    /// Takes the given variables from imgscript's own environment.
    pub fn from_env(names: &[String]) -> Result<Self, SecretError> {
        let mut vars = BTreeMap::new();
        for name in names {
            check_name(name)?;
            let value = std::env::var(name)
                .map_err(|_| SecretError::MissingVariable { name: name.clone() })?;
            vars.insert(name.clone(), value);
        }
        Ok(Secret {
            name: format!("env:{}", names.join(",")),
            vars,
        })
    }

    pub fn from_map(vars: BTreeMap<String, String>) -> Result<Self, SecretError> {
        for name in vars.keys() {
            check_name(name)?;
        }
        let names: Vec<&str> = vars.keys().map(String::as_str).collect();
        Ok(Secret {
            name: format!("map:{}", names.join(",")),
            vars,
        })
    }

    /// Returns the value of one variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// Start of the name of every folder that contains a secret file. The full
/// name is `imgscript-secrets-<pid>-<random>`, where `<pid>` is the process
/// id of the run that made it. Runs before the pid was added made
/// `imgscript-secrets-<random>`.
const FOLDER_PREFIX: &str = "imgscript-secrets-";

/// Age after which a folder of the name without a pid is removed, because
/// its name does not show whether the run that made it still runs.
const UNNAMED_FOLDER_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A secret file on this machine, deleted when dropped. A run killed with
/// SIGKILL cannot drop it, so the next run's [`write_secret_file`] removes
/// it.
pub struct SecretFile {
    /// A folder only this user can enter, so other users of this machine
    /// cannot read the file, while the container's user can.
    folder: tempfile::TempDir,
}

impl SecretFile {
    pub fn path(&self) -> PathBuf {
        self.folder.path().join("secrets.env")
    }
}

/// Writes the variables of `secrets` as `export` lines, to be mounted at
/// [`SECRETS_PATH`], in a new folder of the temporary directory. Before
/// writing, it removes the secret folders that killed runs of this user
/// left there.
pub fn write_secret_file(secrets: &[Secret]) -> std::io::Result<SecretFile> {
    write_secret_file_in(&std::env::temp_dir(), secrets)
}

fn write_secret_file_in(temp_dir: &Path, secrets: &[Secret]) -> std::io::Result<SecretFile> {
    let folder = tempfile::Builder::new()
        .prefix(&format!("{FOLDER_PREFIX}{}-", std::process::id()))
        .tempdir_in(temp_dir)?;
    std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o700))?;
    // The new folder's owner is the user this process creates files as,
    // which std cannot return directly.
    let owner = std::fs::metadata(folder.path())?.uid();
    let file = SecretFile { folder };
    remove_abandoned_folders(temp_dir, owner);

    let mut text = String::new();
    for secret in secrets {
        for (name, value) in &secret.vars {
            text.push_str(&format!("export {name}={}\n", quote(value)));
        }
    }
    std::fs::write(file.path(), text)?;
    // Not 0600: the file is bind-mounted with its host owner and mode, so a
    // step that runs as a non-root user of the image (`user("nobody")`, or
    // micromamba's `mambauser`) could not read it. The 0700 folder keeps
    // other users of this machine out.
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))?;
    Ok(file)
}

/// Removes the secret folders in `temp_dir` that belong to user `owner`
/// and whose run has ended: those whose pid has no `/proc/<pid>`, and those
/// without a pid that are older than [`UNNAMED_FOLDER_MAX_AGE`]. Failures
/// are logged and never returned, so a leftover folder cannot fail a build.
///
/// NOTE: a run in another pid namespace that shares this temporary
/// directory (a container with the host's /tmp mounted) looks dead here,
/// so its secret file would be removed while its step runs.
fn remove_abandoned_folders(temp_dir: &Path, owner: u32) {
    let entries = match std::fs::read_dir(temp_dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::debug!(
                "not removing old secret folders: failed to list {}: {error}",
                temp_dir.display()
            );
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_abandoned(&entry, owner) {
            remove_secret_folder(&path);
        }
    }
}

/// Checks whether `entry` is a secret folder of user `owner` whose run has
/// ended. Symbolic links and other users' folders never are.
fn is_abandoned(entry: &std::fs::DirEntry, owner: u32) -> bool {
    let name = entry.file_name();
    let Some(rest) = name
        .to_str()
        .and_then(|name| name.strip_prefix(FOLDER_PREFIX))
    else {
        return false;
    };
    // DirEntry::metadata does not follow a symbolic link.
    let Ok(metadata) = entry.metadata() else {
        return false;
    };
    if !metadata.is_dir() || metadata.uid() != owner {
        return false;
    }

    match rest.split_once('-') {
        Some((pid, _)) => match pid.parse::<u32>() {
            Ok(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => false,
        },
        // tempfile's random suffix has no '-', so this is the name without
        // a pid.
        None => metadata
            .modified()
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > UNNAMED_FOLDER_MAX_AGE),
    }
}

fn remove_secret_folder(path: &Path) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => tracing::debug!(
            "removed the secret folder of an ended run: {}",
            path.display()
        ),
        // Another run removed it first.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(
            "failed to remove {}, a secret folder left by an ended run: {error}. Remove it by hand.",
            path.display()
        ),
    }
}

fn config_folder() -> Option<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    from_env("XDG_CONFIG_HOME").or_else(|| from_env("HOME").map(|home| home.join(".config")))
}

fn check_name(name: &str) -> Result<(), SecretError> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(SecretError::InvalidName {
            name: name.to_string(),
        })
    }
}

fn unreadable(path: &Path, error: std::io::Error) -> SecretError {
    SecretError::Unreadable {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// Parses `NAME=value` lines. Blank lines and `#` comments are skipped, an
/// `export ` prefix is allowed, and a value in matching single or double
/// quotes loses them.
fn read_dotenv(path: &Path) -> Result<BTreeMap<String, String>, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => SecretError::DotenvNotFound {
            path: path.to_path_buf(),
        },
        _ => unreadable(path, error),
    })?;

    let mut vars = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let invalid = || SecretError::InvalidLine {
            path: path.to_path_buf(),
            line: number + 1,
        };
        let (name, value) = line.split_once('=').ok_or_else(invalid)?;
        let name = name.trim();
        check_name(name).map_err(|_| invalid())?;
        vars.insert(name.to_string(), unquote(value.trim()).to_string());
    }
    Ok(vars)
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines_parse() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("a.env");
        std::fs::write(&path, "# token\nexport A=1\nB = 'two words'\nC=\"x=y\"\n\n").unwrap();
        let vars = read_dotenv(&path).unwrap();
        assert_eq!(vars.get("A").map(String::as_str), Some("1"));
        assert_eq!(vars.get("B").map(String::as_str), Some("two words"));
        assert_eq!(vars.get("C").map(String::as_str), Some("x=y"));
    }

    #[test]
    fn dotenv_rejects_lines_without_value() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("a.env");
        std::fs::write(&path, "A=1\nnot a pair\n").unwrap();
        let error = read_dotenv(&path).unwrap_err();
        assert!(
            matches!(error, SecretError::InvalidLine { line: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn debug_output_hides_values() {
        let secret = Secret::from_map(BTreeMap::from([(
            "TOKEN".to_string(),
            "s3cr3t-value".to_string(),
        )]))
        .unwrap();
        let shown = format!("{secret:?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
    }

    /// Returns the pid of a child process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        pid
    }

    /// Creates `temp_dir/name` with a file in it and returns its path.
    fn secret_folder(temp_dir: &Path, name: &str) -> PathBuf {
        let folder = temp_dir.join(name);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("secrets.env"), "export TOKEN=1\n").unwrap();
        folder
    }

    fn owner_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().uid()
    }

    #[test]
    fn sweep_removes_folder_of_dead_pid() {
        let temp_dir = tempfile::tempdir().unwrap();
        let folder = secret_folder(
            temp_dir.path(),
            &format!("imgscript-secrets-{}-aB3dE9", dead_pid()),
        );
        remove_abandoned_folders(temp_dir.path(), owner_of(temp_dir.path()));
        assert!(!folder.exists());
    }

    #[test]
    fn sweep_keeps_folder_of_live_pid() {
        let temp_dir = tempfile::tempdir().unwrap();
        let folder = secret_folder(
            temp_dir.path(),
            &format!("imgscript-secrets-{}-aB3dE9", std::process::id()),
        );
        remove_abandoned_folders(temp_dir.path(), owner_of(temp_dir.path()));
        assert!(folder.join("secrets.env").exists());
    }

    #[test]
    fn sweep_keeps_folder_of_other_user() {
        let temp_dir = tempfile::tempdir().unwrap();
        let folder = secret_folder(
            temp_dir.path(),
            &format!("imgscript-secrets-{}-aB3dE9", dead_pid()),
        );
        let other_user = owner_of(&folder) + 1;
        remove_abandoned_folders(temp_dir.path(), other_user);
        assert!(folder.join("secrets.env").exists());
    }

    #[test]
    fn sweep_keeps_symbolic_link_target() {
        let temp_dir = tempfile::tempdir().unwrap();
        let target = secret_folder(temp_dir.path(), "kept");
        let link = temp_dir
            .path()
            .join(format!("imgscript-secrets-{}-aB3dE9", dead_pid()));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        remove_abandoned_folders(temp_dir.path(), owner_of(temp_dir.path()));
        assert!(target.join("secrets.env").exists());
        assert!(link.symlink_metadata().is_ok());
    }

    #[test]
    fn sweep_removes_folder_without_pid_after_a_day() {
        let temp_dir = tempfile::tempdir().unwrap();
        let old = secret_folder(temp_dir.path(), "imgscript-secrets-Xy12Zq");
        let recent = secret_folder(temp_dir.path(), "imgscript-secrets-Ab34Cd");
        let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 60 * 60);
        std::fs::File::open(&old)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        remove_abandoned_folders(temp_dir.path(), owner_of(temp_dir.path()));
        assert!(!old.exists());
        assert!(recent.join("secrets.env").exists());
    }

    #[test]
    fn sweep_keeps_unrelated_entries() {
        let temp_dir = tempfile::tempdir().unwrap();
        let dead_pid = dead_pid();
        let unrelated = secret_folder(
            temp_dir.path(),
            &format!("imgscript-files-{dead_pid}-aB3dE9"),
        );
        let not_a_pid = secret_folder(temp_dir.path(), "imgscript-secrets-x1-aB3dE9");
        let file = temp_dir
            .path()
            .join(format!("imgscript-secrets-{dead_pid}-file"));
        std::fs::write(&file, "").unwrap();
        remove_abandoned_folders(temp_dir.path(), owner_of(temp_dir.path()));
        assert!(unrelated.exists());
        assert!(not_a_pid.exists());
        assert!(file.exists());
    }

    #[test]
    fn secret_file_folder_carries_pid_and_sweeps() {
        let temp_dir = tempfile::tempdir().unwrap();
        let abandoned = secret_folder(
            temp_dir.path(),
            &format!("imgscript-secrets-{}-aB3dE9", dead_pid()),
        );
        let secret =
            Secret::from_map(BTreeMap::from([("TOKEN".to_string(), "1".to_string())])).unwrap();
        let file = write_secret_file_in(temp_dir.path(), &[secret]).unwrap();

        assert!(!abandoned.exists());
        let folder = file.path().parent().unwrap().to_path_buf();
        let name = folder.file_name().unwrap().to_str().unwrap().to_string();
        let expected_prefix = format!("imgscript-secrets-{}-", std::process::id());
        assert!(name.starts_with(&expected_prefix), "{name}");
        let folder_mode = std::fs::metadata(&folder).unwrap().permissions().mode();
        assert_eq!(folder_mode & 0o777, 0o700);
        let file_mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(file_mode & 0o777, 0o644);

        drop(file);
        assert!(!folder.exists());
    }

    #[test]
    fn secret_file_exports_quoted_values() {
        let secret = Secret::from_map(BTreeMap::from([(
            "TOKEN".to_string(),
            "it's $HOME".to_string(),
        )]))
        .unwrap();
        let file = write_secret_file(&[secret]).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                ". {} && printf %s \"$TOKEN\"",
                file.path().display()
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "it's $HOME",
            "{text}"
        );
    }
}
