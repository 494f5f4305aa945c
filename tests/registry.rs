//! Pulls from a private registry: Debian's docker-registry, started by the
//! test on 127.0.0.1 with htpasswd authentication, and for ECR with a
//! token from moto's AWS emulator, also started on 127.0.0.1.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

const USER: &str = "imgscript";
const PASSWORD: &str = "registry-password";

/// A server process, stopped when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registry that lets in one user.
struct Registry {
    server: Server,
    user: &'static str,
    password: &'static str,
}

fn free_address() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// Starts `command` and waits until it listens on `address`.
fn start_server(command: &mut Command, address: String) -> Server {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("{command:?} does not start: {error}"));
    let server = Server { child, address };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(&server.address).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{command:?} did not start on {}",
            server.address
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server
}

fn start_registry(folder: &Path, user: &'static str, password: &'static str) -> Registry {
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("htpasswd (Debian's apache2-utils) runs");
    assert!(htpasswd.status.success());
    std::fs::write(folder.join("htpasswd"), &htpasswd.stdout).unwrap();

    let address = free_address();
    let config = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: {address}\nauth:\n  htpasswd:\n    realm: imgscript-test\n    path: {root}/htpasswd\n",
        root = folder.display()
    );
    std::fs::write(folder.join("config.yml"), config).unwrap();
    // Debian's docker-registry package.
    let mut command = Command::new("docker-registry");
    command.arg("serve").arg(folder.join("config.yml"));
    Registry {
        server: start_server(&mut command, address),
        user,
        password,
    }
}

/// Pushes a small image made for this test to the registry and removes it
/// from the local store, so a build must pull it. Returns its reference.
fn push_private_image(registry: &Registry, folder: &Path) -> String {
    let nonce = nonce();
    let reference = format!("{}/imgscript-test/private:{nonce}", registry.server.address);
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
        registry.user,
        "--password",
        registry.password,
        &registry.server.address,
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
    let registry = start_registry(workspace.path(), USER, PASSWORD);
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
        denied.stderr.contains(&format!(
            "could not be pulled from {}",
            registry.server.address
        )),
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
    let cache = workspace.path().join("cache");
    let pulled = run(imgscript()
        .args(["run", "--progress", "json"])
        .arg(&right)
        .env("DOCKER_CONFIG", empty_config.path())
        .env("IMGSCRIPT_CACHE_DIR", &cache)
        .env("RUST_LOG", "trace"));
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    assert!(
        pulled
            .stderr
            .contains(&format!("\"reference\":\"{reference}\"")),
        "{}",
        pulled.stderr
    );

    // The password is in no output, no log of any crate, no cache file and
    // no cache key: planning with another password gives the same keys.
    assert!(!pulled.stdout.contains(PASSWORD), "{}", pulled.stdout);
    assert!(!pulled.stderr.contains(PASSWORD), "{}", pulled.stderr);
    for (path, content) in files_under(&cache) {
        let found = content
            .windows(PASSWORD.len())
            .any(|window| window == PASSWORD.as_bytes());
        assert!(!found, "the password is in {}", path.display());
    }
    let keys = |script: &std::path::Path| {
        let plan = run(imgscript()
            .args(["plan", "--format", "json"])
            .arg(script)
            .env("DOCKER_CONFIG", empty_config.path()));
        assert_eq!(plan.code, 0, "{}", plan.stderr);
        let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["cache_key"].to_string())
            .collect::<Vec<_>>()
    };
    let other_password = workspace.write(
        "other.img",
        &std::fs::read_to_string(&right)
            .unwrap()
            .replace(PASSWORD, "another-password"),
    );
    assert_eq!(keys(&right), keys(&other_password));
    docker(&["rmi", &reference]);
}

#[test]
fn docker_config_auths_pull() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let registry = start_registry(workspace.path(), USER, PASSWORD);
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
            registry.server.address
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
    let registry = start_registry(workspace.path(), USER, PASSWORD);
    let reference = push_private_image(&registry, workspace.path());

    let bin = workspace.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-imgscripttest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = \"{}\" ] || exit 1\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            registry.server.address
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

/// The password moto's ECR hands out for its default account.
const ECR_PASSWORD: &str = "123456789012-auth-token";

/// Starts moto's AWS emulator, which `tests/setup.sh` installs into
/// IMGSCRIPT_TEST_TOOLS (default /var/cache/imgscript-tools).
fn start_moto() -> Server {
    let tools = std::env::var("IMGSCRIPT_TEST_TOOLS")
        .unwrap_or_else(|_| "/var/cache/imgscript-tools".to_string());
    let program = Path::new(&tools).join("moto/bin/moto_server");
    assert!(
        program.is_file(),
        "no {}; run tests/setup.sh",
        program.display()
    );
    let address = free_address();
    let port = address.rsplit(':').next().unwrap().to_string();
    let mut command = Command::new(program);
    command.args(["-H", "127.0.0.1", "-p", &port]);
    start_server(&mut command, address)
}

fn ecr_secret(region: &str) -> String {
    format!(
        "secret_from_map(#{{ AWS_ACCESS_KEY_ID: \"AKIAIMGSCRIPTTEST\", AWS_SECRET_ACCESS_KEY: \"test-secret-key\"{region} }})"
    )
}

#[test]
fn aws_ecr_token_pulls() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let registry = start_registry(workspace.path(), "AWS", ECR_PASSWORD);
    let reference = push_private_image(&registry, workspace.path());
    let moto = start_moto();
    let empty_config = tempfile::tempdir().unwrap();

    let script = workspace.write(
        "build.img",
        &format!(
            "from_aws_ecr(\"{reference}\", #{{ secret: {} }}).env(#{{ PULLED: \"1\" }})\n",
            ecr_secret(", AWS_REGION: \"eu-west-1\"")
        ),
    );
    let pulled = run(imgscript()
        .arg("run")
        .arg(&script)
        .env("DOCKER_CONFIG", empty_config.path())
        .env("AWS_ENDPOINT_URL", format!("http://{}", moto.address)));
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    assert!(
        pulled.stderr.contains(&format!("pulling {reference}")),
        "{}",
        pulled.stderr
    );
    for hidden in ["test-secret-key", ECR_PASSWORD] {
        assert!(!pulled.stderr.contains(hidden), "{}", pulled.stderr);
    }
    docker(&["rmi", &reference]);

    // With no ECR to ask, the error names the endpoint.
    let closed = free_address();
    let unreachable = run(imgscript()
        .arg("run")
        .arg(&script)
        .env("DOCKER_CONFIG", empty_config.path())
        .env("AWS_ENDPOINT_URL", format!("http://{closed}"))
        .env("NO_COLOR", "1"));
    assert_eq!(unreachable.code, 1, "{}", unreachable.stderr);
    assert!(
        unreachable
            .stderr
            .contains(&format!("ECR at http://{closed} did not answer")),
        "{}",
        unreachable.stderr
    );
}

#[test]
fn aws_ecr_needs_keys_and_region() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let run_script = |body: &str| {
        let script = workspace.write("build.img", body);
        run(imgscript()
            .arg("run")
            .arg(&script)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("NO_COLOR", "1"))
    };

    let no_region = run_script(&format!(
        "from_aws_ecr(\"127.0.0.1:9/app:{}\", #{{ secret: {} }})\n",
        nonce(),
        ecr_secret("")
    ));
    assert_eq!(no_region.code, 1, "{}", no_region.stderr);
    assert!(
        no_region.stderr.contains("no AWS region"),
        "{}",
        no_region.stderr
    );

    let no_keys = run_script(&format!(
        "from_aws_ecr(\"127.0.0.1:9/app:{}\", #{{ secret: secret_from_map(#{{ AWS_REGION: \"eu-west-1\" }}) }})\n",
        nonce()
    ));
    assert_eq!(no_keys.code, 1, "{}", no_keys.stderr);
    assert!(
        no_keys.stderr.contains("has no AWS_ACCESS_KEY_ID"),
        "{}",
        no_keys.stderr
    );

    let no_secret = run_script("from_aws_ecr(\"127.0.0.1:9/app:v1\")\n");
    assert_eq!(no_secret.code, 1, "{}", no_secret.stderr);
    assert!(
        no_secret.stderr.contains("takes one secret"),
        "{}",
        no_secret.stderr
    );
}
