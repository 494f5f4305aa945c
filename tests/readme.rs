//! The README's example per function: every builder has one, and each
//! checks cleanly with the local files it names.

mod common;

use common::*;

fn examples() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### One example per function")
        .nth(1)
        .expect("the README has a section of examples");
    let block = section
        .split("```rhai\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a rhai block");
    block.lines().map(str::to_string).collect()
}

#[test]
fn every_builder_has_an_example() {
    let examples = examples();
    for builder in imgscript::script::builder_names() {
        assert!(
            examples
                .iter()
                .any(|line| line.contains(&format!("{builder}("))),
            "the README has no example of {builder}"
        );
    }
}

#[test]
fn every_example_checks() {
    let workspace = Workspace::new();
    workspace.write(
        "Dockerfile",
        "FROM python:3.11-slim-bookworm\nARG VERSION\n",
    );
    workspace.write("requirements.txt", "requests==2.32.3\n");
    workspace.write(
        "pyproject.toml",
        "[project]\nname = \"app\"\nversion = \"0.1\"\ndependencies = [\"requests\"]\n\n[project.optional-dependencies]\ndev = [\"pytest\"]\n\n[dependency-groups]\ndev = [\"ruff\"]\n\n[tool.poetry.group.ml.dependencies]\ntorch = \"*\"\n",
    );
    workspace.write("poetry.lock", "");
    workspace.write("download.py", "def fetch_weights(model):\n    pass\n");
    workspace.write("config.toml", "");
    workspace.write("src/app.py", "");
    workspace.write("mypackage/__init__.py", "");
    workspace.write(".env", "TOKEN=value\n");
    let config = workspace.path().join("config");
    for name in ["registry", "aws", "api"] {
        let path = workspace.write(
            &format!("config/imgscript/secrets/{name}.env"),
            "TOKEN=value\n",
        );
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }

    for example in examples() {
        let script = workspace.write("build.img", &example);
        let result = run(imgscript()
            .arg("check")
            .arg(&script)
            .env("XDG_CONFIG_HOME", &config)
            .env("HF_TOKEN", "value")
            .env("NO_COLOR", "1"));
        assert_eq!(result.code, 0, "{example}\n{}", result.stderr);
    }
}
