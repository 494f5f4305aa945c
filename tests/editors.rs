//! The editor support in editors/: checked against `imgscript api --json`
//! so that no builder is missing from an editor, Vim's highlighting of an
//! example script, and the VS Code grammar tests and packaging.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn api_names() -> Vec<String> {
    let output = run(imgscript().args(["api", "--json"]));
    assert_eq!(output.code, 0, "{}", output.stderr);
    let description: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    let mut names = Vec::new();
    for builder in description["builders"].as_array().unwrap() {
        names.push(builder["name"].as_str().unwrap().to_string());
        for option in builder["options"].as_array().unwrap() {
            names.push(option["name"].as_str().unwrap().to_string());
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Checks whether `name` occurs in `text` as a whole word.
fn has_word(text: &str, name: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|word| word == name)
}

#[test]
fn api_json_describes_builders_and_options() {
    let output = run(imgscript().args(["api", "--json"]));
    let description: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    let apt = description["builders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|builder| builder["name"] == "apt_install")
        .unwrap();
    assert_eq!(apt["kind"], "method");
    assert_eq!(apt["params"][0]["name"], "packages");
    let option = &apt["options"][0];
    assert_eq!(option["name"], "install_recommends");
    assert_eq!(option["type"], "bool");
    assert_eq!(option["default"], "false");
    assert!(option["description"].as_str().unwrap().len() > 10);
    assert!(description["stdlib_modules"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("python")));
}

#[test]
fn editors_know_every_builder_and_option() {
    let vim =
        std::fs::read_to_string(repository().join("editors/vim/syntax/imgscript.vim")).unwrap();
    let grammar = std::fs::read_to_string(
        repository().join("editors/vscode/syntaxes/imgscript.tmLanguage.json"),
    )
    .unwrap();
    for name in api_names() {
        assert!(
            has_word(&vim, &name),
            "editors/vim/syntax/imgscript.vim lacks {name}"
        );
        assert!(
            has_word(&grammar, &name),
            "the TextMate grammar lacks {name}"
        );
    }
}

/// Returns Vim's syntax group at each (line, column) of `file`, with the
/// plugin from editors/vim on the runtime path.
fn vim_syntax(file: &Path, positions: &[(usize, usize)]) -> Vec<String> {
    let workspace = Workspace::new();
    let out = workspace.path().join("out.txt");
    let checks: Vec<String> = positions
        .iter()
        .map(|(line, column)| format!("synIDattr(synID({line}, {column}, 1), 'name')"))
        .collect();
    let script = workspace.write(
        "check.vim",
        &format!(
            "set nocompatible\nexecute 'set runtimepath^=' . fnameescape('{plugin}')\nfiletype plugin on\nsyntax on\nedit {file}\ncall writefile([&filetype, {checks}], '{out}')\nqall!\n",
            plugin = repository().join("editors/vim").display(),
            file = file.display(),
            checks = checks.join(", "),
            out = out.display(),
        ),
    );
    let status = Command::new("vim")
        .args(["-N", "-u", "NONE", "-i", "NONE", "-es", "-S"])
        .arg(&script)
        .status()
        .expect("vim runs; tests/setup.sh installs it");
    assert!(status.success() || out.exists(), "vim failed");
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn vim_highlights_an_example_script() {
    let example = repository().join("examples/hello/build.img");
    let found = vim_syntax(
        &example,
        &[(1, 1), (3, 1), (3, 12), (3, 24), (4, 6), (5, 13), (8, 40)],
    );
    assert_eq!(
        found,
        vec![
            "imgscript",
            "imgscriptComment",
            "imgscriptKeyword",
            "imgscriptConstructor",
            "imgscriptString",
            "imgscriptMethod",
            "",
            "imgscriptOption",
        ]
    );
}

#[test]
fn vscode_grammar_tests_pass_and_the_extension_packages() {
    let folder = repository().join("editors/vscode");
    assert!(
        folder.join("node_modules/.bin/vsce").exists(),
        "the extension's npm packages are missing; tests/setup.sh installs them with npm ci"
    );
    let npm = |script: &str| {
        let output = Command::new("npm")
            .args(["run", "--silent", script])
            .current_dir(&folder)
            .output()
            .expect("npm runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "npm run {script} failed:\n{text}");
        text
    };
    let tested = npm("test");
    assert!(
        tested.contains("tests/build.img run successfuly"),
        "{tested}"
    );
    npm("package");
    let package = folder.join("imgscript.vsix");
    let listing = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        ])
        .arg(&package)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for file in [
        "extension/package.json",
        "extension/extension.js",
        "extension/syntaxes/imgscript.tmLanguage.json",
        "extension/language-configuration.json",
        "extension/snippets/imgscript.json",
        "extension/node_modules/vscode-languageclient/package.json",
    ] {
        assert!(
            listing.contains(file),
            "{file} is missing from the package:\n{listing}"
        );
    }
}
