//! `import` of script files and of the standard library in `stdlib/`.

mod common;

use common::*;

#[test]
fn imported_module_builds_from_any_folder() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    workspace.write(
        "project/lib/common.img",
        &format!(
            "fn base() {{\n    debian_slim(\"3.11\").env(#{{ FROM_MODULE: \"{nonce}\" }})\n}}\n"
        ),
    );
    let script = workspace.write(
        "project/build.img",
        "import \"./lib/common\" as common;\ncommon::base()\n",
    );
    let elsewhere = tempfile::tempdir().unwrap();

    let result = run(imgscript()
        .current_dir(elsewhere.path())
        .arg("run")
        .arg(&script));

    assert_eq!(result.code, 0, "{}", result.stderr);
    let module_path = workspace.path().join("project/lib/common.img");
    assert!(
        result
            .stderr
            .contains(&format!("[{}:2:25] env FROM_MODULE", module_path.display())),
        "{}",
        result.stderr
    );
    let env = inspect(&image_id(&result), "{{json .Config.Env}}");
    assert!(env.contains(&format!("FROM_MODULE={nonce}")), "{env}");
}

#[test]
fn error_in_module_points_at_module() {
    let workspace = Workspace::new();
    workspace.write(
        "lib/steps.img",
        "fn broken(image) {\n    image.apt_instal([\"git\"])\n}\n",
    );
    let script = workspace.write(
        "build.img",
        "import \"./lib/steps\" as steps;\nsteps::broken(debian_slim(\"3.11\"))\n",
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    let module_path = workspace.path().join("lib/steps.img");
    assert!(
        result
            .stderr
            .contains(&format!("[{}:2:11]", module_path.display())),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("did you mean `apt_install`?"),
        "{}",
        result.stderr
    );
}

#[test]
fn missing_module_names_paths() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        "import \"./lib/absent\" as absent;\nabsent::x()\n",
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    let expected = workspace.path().join("lib/absent.img");
    assert!(
        result
            .stderr
            .contains(&format!("there is no file {}", expected.display())),
        "{}",
        result.stderr
    );
}

#[test]
fn unknown_stdlib_module_suggests_name() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        "import \"pyton\" as python;\ndebian_slim(\"3.11\")\n",
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("did you mean \"python\"?"),
        "{}",
        result.stderr
    );
}

#[test]
fn circular_import_is_an_error() {
    let workspace = Workspace::new();
    workspace.write("a.img", "import \"./b\" as b;\nfn x() { 1 }\n");
    workspace.write("b.img", "import \"./a\" as a;\nfn y() { 2 }\n");
    let script = workspace.write("build.img", "import \"./a\" as a;\ndebian_slim(\"3.11\")\n");
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("imports itself"),
        "{}",
        result.stderr
    );
}

/// Returns the example script in a stdlib module's header: the comment
/// lines indented by four spaces.
fn stdlib_example(module: &str) -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("stdlib/{module}.img"));
    let text = std::fs::read_to_string(path).unwrap();
    let example: Vec<&str> = text
        .lines()
        .take_while(|line| line.starts_with("//"))
        .filter_map(|line| line.strip_prefix("//     "))
        .collect();
    assert!(!example.is_empty(), "stdlib/{module}.img has no example");
    example.join("\n")
}

#[test]
fn users_example_runs_as_user() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write("build.img", &stdlib_example("users"));
    let result = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "id -u; id -g; pwd; touch ok",
    ]));
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(result.stdout, "1000\n1000\n/home/app\n");
}

#[test]
fn python_example_uses_venv() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write("build.img", &stdlib_example("python"));
    let result = run(imgscript().arg("run").arg(&script).args([
        "--",
        "python",
        "-c",
        "import sys; print(sys.prefix)",
    ]));
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(result.stdout, "/opt/venv\n");
}

#[test]
fn python_user_venv_belongs_to_user() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        "import \"python\" as python;\npython::user_venv(debian_slim(\"3.11\"), \"app\", 1000)\n    .run_commands([\"python -m pip --version > /home/app/pip.txt\"])\n",
    );
    let result = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "stat -c %U /home/app/.venv/bin/python; command -v python; cut -d' ' -f4 /home/app/pip.txt",
    ]));
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(
        result.stdout,
        "app\n/home/app/.venv/bin/python\n/home/app/.venv/lib/python3.11/site-packages/pip\n"
    );
}

#[test]
fn users_rejects_non_integer_id() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        "import \"users\" as users;\nusers::add_user(debian_slim(\"3.11\"), \"app\", \"1000\")\n",
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("needs a positive integer id"),
        "{}",
        result.stderr
    );
}

#[test]
fn apt_example_pins_snapshot() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write("build.img", &stdlib_example("apt"));
    let result = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "cat /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null; cat /etc/apt/apt.conf.d/99imgscript-snapshot",
    ]));
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result
            .stdout
            .contains("http://snapshot.debian.org/archive/debian/20250520T000000Z"),
        "{}",
        result.stdout
    );
    assert!(
        !result.stdout.contains("deb.debian.org"),
        "{}",
        result.stdout
    );
    assert!(
        result
            .stdout
            .contains("Acquire::Check-Valid-Until \"false\";"),
        "{}",
        result.stdout
    );
}

#[test]
fn apt_rejects_bad_date() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        "import \"apt\" as apt;\napt::pin_snapshot(debian_slim(\"3.11\"), \"2025-05-20\")\n",
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("needs a timestamp such as \"20250520T000000Z\""),
        "{}",
        result.stderr
    );
}

/// Returns a base image whose only apt source is the local repository of Node.js
/// packages that `tests/setup.sh` downloads (IMGSCRIPT_TEST_DEBS, default
/// /var/cache/imgscript-debs), since the tests reach no package mirror.
fn offline_node_base(workspace: &Workspace) -> &'static str {
    let debs = std::env::var("IMGSCRIPT_TEST_DEBS")
        .unwrap_or_else(|_| "/var/cache/imgscript-debs".to_string());
    let repository = std::path::Path::new(&debs).join("node");
    assert!(
        repository.join("Packages").is_file(),
        "no Node.js packages in {}; run tests/setup.sh",
        repository.display()
    );
    let copy = workspace.path().join("debs");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&repository).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    r#"debian_slim("3.11")
    .add_local_dir("./debs", "/var/local-apt", #{ copy: true })
    .run_commands(["rm -f /etc/apt/sources.list.d/* && echo 'deb [trusted=yes] file:/var/local-apt ./' > /etc/apt/sources.list"])
    .add_local_dir("./web/vendor", "/app/vendor", #{ copy: true })"#
}

/// Writes `web/` with a package that depends on a local npm tarball, and
/// locks it with npm in a container, as a user would on their machine.
fn node_project(workspace: &Workspace, base: &str) {
    let package = workspace.path().join("greeting/package");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(
        package.join("package.json"),
        r#"{ "name": "greeting", "version": "1.0.0", "main": "index.js" }"#,
    )
    .unwrap();
    std::fs::write(
        package.join("index.js"),
        "exports.hello = () => console.log('hello from greeting');\n",
    )
    .unwrap();
    std::fs::create_dir_all(workspace.path().join("web/vendor")).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(workspace.path().join("greeting"))
        .arg("-czf")
        .arg(workspace.path().join("web/vendor/greeting-1.0.0.tgz"))
        .arg("package")
        .status()
        .unwrap();
    assert!(status.success());
    workspace.write(
        "web/package.json",
        &format!(
            r#"{{ "name": "web", "version": "1.0.0", "description": "{}", "dependencies": {{ "greeting": "file:vendor/greeting-1.0.0.tgz" }} }}"#,
            nonce()
        ),
    );

    let script = workspace.write(
        "lock.img",
        &format!(
            "import \"node\" as node;\nnode::install({base})\n    .add_local_file(\"./web/package.json\", \"/app/package.json\", #{{ copy: true }})\n"
        ),
    );
    let locked = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "cd /app && npm install --package-lock-only --offline --no-audit --no-fund >&2 && cat package-lock.json",
    ]));
    assert_eq!(locked.code, 0, "{}", locked.stderr);
    workspace.write("web/package-lock.json", &locked.stdout);
}

#[test]
fn node_example_installs_from_lock_file() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let base = offline_node_base(&workspace);
    node_project(&workspace, base);

    let example = stdlib_example("node");
    assert!(example.contains("debian_slim(\"3.11\")"), "{example}");
    let script = workspace.write("build.img", &example.replace("debian_slim(\"3.11\")", base));
    let result = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "node -e \"require('/app/node_modules/greeting').hello()\" && ls /root/.npm/_cacache 2>&1 || true",
    ]));
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result.stdout.starts_with("hello from greeting\n"),
        "{}",
        result.stdout
    );
    assert!(
        result.stdout.contains("No such file"),
        "npm's cache stayed: {}",
        result.stdout
    );
}

#[test]
fn node_npm_ci_needs_absolute_destination() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        "import \"node\" as node;\nnode::npm_ci(debian_slim(\"3.11\"), \"./web\", \"app\")\n",
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("needs an absolute folder in the image"),
        "{}",
        result.stderr
    );
}
