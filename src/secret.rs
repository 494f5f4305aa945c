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
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

/// A secret file on this machine, deleted when dropped.
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
/// [`SECRETS_PATH`].
pub fn write_secret_file(secrets: &[Secret]) -> std::io::Result<SecretFile> {
    let folder = tempfile::Builder::new()
        .prefix("imgscript-secrets-")
        .tempdir()?;
    std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o700))?;
    let file = SecretFile { folder };

    let mut text = String::new();
    for secret in secrets {
        for (name, value) in &secret.vars {
            text.push_str(&format!("export {name}={}\n", quote(value)));
        }
    }
    std::fs::write(file.path(), text)?;
    // The step may run as a non-root user of the image, who must read it.
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))?;
    Ok(file)
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
