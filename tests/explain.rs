//! `imgscript plan` and `imgscript run --explain`: why each step builds,
//! down to the input that changed since its last build.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A workspace with its own cache folder, so the input manifests that one
/// test records never explain another test's plan.
struct Project {
    workspace: Workspace,
    cache: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        Project {
            workspace: Workspace::new(),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn script(&self, text: &str) -> PathBuf {
        self.workspace.write("build.img", text)
    }

    fn build(&self, script: &Path) -> Run {
        let result = run(imgscript()
            .arg("run")
            .arg(script)
            .env("IMGSCRIPT_CACHE_DIR", self.cache.path()));
        assert_eq!(result.code, 0, "imgscript run failed:\n{}", result.stderr);
        result
    }

    /// Plans `script` as JSON and returns its steps.
    fn plan(&self, script: &Path) -> Vec<serde_json::Value> {
        let result = run(imgscript()
            .args(["plan", "--format", "json"])
            .arg(script)
            .env("IMGSCRIPT_CACHE_DIR", self.cache.path()));
        assert_eq!(result.code, 0, "imgscript plan failed:\n{}", result.stderr);
        let plan: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
        plan["steps"].as_array().unwrap().clone()
    }
}

/// Returns the reason and changes of the planned step whose description contains
/// `text`.
fn why(steps: &[serde_json::Value], text: &str) -> (String, Vec<String>) {
    let step = steps
        .iter()
        .find(|step| step["step"].as_str().unwrap().contains(text))
        .unwrap_or_else(|| panic!("no step with {text:?} in {steps:#?}"));
    let reason = step["reason"].as_str().unwrap_or("cached").to_string();
    let changes = step["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change.as_str().unwrap().to_string())
        .collect();
    (reason, changes)
}

const NOT_CACHED: &str = "no cached layer for this step (new or changed)";

#[test]
fn new_step_says_no_earlier_build() {
    let _docker = docker_test();
    let project = Project::new();
    let script = project.script(&format!(
        "debian_slim(\"3.11\").run_commands([\"echo {}\"])\n",
        nonce()
    ));

    let steps = project.plan(&script);

    assert_eq!(
        why(&steps, "echo"),
        (
            NOT_CACHED.to_string(),
            vec!["no earlier build of this step is recorded".to_string()]
        )
    );
}

#[test]
fn changed_command_is_quoted_before_and_after() {
    let _docker = docker_test();
    let project = Project::new();
    let nonce = nonce();
    let text = |word: &str| {
        format!("debian_slim(\"3.11\")\n    .run_commands([\"echo {nonce}\", \"echo {word}\"])\n")
    };
    project.build(&project.script(&text("one")));

    let steps = project.plan(&project.script(&text("two")));

    assert_eq!(
        why(&steps, "echo"),
        (
            NOT_CACHED.to_string(),
            vec!["command 2 changed: \"echo one\" -> \"echo two\"".to_string()]
        )
    );
}

#[test]
fn changed_options_and_env_are_named() {
    let _docker = docker_test();
    let project = Project::new();
    let nonce = nonce();
    let first = format!(
        "debian_slim(\"3.11\")\n    .env(#{{ STAGE: \"dev\", KEEP: \"{nonce}\" }})\n    .dockerfile_commands([\"ARG A\", \"RUN echo $A\"], #{{ build_args: #{{ A: \"1\" }} }})\n"
    );
    project.build(&project.script(&first));

    let second = format!(
        "debian_slim(\"3.11\")\n    .env(#{{ STAGE: \"prod\", KEEP: \"{nonce}\", EXTRA: \"1\" }})\n    .dockerfile_commands([\"ARG A\", \"RUN echo $A\"], #{{ build_args: #{{ A: \"2\" }} }})\n"
    );
    let steps = project.plan(&project.script(&second));

    let (reason, changes) = why(&steps, "env");
    assert_eq!(reason, NOT_CACHED);
    assert_eq!(
        changes,
        [
            "env EXTRA added: \"1\"",
            "env STAGE changed: \"dev\" -> \"prod\""
        ]
    );
    let (reason, changes) = why(&steps, "dockerfile_commands");
    assert_eq!(reason, "an earlier step is rebuilt");
    assert_eq!(changes.len(), 1);
    assert!(
        changes[0].starts_with("the step at ") && changes[0].ends_with("build.img:2:6 builds"),
        "{changes:?}"
    );

    let third = first.replace("A: \"1\"", "A: \"2\"");
    let steps = project.plan(&project.script(&third));
    assert_eq!(
        why(&steps, "dockerfile_commands"),
        (
            NOT_CACHED.to_string(),
            vec!["build arg A changed: \"1\" -> \"2\"".to_string()]
        )
    );
}

#[test]
fn added_removed_and_modified_files_are_listed_by_path() {
    let _docker = docker_test();
    let project = Project::new();
    let workspace = &project.workspace;
    workspace.write("app/kept.txt", "same");
    workspace.write("app/edited.txt", "before");
    workspace.write("app/old.txt", &nonce());
    let script =
        project.script("debian_slim(\"3.11\").add_local_dir(\"app\", \"/app\", #{ copy: true })\n");
    project.build(&script);

    workspace.write("app/edited.txt", "after");
    std::fs::remove_file(workspace.path().join("app/old.txt")).unwrap();
    workspace.write("app/sub/new.txt", "new");
    let steps = project.plan(&script);

    assert_eq!(
        why(&steps, "add_local_dir"),
        (
            NOT_CACHED.to_string(),
            vec![
                "files added: sub, sub/new.txt".to_string(),
                "files removed: old.txt".to_string(),
                "files modified: edited.txt".to_string(),
            ]
        )
    );
}

#[test]
fn changed_base_image_is_named_with_both_ids() {
    let _docker = docker_test();
    let project = Project::new();
    let nonce = nonce();
    let reference = format!("imgscript-explain-base:{}", nonce.replace('-', "."));
    docker(&["tag", BASE_IMAGE, &reference]);
    let script = project.script(&format!(
        "from_registry(\"{reference}\").run_commands([\"echo {nonce}\"])\n"
    ));
    project.build(&script);

    let other = project.workspace.write(
        "other.img",
        &format!("debian_slim(\"3.11\").run_commands([\"echo other-{nonce}\"])\n"),
    );
    let other_id = image_id(&project.build(&other));
    docker(&["tag", &other_id, &reference]);
    let steps = project.plan(&script);
    docker(&["rmi", &reference]);

    let (reason, changes) = why(&steps, "echo");
    assert_eq!(reason, NOT_CACHED);
    let short = |id: &str| id.trim_start_matches("sha256:")[..12].to_string();
    let base_id = inspect(BASE_IMAGE, "{{.Id}}");
    assert_eq!(
        changes,
        [format!(
            "base image {reference} changed: {} -> {}",
            short(&base_id),
            short(&other_id)
        )]
    );
}

#[test]
fn removed_layer_is_explained() {
    let _docker = docker_test();
    let project = Project::new();
    let script = project.script(&format!(
        "debian_slim(\"3.11\").run_commands([\"echo {}\"])\n",
        nonce()
    ));
    project.build(&script);
    let steps = project.plan(&script);
    let key = steps[1]["cache_key"].as_str().unwrap();
    let label = format!("label=dev.imgscript.key={key}");
    let cached = docker(&["images", "-q", "--no-trunc", "--filter", &label]);
    docker(&["rmi", "--no-prune", cached.trim()]);

    let steps = project.plan(&script);

    assert_eq!(
        why(&steps, "echo"),
        (
            NOT_CACHED.to_string(),
            vec!["its cached layer was removed from the image store".to_string()]
        )
    );
}

#[test]
fn rebuilt_copy_source_is_named() {
    let _docker = docker_test();
    let project = Project::new();
    let nonce = nonce();
    let text = |word: &str| {
        format!(
            "let builder = debian_slim(\"3.11\").run_commands([\"echo {nonce} {word} > /built\"]);\n\
             debian_slim(\"3.11\")\n    .copy_from(builder, \"/built\", \"/built\")\n"
        )
    };
    project.build(&project.script(&text("one")));

    let steps = project.plan(&project.script(&text("two")));

    let (reason, changes) = why(&steps, "copy_from");
    assert_eq!(reason, "the image it copies from is rebuilt");
    assert_eq!(changes.len(), 1);
    assert!(changes[0].ends_with("build.img:1:35 builds"), "{changes:?}");
}

#[test]
fn run_explain_prints_the_plan_as_a_tree_before_building() {
    let _docker = docker_test();
    let project = Project::new();
    let nonce = nonce();
    let text = |word: &str| {
        format!(
            "debian_slim(\"3.11\")\n    .run_commands([\"echo {nonce} {word}\"])\n    .env(#{{ A: \"1\" }})\n"
        )
    };
    project.build(&project.script(&text("one")));

    let result = run(imgscript()
        .args(["run", "--explain", "--progress", "plain"])
        .arg(project.script(&text("two")))
        .env("IMGSCRIPT_CACHE_DIR", project.cache.path()));

    assert_eq!(result.code, 0, "{}", result.stderr);
    let explained: Vec<&str> = result
        .stderr
        .lines()
        .take_while(|line| !line.starts_with('['))
        .collect();
    let folder = project.workspace.path().display().to_string();
    let explained = explained
        .join("\n")
        .replace(&folder, "DIR")
        .replace(&nonce, "NONCE");
    insta::assert_snapshot!(explained);
}

#[test]
fn run_explain_with_json_progress_stays_json() {
    let _docker = docker_test();
    let project = Project::new();
    let script = project.script(&format!(
        "debian_slim(\"3.11\").run_commands([\"echo {}\"])\n",
        nonce()
    ));

    let result = run(imgscript()
        .args(["run", "--explain", "--progress", "json"])
        .arg(&script)
        .env("IMGSCRIPT_CACHE_DIR", project.cache.path()));

    assert_eq!(result.code, 0, "{}", result.stderr);
    let events: Vec<serde_json::Value> = result
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert_eq!(events[0]["event"], "plan");
    assert_eq!(
        events[0]["steps"][1]["changes"][0],
        "no earlier build of this step is recorded"
    );
}
