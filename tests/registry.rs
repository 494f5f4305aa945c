//! Pulls from a private registry: Debian's docker-registry, started by the
//! test on 127.0.0.1 with htpasswd authentication.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

const USER: &str = "imgscript";
const PASSWORD: &str = "registry-password";

/// A registry process, stopped when dropped.
struct Registry {
    child: Child,
    address: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(folder: &Path) -> Registry {
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .expect("htpasswd (Debian's apache2-utils) runs");
    assert!(htpasswd.status.success());
    std::fs::write(folder.join("htpasswd"), &htpasswd.stdout).unwrap();

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let config = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: {address}\nauth:\n  htpasswd:\n    realm: imgscript-test\n    path: {root}/htpasswd\n",
        root = folder.display()
    );
    std::fs::write(folder.join("config.yml"), config).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(folder.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (Debian's docker-registry package) runs");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the registry did not start on {address}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Registry { child, address }
}

/// Pushes a small image made for this test to the registry and removes it
/// from the local store, so a build must pull it. Returns its reference.
fn push_private_image(registry: &Registry, folder: &Path) -> String {
    let nonce = nonce();
    let reference = format!("{}/imgscript-test/private:{nonce}", registry.address);
    let rootfs = folder.join("rootfs.tar");
    let content = folder.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("private.txt"), &nonce).unwrap();
    let status = Command::new("tar")
        .arg("-C")
        .arg(&content)
        .arg("-cf")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    docker(&["import", &rootfs.display().to_string(), &reference]);

    let config = folder.join("push-config");
    std::fs::create_dir_all(&config).unwrap();
    let config = config.display().to_string();
    docker(&[
        "--config",
        &config,
        "login",
        "--username",
        USER,
        "--password",
        PASSWORD,
        &registry.address,
    ]);
    docker(&["--config", &config, "push", &reference]);
    docker(&["rmi", &reference]);
    reference
}

fn script_for(workspace: &Workspace, reference: &str, options: &str) -> std::path::PathBuf {
    workspace.write(
        "build.img",
        &format!("from_registry(\"{reference}\"{options}).env(#{{ PULLED: \"1\" }})\n"),
    )
}

#[test]
fn registry_secret_pulls_and_wrong_one_fails() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let registry = start_registry(workspace.path());
    let reference = push_private_image(&registry, workspace.path());
    let empty_config = tempfile::tempdir().unwrap();

    let wrong = script_for(
        &workspace,
        &reference,
        ", #{ secret: secret_from_map(#{ REGISTRY_USERNAME: \"imgscript\", REGISTRY_PASSWORD: \"wrong\" }) }",
    );
    let denied = run(imgscript()
        .arg("run")
        .arg(&wrong)
        .env("DOCKER_CONFIG", empty_config.path())
        .env("NO_COLOR", "1"));
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert!(
        denied.stderr.contains(&format!("base image {reference}")),
        "{}",
        denied.stderr
    );
    assert!(
        denied
            .stderr
            .contains(&format!("could not be pulled from {}", registry.address)),
        "{}",
        denied.stderr
    );
    assert!(
        denied.stderr.to_lowercase().contains("unauthorized"),
        "{}",
        denied.stderr
    );
    assert!(
        !denied.stderr.contains("wrong"),
        "the password is in the message: {}",
        denied.stderr
    );

    let right = script_for(
        &workspace,
        &reference,
        &format!(", #{{ secret: secret_from_map(#{{ REGISTRY_USERNAME: \"{USER}\", REGISTRY_PASSWORD: \"{PASSWORD}\" }}) }}"),
    );
    let pulled = run(imgscript()
        .arg("run")
        .arg(&right)
        .env("DOCKER_CONFIG", empty_config.path()));
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    assert!(
        pulled.stderr.contains(&format!("pulling {reference}")),
        "{}",
        pulled.stderr
    );
    docker(&["rmi", &reference]);
}

#[test]
fn docker_config_auths_pull() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let registry = start_registry(workspace.path());
    let reference = push_private_image(&registry, workspace.path());

    let config = tempfile::tempdir().unwrap();
    let auth = {
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s '{USER}:{PASSWORD}' | base64"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    std::fs::write(
        config.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.address
        ),
    )
    .unwrap();
    let script = script_for(&workspace, &reference, "");
    let pulled = run(imgscript()
        .arg("run")
        .arg(&script)
        .env("DOCKER_CONFIG", config.path()));
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    docker(&["rmi", &reference]);
}

#[test]
fn credential_helper_pulls() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let registry = start_registry(workspace.path());
    let reference = push_private_image(&registry, workspace.path());

    let bin = workspace.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-imgscripttest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = \"{}\" ] || exit 1\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            registry.address
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&helper).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        r#"{"credsStore": "imgscripttest"}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = script_for(&workspace, &reference, "");
    let pulled = run(imgscript()
        .arg("run")
        .arg(&script)
        .env("DOCKER_CONFIG", config.path())
        .env("PATH", path));
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    docker(&["rmi", &reference]);
}
