//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// The base image every Docker test builds on; `tests/base-image/make.sh`
/// makes it locally.
pub const BASE_IMAGE: &str = "python:3.11-slim-bookworm";

static DOCKER_LOCK: Mutex<()> = Mutex::new(());

/// Serializes the Docker tests of one test binary, so that the daemon events
/// counted during one test include no other test's containers.
pub fn docker_test() -> MutexGuard<'static, ()> {
    let guard = DOCKER_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let inspect = Command::new("docker")
        .args(["image", "inspect", BASE_IMAGE])
        .output();
    match inspect {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "these tests need a running Docker Engine with the image {BASE_IMAGE}; run tests/base-image/make.sh first.\ndocker said: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => panic!("these tests need the docker CLI and a running Docker Engine: {error}"),
    }
    guard
}

/// Returns a text unique to this test run, so its layers are never cached
/// from an earlier run.
pub fn nonce() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}-{}", std::process::id(), now.as_nanos())
}

/// A folder holding a script and its files.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }
}

pub fn imgscript() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imgscript"))
}

/// Output of one command, with text fields for assertions.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

pub fn run(command: &mut Command) -> Run {
    Run::from(command.output().expect("the command starts"))
}

/// Runs `imgscript run SCRIPT ARGS…` and requires success.
pub fn build(script: &Path, args: &[&str]) -> Run {
    let result = run(imgscript().arg("run").arg(script).args(args));
    assert_eq!(result.code, 0, "imgscript run failed:\n{}", result.stderr);
    result
}

/// Returns the first image id printed by `imgscript run`.
pub fn image_id(run: &Run) -> String {
    run.stdout
        .split_whitespace()
        .find(|word| word.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no image id in {:?}", run.stdout))
        .to_string()
}

pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

pub fn inspect(image: &str, format: &str) -> String {
    docker(&["image", "inspect", image, "--format", format])
}

/// Seconds since the epoch with a fraction, as `docker events` takes them.
pub fn daemon_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Lists the daemon's container and image events between two times, one
/// `type action` line each.
pub fn events_between(since: &str, until: &str) -> Vec<String> {
    let output = docker(&[
        "events",
        "--since",
        since,
        "--until",
        until,
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    output
        .lines()
        .map(str::to_string)
        .filter(|line| line.starts_with("container") || line.starts_with("image"))
        .collect()
}

/// Containers that exist now, stopped ones included.
pub fn all_containers() -> Vec<String> {
    docker(&["ps", "-aq", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Writes a minimal pure-Python wheel of package `name` (an importable
/// name) at `version` into `folder`, with the host's python3, so that tests
/// can install packages without a package index. The module defines
/// `VERSION`.
pub fn make_wheel(folder: &Path, name: &str, version: &str) -> PathBuf {
    std::fs::create_dir_all(folder).unwrap();
    let program = r#"
import sys, zipfile
folder, name, version = sys.argv[1:4]
dist = name.replace("_", "-")
info = f"{name}-{version}.dist-info"
path = f"{folder}/{name}-{version}-py3-none-any.whl"
files = {
    f"{name}/__init__.py": f"VERSION = {version!r}\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: imgscript-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
with zipfile.ZipFile(path, "w") as wheel:
    for entry, text in files.items():
        wheel.writestr(entry, text)
    wheel.writestr(f"{info}/RECORD", "".join(f"{entry},,\n" for entry in files) + f"{info}/RECORD,,\n")
print(path)
"#;
    let output = Command::new("python3")
        .args(["-c", program])
        .arg(folder)
        .arg(name)
        .arg(version)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "making a wheel failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Reads every file under `folder`, with its path.
pub fn files_under(folder: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        } else if let Ok(content) = std::fs::read(&path) {
            files.push((path, content));
        }
    }
    files
}
