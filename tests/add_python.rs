//! The `add_python` option, with Python builds served from a mirror on
//! 127.0.0.1 that the test fills. GitHub, where the real builds live, is
//! out of reach. So the archive is the base image's Debian Python 3.11,
//! laid out as python-build-standalone lays out its archives.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

const RELEASE: &str = "20241016";

/// A static file server, stopped when dropped.
struct Mirror {
    child: Child,
    url: String,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the archive under the names of the 3.11 and 3.12 builds, with a
/// SHA256SUMS that lists both, and serves the folder with Python's own
/// HTTP server.
fn start_mirror(folder: &Path) -> Mirror {
    let release = folder.join(RELEASE);
    std::fs::create_dir_all(&release).unwrap();
    let archive = Command::new("docker")
        .args([
            "run",
            "--rm",
            "python:3.11-slim-bookworm",
            "sh",
            "-c",
            "mkdir -p /tmp/build/python/bin /tmp/build/python/lib \
             && cp /usr/bin/python3.11 /tmp/build/python/bin/ \
             && ln -s python3.11 /tmp/build/python/bin/python3 \
             && cp -a /usr/lib/python3.11 /tmp/build/python/lib/ \
             && tar -C /tmp/build -czf - python",
        ])
        .output()
        .unwrap();
    assert!(
        archive.status.success(),
        "{}",
        String::from_utf8_lossy(&archive.stderr)
    );

    let mut sums = String::new();
    for version in ["3.11.10", "3.12.7"] {
        let name =
            format!("cpython-{version}+{RELEASE}-x86_64-unknown-linux-gnu-install_only.tar.gz");
        std::fs::write(release.join(&name), &archive.stdout).unwrap();
        let digest = Command::new("sha256sum")
            .arg(release.join(&name))
            .output()
            .unwrap();
        let digest = String::from_utf8_lossy(&digest.stdout);
        sums.push_str(&format!(
            "{}  {name}\n",
            digest.split_whitespace().next().unwrap()
        ));
    }
    std::fs::write(release.join("SHA256SUMS"), sums).unwrap();

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(folder)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the mirror did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Mirror {
        child,
        url: format!("http://{address}"),
    }
}

/// Runs `script` with the test mirror and an empty download cache.
fn run_with_mirror(script: &Path, mirror: &Mirror, cache: &Path, args: &[&str]) -> Run {
    run(imgscript()
        .arg("run")
        .arg(script)
        .args(args)
        .env("IMGSCRIPT_PYTHON_MIRROR", &mirror.url)
        .env("XDG_CACHE_HOME", cache)
        .env("NO_COLOR", "1"))
}

#[test]
fn add_python_into_image_without_python() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let mirror = start_mirror(&workspace.path().join("mirror"));
    let cache = tempfile::tempdir().unwrap();

    let no_python = format!("imgscript-test/no-python:{}", nonce());
    let strip = workspace.write(
        "strip.img",
        &format!(
            r#"debian_slim("3.11")
    .run_commands(["rm -rf /usr/bin/python* /usr/lib/python3* /usr/local/bin/python* && ! command -v python3"])
    .tag("{no_python}")"#
        ),
    );
    let stripped = build(&strip, &[]);
    assert_eq!(stripped.code, 0, "{}", stripped.stderr);

    let script = workspace.write(
        "build.img",
        &format!(r#"from_registry("{no_python}", #{{ add_python: "3.11" }}).run_commands(["python -c 'import json, ssl'"])"#),
    );
    let result = run_with_mirror(
        &script,
        &mirror,
        cache.path(),
        &[
            "--",
            "python",
            "-c",
            "import sys; print(sys.prefix, sys.version_info[:2])",
        ],
    );
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(result.stdout.trim(), "/usr/local (3, 11)");
    assert!(
        result.stderr.contains("using Python 3.11.10"),
        "{}",
        result.stderr
    );
    assert!(
        cache
            .path()
            .join("imgscript/python/cpython-3.11.10+20241016-x86_64-unknown-linux-gnu-install_only.tar.gz")
            .is_file(),
        "the archive is kept in the download cache"
    );
    docker(&["rmi", &no_python]);
}

#[test]
fn add_python_refuses_an_image_with_another_python() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let mirror = start_mirror(&workspace.path().join("mirror"));
    let cache = tempfile::tempdir().unwrap();
    let script = workspace.write(
        "build.img",
        r#"from_registry("python:3.11-slim-bookworm", #{ add_python: "3.12" })"#,
    );
    let result = run_with_mirror(&script, &mirror, cache.path(), &[]);
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("add_python 3.12: the image already has Python 3.11 at /usr/bin/python3"),
        "{}",
        result.stderr
    );
}

#[test]
fn add_python_checks_version_and_download() {
    let workspace = Workspace::new();
    let unknown = workspace.write(
        "unknown.img",
        r#"from_registry("python:3.11-slim-bookworm", #{ add_python: "3.8" })"#,
    );
    let result = run(imgscript().arg("check").arg(&unknown).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("add_python has no build of Python \"3.8\""),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("3.9, 3.10, 3.11, 3.12, 3.13"),
        "{}",
        result.stderr
    );

    // A mirror that lacks the archive is an error naming what is missing.
    let _docker = docker_test();
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join(RELEASE)).unwrap();
    std::fs::write(empty.path().join(RELEASE).join("SHA256SUMS"), "").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(empty.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mirror = Mirror {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let script = workspace.write(
        "build.img",
        &format!(
            r#"from_registry("python:3.11-slim-bookworm", #{{ add_python: "3.12" }}).env(#{{ NONCE: "{}" }})"#,
            nonce()
        ),
    );
    let cache = tempfile::tempdir().unwrap();
    let result = run_with_mirror(&script, &mirror, cache.path(), &[]);
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains(
            "cpython-3.12.7+20241016-x86_64-unknown-linux-gnu-install_only.tar.gz is not listed in"
        ),
        "{}",
        result.stderr
    );
}
