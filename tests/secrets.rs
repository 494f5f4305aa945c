//! Secrets reach the step that asks for them and nothing else: not the
//! image, its history, its config, the run's output or the cache key.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Returns the hex SHA-256 of `text`, computed by the host's sha256sum.
fn sha256_hex(text: &str) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg("printf %s \"$1\" | sha256sum | cut -c1-64")
        .arg("sh")
        .arg(text)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Writes a named secret file under `config` with the given mode.
fn write_named_secret(config: &Path, name: &str, content: &str, mode: u32) {
    let folder = config.join("imgscript/secrets");
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join(format!("{name}.env"));
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn secrets_reach_step_and_nothing_else() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let values = [
        format!("named-{nonce}"),
        format!("dotenv-{nonce}"),
        format!("env-{nonce}"),
        format!("map-{nonce}"),
    ];
    write_named_secret(
        workspace.path(),
        "token",
        &format!("NAMED={}\n", values[0]),
        0o600,
    );
    workspace.write("app.env", &format!("DOTENV='{}'\n", values[1]));
    let script = workspace.write(
        "build.img",
        &format!(
            r#"let secrets = [
    secret("token"),
    secret_from_dotenv("./app.env"),
    secret_from_env(["IMGSCRIPT_TEST_SECRET"]),
    secret_from_map(#{{ MAPPED: "{}" }}),
];
debian_slim("3.11")
    .env(#{{ NONCE: "{nonce}" }})
    .run_commands(["printf %s \"$NAMED$DOTENV$IMGSCRIPT_TEST_SECRET$MAPPED\" | sha256sum | cut -c1-64 > /secrets.sha"], #{{ secrets: secrets }})
    .env(#{{ AFTER: "1" }})"#,
            values[3]
        ),
    );
    let build_with = |env_value: &str| {
        run(imgscript()
            .args(["run", "--progress", "json"])
            .arg(&script)
            .env("XDG_CONFIG_HOME", workspace.path())
            .env("IMGSCRIPT_CACHE_DIR", workspace.path().join("cache"))
            .env("IMGSCRIPT_TEST_SECRET", env_value)
            .env("RUST_LOG", "trace"))
    };
    let result = build_with(&values[2]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    let id = image_id(&result);

    // The step saw every secret.
    let seen = docker(&["run", "--rm", &id, "cat", "/secrets.sha"]);
    assert_eq!(seen, sha256_hex(&values.concat()));

    // No trace of any value in the image, its history, its config, the
    // output, the logs of every crate or imgscript's cache folder.
    let cached_files = files_under(&workspace.path().join("cache"));
    assert!(!cached_files.is_empty(), "the run wrote its cache folder");
    let saved = Command::new("docker")
        .args(["save", &id])
        .output()
        .unwrap()
        .stdout;
    let history = docker(&["history", "--no-trunc", &id]);
    let config = docker(&["image", "inspect", &id]);
    for value in &values {
        let in_save = saved
            .windows(value.len())
            .any(|window| window == value.as_bytes());
        assert!(!in_save, "{value} is in docker save");
        assert!(
            !history.contains(value.as_str()),
            "{value} is in the history"
        );
        assert!(
            !config.contains(value.as_str()),
            "{value} is in the image config"
        );
        assert!(
            !result.stdout.contains(value.as_str()),
            "{value} is in stdout"
        );
        assert!(
            !result.stderr.contains(value.as_str()),
            "{value} is in the log"
        );
        for (path, content) in &cached_files {
            let found = content
                .windows(value.len())
                .any(|window| window == value.as_bytes());
            assert!(!found, "{value} is in {}", path.display());
        }
    }

    // The mount point left nothing in /run.
    let run_dir = docker(&["run", "--rm", &id, "ls", "-A", "/run"]);
    assert_eq!(
        run_dir,
        docker(&["run", "--rm", BASE_IMAGE, "ls", "-A", "/run"])
    );

    // Only names enter the cache key: a new value rebuilds nothing.
    let again = build_with("another value");
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(image_id(&again), id);
    assert!(!again.stderr.contains("step_started"), "{}", again.stderr);
}

#[test]
fn named_secret_errors_name_the_path() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        "debian_slim(\"3.11\").run_commands([\"true\"], #{ secrets: [secret(\"token\")] })\n",
    );
    let check = || {
        run(imgscript()
            .arg("check")
            .arg(&script)
            .env("XDG_CONFIG_HOME", workspace.path())
            .env("NO_COLOR", "1"))
    };
    let expected_path = workspace
        .path()
        .join("imgscript/secrets/token.env")
        .display()
        .to_string();

    let missing = check();
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .contains(&format!("{expected_path} does not exist")),
        "{}",
        missing.stderr
    );

    write_named_secret(workspace.path(), "token", "TOKEN=1\n", 0o644);
    let open = check();
    assert_eq!(open.code, 1, "{}", open.stderr);
    assert!(
        open.stderr.contains("readable or writable by other users"),
        "{}",
        open.stderr
    );
    assert!(
        open.stderr.contains(&format!("chmod 600 {expected_path}")),
        "{}",
        open.stderr
    );

    std::fs::set_permissions(
        workspace.path().join("imgscript/secrets/token.env"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let fixed = check();
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
}

#[test]
fn missing_env_secret_is_an_error() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        "debian_slim(\"3.11\").run_commands([\"true\"], #{ secrets: secret_from_env(\"IMGSCRIPT_TEST_UNSET\") })\n",
    );
    let result = run(imgscript()
        .arg("check")
        .arg(&script)
        .env_remove("IMGSCRIPT_TEST_UNSET")
        .env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("environment variable IMGSCRIPT_TEST_UNSET is not set"),
        "{}",
        result.stderr
    );
}

#[test]
fn secrets_option_rejects_strings() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        "debian_slim(\"3.11\").run_commands([\"true\"], #{ secrets: [\"TOKEN\"] })\n",
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("option `secrets` of run_commands must be a secret or an array of secrets"),
        "{}",
        result.stderr
    );
}

#[test]
fn shell_sets_image_config() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11").env(#{{ N: "{}" }}).shell(["/bin/bash", "-c"])"#,
            nonce()
        ),
    );
    let result = build(&script, &[]);
    assert_eq!(
        inspect(&image_id(&result), "{{json .Config.Shell}}"),
        r#"["/bin/bash","-c"]"#
    );
}

/// Removes, when dropped, the containers created since it was made. A run
/// killed with SIGKILL cannot remove its own.
struct NewContainerCleanup {
    before: Vec<String>,
}

impl Drop for NewContainerCleanup {
    fn drop(&mut self) {
        for container in all_containers() {
            if !self.before.contains(&container) {
                let _ = Command::new("docker")
                    .args(["rm", "-f", &container])
                    .output();
            }
        }
    }
}

/// Lists the secret folders in `temp_dir`.
fn secret_folders(temp_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(temp_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("imgscript-secrets-")
        })
        .collect()
}

#[test]
fn next_run_removes_killed_run_secrets() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let temp_dir = workspace.path().join("tmp");
    std::fs::create_dir(&temp_dir).unwrap();
    let nonce = nonce();
    let slow = workspace.write(
        "slow.img",
        &format!(
            r#"debian_slim("3.11").run_commands(["echo {nonce}", "sleep 30"], #{{ secrets: secret_from_map(#{{ TOKEN: "killed" }}) }})"#
        ),
    );
    let quick = workspace.write(
        "quick.img",
        &format!(
            r#"debian_slim("3.11").run_commands(["test -n \"$TOKEN\" && echo {nonce}"], #{{ secrets: secret_from_map(#{{ TOKEN: "next" }}) }})"#
        ),
    );
    let containers = NewContainerCleanup {
        before: all_containers(),
    };

    let mut killed = imgscript()
        .arg("run")
        .arg(&slow)
        .env("TMPDIR", &temp_dir)
        .env("IMGSCRIPT_CACHE_DIR", workspace.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while all_containers().len() == containers.before.len() {
        assert!(Instant::now() < deadline, "no build container appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed_pid = killed.id();
    killed.kill().unwrap();
    killed.wait().unwrap();

    // The killed run could not remove its folder, and its name carries the
    // run's pid.
    let left = secret_folders(&temp_dir);
    assert_eq!(left.len(), 1, "{left:?}");
    let left_name = left[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        left_name.starts_with(&format!("imgscript-secrets-{killed_pid}-")),
        "{left_name}"
    );
    assert!(left[0].join("secrets.env").exists());

    let next = run(imgscript()
        .arg("run")
        .arg(&quick)
        .env("TMPDIR", &temp_dir)
        .env("IMGSCRIPT_CACHE_DIR", workspace.path().join("cache"))
        .env("RUST_LOG", "imgscript=debug"));
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(
        next.stderr
            .contains("removed the secret folder of an ended run"),
        "{}",
        next.stderr
    );

    // The next run removed the killed run's folder, then its own.
    assert!(!left[0].exists());
    assert_eq!(secret_folders(&temp_dir), Vec::<PathBuf>::new());
    drop(containers);
}
