//! Build steps beyond the core: GPU requests, local Python sources and
//! Dockerfile instructions on an image.

mod common;

use common::*;

#[test]
fn gpu_step_without_gpu_runtime_fails_clearly() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11").run_commands(["echo {}", "nvidia-smi"], #{{ gpu: "A100:2" }})"#,
            nonce()
        ),
    );
    let containers_before = all_containers();
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("the Docker Engine cannot give this step the GPUs it requests (A100:2)"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("NVIDIA Container Toolkit"),
        "{}",
        result.stderr
    );
    assert_eq!(all_containers(), containers_before);
}

#[test]
fn gpu_request_enters_plan_key() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let script = workspace.write(
        "build.img",
        &format!(r#"debian_slim("3.11").run_commands(["echo {nonce}"])"#),
    );
    build(&script, &[]);

    workspace.write(
        "build.img",
        &format!(r#"debian_slim("3.11").run_commands(["echo {nonce}"], #{{ gpu: "any" }})"#),
    );
    let plan = run(imgscript().arg("plan").arg(&script));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("[to build: no cached layer"),
        "{}",
        plan.stdout
    );
}

#[test]
fn invalid_gpu_request_is_script_error() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        r#"debian_slim("3.11").run_commands(["true"], #{ gpu: "V100" })"#,
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("unknown GPU \"V100\""),
        "{}",
        result.stderr
    );
}

#[test]
fn python_source_copies_python_files() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    workspace.write("mypkg/__init__.py", &format!("NONCE = \"{nonce}\"\n"));
    workspace.write(
        "mypkg/tools/helpers.py",
        "def greet():\n    return 'hello'\n",
    );
    workspace.write("mypkg/tools/notes.txt", "not Python\n");
    workspace.write("mypkg/__pycache__/stale.py", "x = 1\n");
    workspace.write("single.py", "VALUE = 42\n");
    let script = workspace.write(
        "build.img",
        r#"debian_slim("3.11")
    .add_local_python_source(["mypkg", "single"], #{ copy: true })
    .workdir("/root")"#,
    );
    let result = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "find /root/mypkg /root/single.py -type f | sort; python -c 'import mypkg, single; from mypkg.tools.helpers import greet; print(mypkg.NONCE, single.VALUE, greet())'",
    ]));
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(
        result.stdout,
        format!("/root/mypkg/__init__.py\n/root/mypkg/tools/helpers.py\n/root/single.py\n{nonce} 42 hello\n")
    );
}

#[test]
fn python_source_missing_module() {
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        r#"debian_slim("3.11").add_local_python_source("absent.module")"#,
    );
    let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    let folder = workspace.path().join("absent/module");
    assert!(
        result.stderr.contains(&format!(
            "Python module absent.module not found: there is no folder {}",
            folder.display()
        )),
        "{}",
        result.stderr
    );
}

#[test]
fn dockerfile_commands_apply_to_image() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    workspace.write("files/config.txt", "from the context\n");
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11")
    .env(#{{ BEFORE: "1" }})
    .dockerfile_commands([
        "ARG NAME=default",
        "RUN echo \"$NAME {nonce}\" > /name.txt",
        "COPY config.txt /etc/app/",
        "ENV AFTER_DOCKERFILE=yes",
    ], #{{ context_dir: "./files", build_args: #{{ NAME: "custom" }} }})
    .cmd(["cat", "/name.txt", "/etc/app/config.txt"])"#
        ),
    );

    let first = build(&script, &[]);
    let id = image_id(&first);
    assert_eq!(
        docker(&["run", "--rm", &id]),
        format!("custom {nonce}\nfrom the context")
    );
    let env = inspect(&id, "{{json .Config.Env}}");
    assert!(
        env.contains("BEFORE=1") && env.contains("AFTER_DOCKERFILE=yes"),
        "{env}"
    );
    assert_eq!(inspect(&id, "{{json .Config.Labels}}"), "null");

    let second = build(&script, &[]);
    assert_eq!(image_id(&second), id);
    assert!(!second.stderr.contains("(building"), "{}", second.stderr);
}

#[test]
fn dockerfile_commands_reject_stages() {
    let workspace = Workspace::new();
    let cases = [
        (
            r#"["COPY --from=builder /app /app"]"#,
            "use image.copy_from(other",
        ),
        (r#"["FROM debian"]"#, "cannot start a new stage with FROM"),
        (r#"["COPY missing.txt /x"]"#, "pass #{ context_dir"),
    ];
    for (lines, expected) in cases {
        let script = workspace.write(
            "build.img",
            &format!("debian_slim(\"3.11\").dockerfile_commands({lines})\n"),
        );
        let result = run(imgscript().arg("check").arg(&script).env("NO_COLOR", "1"));
        assert_eq!(result.code, 1, "{lines}: {}", result.stderr);
        assert!(
            result.stderr.contains(expected),
            "{lines}: {}",
            result.stderr
        );
    }
}

#[test]
fn pip_step_without_python_says_so() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11")
    .run_commands(["rm -f /usr/bin/python /usr/bin/python3 /usr/bin/python3.11 && echo {}"])
    .pip_install(["six"])"#,
            nonce()
        ),
    );
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("step `pip_install` failed: command exited with code 127"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("no python is on PATH"),
        "{}",
        result.stderr
    );
}

#[test]
fn run_function_calls_python_at_build() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let write_function = |suffix: &str| {
        workspace.write(
            "download.py",
            &format!(
                "import json, os\n\n\ndef fetch(name, *, count=1):\n    with open('/fetched.json', 'w') as out:\n        json.dump({{'name': name, 'count': count, 'token': os.environ['TOKEN'], 'suffix': '{suffix}'}}, out)\n"
            ),
        );
    };
    write_function("one");
    let script = workspace.write(
        "build.img",
        &format!(
            r#"debian_slim("3.11")
    .env(#{{ NONCE: "{nonce}" }})
    .run_function("./download.py", "fetch", #{{ args: ["weights"], kwargs: #{{ count: 3 }}, secrets: [secret_from_map(#{{ TOKEN: "t0k" }})], timeout: 60 }})"#
        ),
    );

    let first = build(&script, &[]);
    let fetched = docker(&["run", "--rm", &image_id(&first), "cat", "/fetched.json"]);
    assert_eq!(
        fetched,
        r#"{"name": "weights", "count": 3, "token": "t0k", "suffix": "one"}"#
    );
    assert!(!build(&script, &[]).stderr.contains("(building"));

    write_function("two");
    let rebuilt = build(&script, &[]);
    assert!(
        rebuilt
            .stderr
            .contains("run_function ./download.py fetch (building"),
        "{}",
        rebuilt.stderr
    );
    let fetched = docker(&["run", "--rm", &image_id(&rebuilt), "cat", "/fetched.json"]);
    assert!(fetched.contains(r#""suffix": "two""#), "{fetched}");
}

#[test]
fn run_function_timeout_stops_step() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    workspace.write(
        "slow.py",
        &format!(
            "import time\n\n\ndef wait():\n    print('{}', flush=True)\n    time.sleep(60)\n",
            nonce()
        ),
    );
    let script = workspace.write(
        "build.img",
        r#"debian_slim("3.11").run_function("./slow.py", "wait", #{ timeout: 2 })"#,
    );
    let containers_before = all_containers();
    let started = std::time::Instant::now();
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("step `run_function` timed out after 2 seconds"),
        "{}",
        result.stderr
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "the timeout did not stop the step"
    );
    assert_eq!(all_containers(), containers_before);
}

#[test]
fn run_function_missing_function_fails() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    workspace.write(
        "tasks.py",
        &format!("# {}\ndef present():\n    pass\n", nonce()),
    );

    // A name the file never mentions fails the check, before any build.
    let script = workspace.write(
        "build.img",
        r#"debian_slim("3.11").run_function("./tasks.py", "absent")"#,
    );
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("./tasks.py defines no function `absent`"),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains("building"), "{}", result.stderr);

    // A name the file mentions but does not define fails in the build.
    workspace.write(
        "tasks.py",
        &format!(
            "# {} absent was removed\ndef present():\n    pass\n",
            nonce()
        ),
    );
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("step `run_function` failed"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("has no attribute 'absent'"),
        "{}",
        result.stderr
    );
}
