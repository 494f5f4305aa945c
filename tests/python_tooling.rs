//! Installs from requirements files and pyproject.toml, with wheels the
//! tests make and bake into the image, so no package index is needed.

mod common;

use common::*;

/// Writes wheels for `probe_one` and `probe_two` under `wheels/`.
fn wheels(workspace: &Workspace) {
    make_wheel(&workspace.path().join("wheels"), "probe_one", "1.0");
    make_wheel(&workspace.path().join("wheels"), "probe_two", "2.0");
}

const OFFLINE: &str = r#"#{ find_links: "/wheels", extra_options: "--no-index" }"#;

#[test]
fn requirements_with_includes_install() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    wheels(&workspace);
    workspace.write("app/requirements.txt", "-r ../shared/base.txt\nprobe-two\n");
    workspace.write("shared/base.txt", "-c pins.txt\nprobe-one\n");
    workspace.write("shared/pins.txt", "probe-one==1.0\n");
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11")
    .env(#{{ NONCE: "{}" }})
    .add_local_dir("./wheels", "/wheels", #{{ copy: true }})
    .pip_install_from_requirements("./app/requirements.txt", {OFFLINE})"#,
            nonce()
        ),
    );

    let first = build(&script, &[]);
    let id = image_id(&first);
    let versions = docker(&[
        "run",
        "--rm",
        &id,
        "python",
        "-c",
        "import probe_one, probe_two; print(probe_one.VERSION, probe_two.VERSION)",
    ]);
    assert_eq!(versions, "1.0 2.0");
    let run_dir = docker(&["run", "--rm", &id, "ls", "-A", "/run"]);
    assert_eq!(
        run_dir,
        docker(&["run", "--rm", BASE_IMAGE, "ls", "-A", "/run"])
    );

    assert!(!build(&script, &[]).stderr.contains("(building"));

    // A change in an included file rebuilds the step.
    workspace.write("shared/pins.txt", "probe-one==1.0\n# pinned\n");
    let rebuilt = build(&script, &[]);
    assert!(
        rebuilt
            .stderr
            .contains("pip_install_from_requirements ./app/requirements.txt (building"),
        "{}",
        rebuilt.stderr
    );
}

#[test]
fn pyproject_dependencies_install() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    wheels(&workspace);
    workspace.write(
        "pyproject.toml",
        "[project]\nname = \"app\"\nversion = \"0.1\"\ndependencies = [\"probe-one==1.0\"]\n\n[project.optional-dependencies]\nextra = [\"probe-two\"]\n",
    );
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11")
    .env(#{{ NONCE: "{}" }})
    .add_local_dir("./wheels", "/wheels", #{{ copy: true }})
    .pip_install_from_pyproject("./pyproject.toml", #{{ optional_dependencies: ["extra"], find_links: "/wheels", extra_options: "--no-index" }})"#,
            nonce()
        ),
    );
    let result = build(&script, &[]);
    let versions = docker(&[
        "run",
        "--rm",
        &image_id(&result),
        "python",
        "-c",
        "import probe_one, probe_two; print(probe_one.VERSION, probe_two.VERSION)",
    ]);
    assert_eq!(versions, "1.0 2.0");
}

#[test]
fn pyproject_unknown_group_lists_groups() {
    let workspace = Workspace::new();
    workspace.write("pyproject.toml", "[project]\nname = \"app\"\ndependencies = [\"six\"]\n[project.optional-dependencies]\ndev = [\"pytest\"]\n");
    let script = workspace.write(
        "build.img",
        r#"debian_slim("3.11").pip_install_from_pyproject("./pyproject.toml", #{ optional_dependencies: ["test"] })"#,
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("has no optional dependency group \"test\" (it has: dev)"),
        "{}",
        result.stderr
    );
}

#[test]
fn requirements_missing_include_is_error() {
    let workspace = Workspace::new();
    workspace.write("requirements.txt", "-r other.txt\n");
    let script = workspace.write(
        "build.img",
        r#"debian_slim("3.11").pip_install_from_requirements("requirements.txt")"#,
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("other.txt, which does not exist"),
        "{}",
        result.stderr
    );
}

/// Copies the uv wheel that `.ci/run` downloads (into
/// IMGSCRIPT_TEST_WHEELS, default /var/cache/imgscript-wheels) into
/// `folder`, since the tests reach no package index.
fn copy_uv_wheel(folder: &std::path::Path) {
    let cache = std::env::var("IMGSCRIPT_TEST_WHEELS")
        .unwrap_or_else(|_| "/var/cache/imgscript-wheels".to_string());
    let wheel = std::fs::read_dir(&cache)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .find(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("uv-")))
        })
        .unwrap_or_else(|| panic!("no uv wheel in {cache}; run .ci/run once, or `python3 -m pip download --no-deps --only-binary=:all: uv -d {cache}`"));
    std::fs::copy(&wheel, folder.join(wheel.file_name().unwrap())).unwrap();
}

#[test]
fn uv_sync_installs_project_dependencies() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    wheels(&workspace);
    copy_uv_wheel(&workspace.path().join("wheels"));
    workspace.write(
        "project/pyproject.toml",
        "[project]\nname = \"app\"\nversion = \"0.1\"\nrequires-python = \">=3.11\"\ndependencies = [\"probe-one==1.0\"]\n\n[project.optional-dependencies]\nextra = [\"probe-two\"]\n",
    );
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11")
    .env(#{{ NONCE: "{}" }})
    .add_local_dir("./wheels", "/wheels", #{{ copy: true }})
    .run_commands(["pip install --quiet --no-cache-dir --root-user-action=ignore /wheels/uv-*.whl"])
    .uv_sync(#{{ uv_project_dir: "./project", extras: ["extra"], extra_options: "--find-links /wheels --no-index" }})"#,
            nonce()
        ),
    );
    let result = build(&script, &[]);
    let id = image_id(&result);
    let versions = docker(&[
        "run",
        "--rm",
        &id,
        "python",
        "-c",
        "import probe_one, probe_two; print(probe_one.VERSION, probe_two.VERSION)",
    ]);
    assert_eq!(versions, "1.0 2.0");
    // The project copy and the staged files stay out of the image.
    let leftovers = docker(&[
        "run",
        "--rm",
        &id,
        "sh",
        "-c",
        "ls -d /tmp/imgscript-uv-project /run/imgscript-files 2>&1 || true",
    ]);
    assert!(
        leftovers.matches("No such file").count() == 2,
        "{leftovers}"
    );

    // Editing pyproject.toml rebuilds the step.
    workspace.write(
        "project/pyproject.toml",
        "[project]\nname = \"app\"\nversion = \"0.2\"\nrequires-python = \">=3.11\"\ndependencies = [\"probe-one==1.0\"]\n\n[project.optional-dependencies]\nextra = [\"probe-two\"]\n",
    );
    let rebuilt = build(&script, &[]);
    assert!(
        rebuilt.stderr.contains("uv_sync ./project (building"),
        "{}",
        rebuilt.stderr
    );
}

#[test]
fn uv_sync_needs_pyproject() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        r#"debian_slim("3.11").uv_sync(#{ uv_project_dir: "./absent" })"#,
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("has no pyproject.toml"),
        "{}",
        result.stderr
    );
}
