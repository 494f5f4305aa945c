//! How plans treat shared steps, forced bases, missing bases and the force
//! variable, and the command-line cases around them.

mod common;

use common::*;

#[test]
fn shared_function_base_builds_once() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            r#"fn base() {{ debian_slim("3.11").run_commands(["echo shared {}"]) }}
#{{ api: base().cmd(["echo", "api"]), worker: base().cmd(["echo", "worker"]) }}"#,
            nonce()
        ),
    );

    let plan = run(imgscript().arg("plan").arg(&script));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(
        plan.stdout.matches("run_commands").count(),
        1,
        "{}",
        plan.stdout
    );
    assert!(
        plan.stderr.contains("3 of 4 steps to build"),
        "{}",
        plan.stderr
    );

    let built = build(&script, &[]);
    assert_eq!(
        built.stderr.matches("(building").count(),
        3,
        "{}",
        built.stderr
    );
    assert_eq!(built.stdout.lines().count(), 2, "{}", built.stdout);
}

#[test]
fn forced_base_explains_rebuilds() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11", #{{ force_build: true }}).run_commands(["echo {}"])"#,
            nonce()
        ),
    );
    let plan = run(imgscript().arg("plan").arg(&script));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let lines: Vec<&str> = plan.stdout.lines().collect();
    assert!(lines[0].ends_with("[cached]"), "{}", plan.stdout);
    assert!(
        lines[1].ends_with("[to build: force_build on the base image]"),
        "{}",
        plan.stdout
    );
}

#[test]
fn missing_base_is_planned_as_pull() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        r#"from_registry("127.0.0.1:9/imgscript/absent:1").run_commands(["true"])"#,
    );
    let plan = run(imgscript().arg("plan").arg(&script));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .lines()
            .next()
            .unwrap()
            .ends_with("[to pull: not in the local store]"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stderr
            .contains("1 of 2 steps to build, 1 base image to pull"),
        "{}",
        plan.stderr
    );
}

#[test]
fn force_variable_values() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(r#"debian_slim("3.11").env(#{{ N: "{}" }})"#, nonce()),
    );
    build(&script, &[]);

    for (value, forced) in [
        ("1", true),
        ("true", true),
        ("ON", true),
        ("0", false),
        ("false", false),
        ("no", false),
        ("", false),
    ] {
        let plan = run(imgscript()
            .arg("plan")
            .arg(&script)
            .env("IMGSCRIPT_FORCE_BUILD", value));
        assert_eq!(plan.code, 0, "{value}: {}", plan.stderr);
        assert_eq!(
            plan.stdout.contains("to build: forced"),
            forced,
            "IMGSCRIPT_FORCE_BUILD={value:?}: {}",
            plan.stdout
        );
    }

    let invalid = run(imgscript()
        .arg("plan")
        .arg(&script)
        .env("IMGSCRIPT_FORCE_BUILD", "maybe"));
    assert_eq!(invalid.code, 2, "{}", invalid.stderr);
    assert!(
        invalid
            .stderr
            .contains("invalid IMGSCRIPT_FORCE_BUILD value \"maybe\""),
        "{}",
        invalid.stderr
    );
}

#[test]
fn linked_file_bakes_its_content() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    workspace.write("real.txt", &format!("real {}\n", nonce()));
    std::os::unix::fs::symlink("real.txt", workspace.path().join("link.txt")).unwrap();
    let script = workspace.write(
        "build.img",
        r#"debian_slim("3.11").add_local_file("./link.txt", "/opt/", #{ copy: true })"#,
    );

    let first = build(&script, &[]);
    let content = docker(&["run", "--rm", &image_id(&first), "cat", "/opt/link.txt"]);
    assert!(content.starts_with("real "), "{content}");

    workspace.write("real.txt", "edited\n");
    let second = build(&script, &[]);
    assert_eq!(
        docker(&["run", "--rm", &image_id(&second), "cat", "/opt/link.txt"]),
        "edited"
    );
}

#[test]
fn missing_command_exits_127() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(r#"debian_slim("3.11").env(#{{ N: "{}" }})"#, nonce()),
    );
    let containers_before = all_containers();
    let result = run(imgscript()
        .arg("run")
        .arg(&script)
        .args(["--", "no-such-command"])
        .env("NO_COLOR", "1"));
    assert_eq!(result.code, 127, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("cannot run no-such-command in the image"),
        "{}",
        result.stderr
    );
    assert_eq!(all_containers(), containers_before);
}

#[test]
fn failing_output_has_no_marker() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11").run_commands(["echo {}", "printf 'no newline'; exit 5"])"#,
            nonce()
        ),
    );
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("    no newline\n"),
        "{}",
        result.stderr
    );
    assert!(
        !result.stderr.contains("::imgscript-command-failed::"),
        "{}",
        result.stderr
    );
    assert!(
        !result.stderr.lines().any(|line| line == "    "),
        "{}",
        result.stderr
    );
    assert!(
        result
            .stderr
            .contains("this step ran `printf 'no newline'; exit 5`"),
        "{}",
        result.stderr
    );
}

#[test]
fn folder_as_script_is_usage_error() {
    let workspace = Workspace::new();
    let result = run(imgscript().arg("check").arg(workspace.path()));
    assert_eq!(result.code, 2, "{}", result.stderr);
    assert!(
        result.stderr.contains("is a folder, not a script"),
        "{}",
        result.stderr
    );
}

#[test]
fn linked_script_uses_real_folder() {
    let workspace = Workspace::new();
    workspace.write("project/data.txt", "x\n");
    let script = workspace.write(
        "project/build.img",
        "debian_slim(\"3.11\").add_local_file(\"./data.txt\", \"/data.txt\")\n",
    );
    let link = workspace.path().join("link.img");
    std::os::unix::fs::symlink(&script, &link).unwrap();
    let result = run(imgscript().arg("check").arg(&link));
    assert_eq!(result.code, 0, "{}", result.stderr);
}

#[test]
fn graph_draws_targets_and_cached_steps() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            r#"let base = debian_slim("3.11").env(#{{ NONCE: "{}" }});
let builder = base.run_commands(["mkdir /out && echo x > /out/a"]);
let app = base.env(#{{ A: "1" }}).copy_from(builder, "/out", "/app/");
#{{ app: app, tool: builder }}"#,
            nonce()
        ),
    );
    build(&script, &["--target", "tool"]);

    let dot = run(imgscript().arg("graph").arg(&script));
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    let nodes: Vec<&str> = dot
        .stdout
        .lines()
        .filter(|line| line.contains("fillcolor=\"#"))
        .collect();
    assert_eq!(nodes.len(), 5, "{}", dot.stdout);
    let node = |text: &str| {
        nodes
            .iter()
            .find(|line| line.contains(text))
            .unwrap_or_else(|| panic!("no node for {text} in {}", dot.stdout))
            .to_string()
    };
    assert!(
        node("run_commands").contains("\\ncached\""),
        "{}",
        dot.stdout
    );
    assert!(
        node("copy_from").contains("\\nto build\""),
        "{}",
        dot.stdout
    );
    assert!(node("env A").contains("build.img:3:16"), "{}", dot.stdout);
    assert!(
        dot.stdout.contains("[style=dashed, label=\"copy_from\"]"),
        "{}",
        dot.stdout
    );
    assert!(
        dot.stdout.contains("[label=\"tool\", shape=ellipse"),
        "{}",
        dot.stdout
    );

    let mermaid = run(imgscript()
        .args(["graph", "--format", "mermaid"])
        .arg(&script));
    assert_eq!(mermaid.code, 0, "{}", mermaid.stderr);
    assert!(
        mermaid.stdout.starts_with("flowchart TD\n"),
        "{}",
        mermaid.stdout
    );
    assert!(
        mermaid.stdout.contains("-.->|copy_from|"),
        "{}",
        mermaid.stdout
    );
    assert!(
        mermaid
            .stdout
            .contains("mkdir /out #amp;#amp; echo x #gt; /out/a"),
        "{}",
        mermaid.stdout
    );
    assert_eq!(
        mermaid.stdout.matches(":::cached").count(),
        3,
        "{}",
        mermaid.stdout
    );
}

#[test]
fn plan_json_lists_steps_with_state_and_reason() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11").run_commands(["echo {}"]).tag("imgscript-test/plan-json:latest")"#,
            nonce()
        ),
    );
    let result = run(imgscript().args(["plan", "--format", "json"]).arg(&script));
    assert_eq!(result.code, 0, "{}", result.stderr);
    let plan: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["state"], "cached");
    assert_eq!(steps[1]["state"], "build");
    assert_eq!(
        steps[1]["reason"],
        "no cached layer for this step (new or changed)"
    );
    assert_eq!(steps[1]["parent"], 0);
    assert_eq!(steps[1]["cache_key"].as_str().unwrap().len(), 64);
    assert!(steps[1]["location"]
        .as_str()
        .unwrap()
        .ends_with("build.img:1:21"));
    assert_eq!(plan["targets"][0]["tag"], "imgscript-test/plan-json:latest");
    assert_eq!(plan["to_build"], 1);
}
