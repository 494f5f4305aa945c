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

/// Returns the folder `tests/setup.sh` downloads tools' wheels into
/// (IMGSCRIPT_TEST_WHEELS, default /var/cache/imgscript-wheels), since the
/// tests reach no package index.
fn wheel_cache() -> std::path::PathBuf {
    std::env::var("IMGSCRIPT_TEST_WHEELS")
        .unwrap_or_else(|_| "/var/cache/imgscript-wheels".to_string())
        .into()
}

/// Copies the uv wheel of the wheel cache into `folder`.
fn copy_uv_wheel(folder: &std::path::Path) {
    let cache = wheel_cache();
    let wheel = std::fs::read_dir(&cache)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .find(|path| {
                    path.file_name()
                        .is_some_and(|name| name.to_string_lossy().starts_with("uv-"))
                })
        })
        .unwrap_or_else(|| panic!("no uv wheel in {}; run tests/setup.sh", cache.display()));
    std::fs::copy(&wheel, folder.join(wheel.file_name().unwrap())).unwrap();
}

/// Copies poetry and its dependencies' wheels from the wheel cache into
/// `folder`.
fn copy_poetry_wheels(folder: &std::path::Path) {
    let cache = wheel_cache().join("poetry");
    let entries = std::fs::read_dir(&cache).unwrap_or_else(|_| {
        panic!(
            "no poetry wheels in {}; run tests/setup.sh",
            cache.display()
        )
    });
    std::fs::create_dir_all(folder).unwrap();
    for entry in entries {
        let path = entry.unwrap().path();
        std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
    }
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

const POETRY_PROJECT: &str = r#"[tool.poetry]
name = "app"
version = "0.1.0"
description = ""
authors = []
package-mode = false

[tool.poetry.dependencies]
python = "^3.11"
probe-one = { path = "/wheels/probe_one-1.0-py3-none-any.whl" }

[tool.poetry.group.dev]
optional = true

[tool.poetry.group.dev.dependencies]
probe-two = { path = "/wheels/probe_two-2.0-py3-none-any.whl" }
"#;

/// Locks the poetry project of `workspace` with poetry in a container, as
/// a user would on their machine, and writes `project/poetry.lock`.
fn poetry_lock(workspace: &Workspace) {
    // Poetry writes path dependencies relative to the project, and
    // poetry_install_from_file installs from a folder two levels below /,
    // so the project is locked at the same depth.
    let script = workspace.write(
        "lock.img",
        r#"debian_slim("3.11")
    .add_local_dir("./wheels", "/wheels", #{ copy: true })
    .run_commands(["pip install --quiet --no-cache-dir --no-index --find-links /wheels/poetry --root-user-action=ignore poetry"])
    .add_local_file("./project/pyproject.toml", "/lock/project/pyproject.toml", #{ copy: true })"#,
    );
    let locked = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "cd /lock/project && POETRY_VIRTUALENVS_CREATE=false poetry lock --no-interaction >&2 && cat poetry.lock",
    ]));
    assert_eq!(locked.code, 0, "{}", locked.stderr);
    assert!(locked.stdout.contains("probe-two"), "{}", locked.stdout);
    workspace.write("project/poetry.lock", &locked.stdout);
}

#[test]
fn poetry_install_from_file_installs_locked_groups() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    wheels(&workspace);
    copy_poetry_wheels(&workspace.path().join("wheels/poetry"));
    workspace.write("project/pyproject.toml", POETRY_PROJECT);
    poetry_lock(&workspace);

    // The image has no poetry, so the step fetches a temporary one, here
    // from the wheel folder through pip's own environment variables.
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11")
    .env(#{{ NONCE: "{}", PIP_NO_INDEX: "1", PIP_FIND_LINKS: "/wheels/poetry" }})
    .add_local_dir("./wheels", "/wheels", #{{ copy: true }})
    .poetry_install_from_file("./project/pyproject.toml", #{{ with_: ["dev"] }})"#,
            nonce()
        ),
    );
    let result = build(&script, &[]);
    let id = image_id(&result);
    let report = docker(&[
        "run",
        "--rm",
        &id,
        "python",
        "-c",
        "import importlib.util, probe_one, probe_two; print(probe_one.VERSION, probe_two.VERSION, importlib.util.find_spec('poetry'))",
    ]);
    assert_eq!(
        report, "1.0 2.0 None",
        "the packages are installed, poetry is not"
    );
    let leftovers = docker(&[
        "run",
        "--rm",
        &id,
        "sh",
        "-c",
        "ls -d /tmp/imgscript-poetry /tmp/imgscript-poetry-cache /tmp/imgscript-poetry-project /root/.cache/pypoetry 2>&1 || true",
    ]);
    assert_eq!(leftovers.matches("No such file").count(), 4, "{leftovers}");

    // Without `with_`, the optional dev group is left out.
    let main_only = workspace.write(
        "main.img",
        &format!(
            r#"debian_slim("3.11")
    .env(#{{ NONCE: "{}", PIP_NO_INDEX: "1", PIP_FIND_LINKS: "/wheels/poetry" }})
    .add_local_dir("./wheels", "/wheels", #{{ copy: true }})
    .poetry_install_from_file("./project/pyproject.toml")"#,
            nonce()
        ),
    );
    let id = image_id(&build(&main_only, &[]));
    let found = docker(&[
        "run",
        "--rm",
        &id,
        "python",
        "-c",
        "import importlib.util; print(bool(importlib.util.find_spec('probe_one')), bool(importlib.util.find_spec('probe_two')))",
    ]);
    assert_eq!(found, "True False");
}

#[test]
fn poetry_install_from_file_checks_lock_and_groups() {
    let workspace = Workspace::new();
    workspace.write("project/pyproject.toml", POETRY_PROJECT);
    let check = |script: &str| {
        let path = workspace.write("build.img", script);
        run(imgscript().arg("check").arg(&path).env("NO_COLOR", "1"))
    };

    let no_lock =
        check(r#"debian_slim("3.11").poetry_install_from_file("./project/pyproject.toml")"#);
    assert_eq!(no_lock.code, 1, "{}", no_lock.stderr);
    assert!(
        no_lock.stderr.contains("has no poetry.lock beside it"),
        "{}",
        no_lock.stderr
    );

    let ignored = check(
        r#"debian_slim("3.11").poetry_install_from_file("./project/pyproject.toml", #{ ignore_lockfile: true })"#,
    );
    assert_eq!(ignored.code, 0, "{}", ignored.stderr);

    let unknown = check(
        r#"debian_slim("3.11").poetry_install_from_file("./project/pyproject.toml", #{ ignore_lockfile: true, only: ["docs"] })"#,
    );
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(
        unknown
            .stderr
            .contains("has no dependency group \"docs\" (it has: main, dev)"),
        "{}",
        unknown.stderr
    );
}
