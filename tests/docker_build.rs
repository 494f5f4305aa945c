//! End-to-end builds on a real Docker Engine. Each test builds layers made
//! unique by a nonce, so nothing is cached from earlier runs, and the tests
//! run one at a time so that the daemon events a test counts are its own.

mod common;

use common::*;

fn script_with(workspace: &Workspace, body: &str) -> std::path::PathBuf {
    workspace.write("build.img", body)
}

#[test]
fn cached_noop_run_creates_nothing() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    workspace.write("src/app.py", "print('app')\n");
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11")
                .run_commands(["echo {nonce} > /nonce"])
                .env(#{{ NONCE: "{nonce}" }})
                .add_local_dir("./src", "/app", #{{ copy: true }})
                .workdir("/app")
                .entrypoint(["python"])
                .cmd(["app.py"])
                .user("nobody")
                .entrypoint(["python", "-u"])
                .tag("imgscript-test/noop:{nonce}")"#,
            nonce = nonce()
        ),
    );
    let first = build(&script, &[]);

    let since = daemon_time();
    let second = build(&script, &[]);
    let until = daemon_time();

    assert_eq!(image_id(&first), image_id(&second));
    assert_eq!(events_between(&since, &until), Vec::<String>::new());
    assert!(!second.stderr.contains("building"), "{}", second.stderr);
}

#[test]
fn changed_step_rebuilds_only_from_there() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let script_text = |second: &str| {
        format!(
            r#"debian_slim("3.11")
                .run_commands(["echo first {nonce} > /first"])
                .run_commands(["echo {second} > /second"])
                .run_commands(["cat /first /second > /third"])"#
        )
    };
    let script = script_with(&workspace, &script_text("one"));
    build(&script, &[]);

    script_with(&workspace, &script_text("two"));
    let plan = run(imgscript().arg("plan").arg(&script));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    // Step lines only, without the explanations under them.
    let lines: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|line| !line.starts_with(' '))
        .collect();
    assert!(lines[1].contains("[cached]"), "{}", plan.stdout);
    assert!(
        lines[2].contains("to build: no cached layer"),
        "{}",
        plan.stdout
    );
    assert!(
        lines[3].contains("to build: an earlier step is rebuilt"),
        "{}",
        plan.stdout
    );

    let rebuild = build(&script, &[]);
    let built: Vec<&str> = rebuild
        .stderr
        .lines()
        .filter(|line| line.contains("(building"))
        .collect();
    assert_eq!(built.len(), 2, "{}", rebuild.stderr);
    assert!(
        rebuild.stderr.contains(":2:18] run_commands [\"echo first"),
        "{}",
        rebuild.stderr
    );
    assert!(rebuild
        .stderr
        .lines()
        .any(|line| line.contains("echo first") && line.ends_with("(cached)")));

    let output = run(imgscript()
        .arg("run")
        .arg(&script)
        .args(["--", "cat", "/third"]));
    assert_eq!(output.stdout, format!("first {nonce}\ntwo\n"));
}

#[test]
fn force_build_option_and_variable() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11")
                .run_commands(["echo {nonce} > /a"])
                .run_commands(["echo b > /b"], #{{ force_build: true }})
                .env(#{{ AFTER: "1" }})"#,
            nonce = nonce()
        ),
    );
    build(&script, &[]);

    let forced = build(&script, &[]);
    assert!(
        forced.stderr.contains("echo b > /b\"] (building: forced)"),
        "{}",
        forced.stderr
    );
    assert!(
        forced
            .stderr
            .contains("env AFTER (building: an earlier step is rebuilt)"),
        "{}",
        forced.stderr
    );
    assert!(
        forced.stderr.contains("> /a\"] (cached)"),
        "{}",
        forced.stderr
    );

    let all = run(imgscript()
        .arg("run")
        .arg(&script)
        .env("IMGSCRIPT_FORCE_BUILD", "1"));
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert!(
        all.stderr.contains("> /a\"] (building: forced)"),
        "{}",
        all.stderr
    );
}

#[test]
fn copy_true_bakes_and_copy_false_attaches() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    workspace.write("baked/config.txt", "baked one\n");
    workspace.write("baked/__pycache__/junk.pyc", "junk");
    workspace.write("live/data.txt", "live one\n");
    workspace.write("live/skip.log", "skipped\n");
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11")
                .run_commands(["echo {nonce} > /nonce"])
                .add_local_dir("./baked", "/baked", #{{ copy: true, ignore: ["**/__pycache__"] }})
                .add_local_dir("./live", "/live", #{{ ignore: ["*.log"] }})
                .cmd(["cat", "/baked/config.txt", "/live/data.txt"])"#,
            nonce = nonce()
        ),
    );
    let first = build(&script, &[]);

    let shown = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "cat /baked/config.txt /live/data.txt; ls /baked; ls /live",
    ]));
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert_eq!(shown.stdout, "baked one\nlive one\nconfig.txt\ndata.txt\n");

    // The attached folder is read-only and not part of the image.
    let write =
        run(imgscript()
            .arg("run")
            .arg(&script)
            .args(["--", "sh", "-c", "echo x > /live/new"]));
    assert_ne!(write.code, 0, "writing to an attached folder succeeded");
    let plain = docker(&[
        "run",
        "--rm",
        &image_id(&first),
        "sh",
        "-c",
        "ls /live 2>&1 || true",
    ]);
    assert!(plain.contains("No such file"), "{plain}");

    // Changing an attached file rebuilds nothing and shows at once.
    workspace.write("live/data.txt", "live two\n");
    let since = daemon_time();
    let second = build(&script, &[]);
    let until = daemon_time();
    assert_eq!(image_id(&first), image_id(&second));
    assert!(!events_between(&since, &until)
        .iter()
        .any(|event| event == "container create"));
    let shown = run(imgscript()
        .arg("run")
        .arg(&script)
        .args(["--", "cat", "/live/data.txt"]));
    assert_eq!(shown.stdout, "live two\n");

    // Changing a baked file rebuilds its layer.
    workspace.write("baked/config.txt", "baked two\n");
    let third = build(&script, &[]);
    assert_ne!(image_id(&first), image_id(&third));
    assert!(
        third
            .stderr
            .contains("add_local_dir ./baked -> /baked (building"),
        "{}",
        third.stderr
    );
}

#[test]
fn config_is_base_plus_declared() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11")
                .run_commands(["echo {nonce} > /nonce"])
                .env(#{{ APP_ENV: "prod", NONCE: "{nonce}" }})
                .workdir("/srv")
                .entrypoint(["python"])
                .cmd(["-c", "print(1)"])"#
        ),
    );
    let built = build(&script, &[]);
    let id = image_id(&built);

    let base_env = inspect(BASE_IMAGE, "{{json .Config.Env}}");
    let base_env: Vec<String> = serde_json::from_str(&base_env).unwrap();
    let mut expected_env = base_env.clone();
    expected_env.push("APP_ENV=prod".into());
    expected_env.push(format!("NONCE={nonce}"));
    let env: Vec<String> = serde_json::from_str(&inspect(&id, "{{json .Config.Env}}")).unwrap();
    assert_eq!(env, expected_env);

    assert_eq!(inspect(&id, "{{json .Config.Entrypoint}}"), r#"["python"]"#);
    assert_eq!(inspect(&id, "{{json .Config.Cmd}}"), r#"["-c","print(1)"]"#);
    assert_eq!(inspect(&id, "{{.Config.WorkingDir}}"), "/srv");
    assert_eq!(
        inspect(&id, "{{json .Config.Labels}}"),
        inspect(BASE_IMAGE, "{{json .Config.Labels}}")
    );
    assert_eq!(
        inspect(&id, "{{json .Config.User}}"),
        inspect(BASE_IMAGE, "{{json .Config.User}}")
    );
    // No trace of the build container.
    assert_eq!(inspect(&id, "{{.Container}}"), "");
    assert_eq!(inspect(&id, "{{json .ContainerConfig.Env}}"), "null");
    let output = docker(&["run", "--rm", &id]);
    assert_eq!(output, "1");
}

#[test]
fn failing_step_reports_command_and_cleans_up() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11")
    .run_commands(["echo {nonce}", "echo boom >&2; exit 3", "echo never ran"])"#,
            nonce = nonce()
        ),
    );
    let containers_before = all_containers();
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));

    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("step `run_commands` failed: command exited with code 3"),
        "{}",
        result.stderr
    );
    assert!(
        result
            .stderr
            .contains("this step ran `echo boom >&2; exit 3`"),
        "{}",
        result.stderr
    );
    assert!(result.stderr.contains("boom"), "{}", result.stderr);
    assert!(result.stderr.contains("build.img:2:6"), "{}", result.stderr);
    assert!(
        !result.stderr.lines().any(|line| line.trim() == "never ran"),
        "{}",
        result.stderr
    );
    assert_eq!(all_containers(), containers_before);
}

#[test]
fn relative_paths_resolve_against_script_folder() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    workspace.write(
        "project/files/greeting.txt",
        "hello from the script folder\n",
    );
    let script = workspace.write(
        "project/build.img",
        &format!(
            r#"debian_slim("3.11")
                .env(#{{ NONCE: "{nonce}" }})
                .add_local_file("./files/greeting.txt", "/greeting.txt", #{{ copy: true }})
                .add_local_file("files/greeting.txt", "/etc/", #{{ copy: true }})"#,
            nonce = nonce()
        ),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let result = run(imgscript()
        .current_dir(elsewhere.path())
        .arg("run")
        .arg(&script));
    assert_eq!(result.code, 0, "{}", result.stderr);
    let content = docker(&[
        "run",
        "--rm",
        &image_id(&result),
        "cat",
        "/greeting.txt",
        "/etc/greeting.txt",
    ]);
    assert_eq!(
        content,
        "hello from the script folder\nhello from the script folder"
    );
}

#[test]
fn map_targets_build_together_or_alone() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let script = script_with(
        &workspace,
        &format!(
            r#"let base = debian_slim("3.11").run_commands(["echo {nonce} > /nonce"]);
#{{
    api: base.cmd(["echo", "api"]).tag("imgscript-test/api:{nonce}"),
    worker: base.cmd(["echo", "worker"]),
}}"#
        ),
    );

    let worker = build(&script, &["--target", "worker"]);
    assert!(
        worker.stdout.starts_with("worker sha256:"),
        "{}",
        worker.stdout
    );
    assert_eq!(worker.stdout.lines().count(), 1);
    assert!(
        !worker.stderr.contains("echo\", \"api"),
        "{}",
        worker.stderr
    );

    let both = build(&script, &[]);
    let lines: Vec<&str> = both.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", both.stdout);
    assert!(
        lines[0].starts_with("api sha256:")
            && lines[0].ends_with(&format!("imgscript-test/api:{nonce}"))
    );
    assert!(lines[1].starts_with("worker sha256:"));
    // The shared base step was built once, by the first run.
    assert_eq!(
        both.stderr.matches("(building").count(),
        1,
        "{}",
        both.stderr
    );
    assert_eq!(
        docker(&["run", "--rm", &format!("imgscript-test/api:{nonce}")]),
        "api"
    );
}

#[test]
fn tag_option_names_the_image() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11").env(#{{ N: "{nonce}" }}).tag("imgscript-test/script-tag:{nonce}")"#
        ),
    );
    let tag = format!("imgscript-test/cli-tag:{nonce}");
    let result = build(&script, &["--tag", &tag]);
    assert!(
        result.stdout.trim_end().ends_with(&tag),
        "{}",
        result.stdout
    );
    assert_eq!(inspect(&tag, "{{.Id}}"), image_id(&result));
}

#[test]
fn run_exits_with_container_status() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = script_with(
        &workspace,
        &format!(r#"debian_slim("3.11").env(#{{ N: "{}" }})"#, nonce()),
    );
    let result = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]));
    assert_eq!(result.code, 7);
    assert!(result.stdout.ends_with("out\n"), "{}", result.stdout);
    assert!(result.stderr.contains("err"), "{}", result.stderr);
}

#[test]
fn proxy_and_ca_bundle_stay_out_of_image() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let bundle = workspace.write(
        "bundle.pem",
        "-----BEGIN CERTIFICATE-----\ntest bundle\n-----END CERTIFICATE-----\n",
    );
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11")
                .run_commands(["echo {nonce}", "echo proxy=$HTTPS_PROXY", "cat $SSL_CERT_FILE", "test \"$PIP_CERT\" = \"$SSL_CERT_FILE\""])"#,
            nonce = nonce()
        ),
    );
    let result = run(imgscript()
        .arg("run")
        .arg(&script)
        .arg("--ca-bundle")
        .arg(&bundle)
        .env("HTTPS_PROXY", "http://127.0.0.1:3128"));
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result.stderr.contains("proxy=http://127.0.0.1:3128"),
        "{}",
        result.stderr
    );
    assert!(result.stderr.contains("test bundle"), "{}", result.stderr);

    let id = image_id(&result);
    let env = inspect(&id, "{{json .Config.Env}}");
    assert!(
        !env.contains("PROXY") && !env.contains("SSL_CERT_FILE"),
        "{env}"
    );
    // The step wrote nothing, so its layer is empty: no mount point stayed behind.
    let top_layer_size = docker(&["history", "--format", "{{.Size}}", &id]);
    assert_eq!(
        top_layer_size.lines().next(),
        Some("0B"),
        "{top_layer_size}"
    );
    let run_dir = docker(&["run", "--rm", &id, "ls", "-A", "/run"]);
    let base_run_dir = docker(&["run", "--rm", BASE_IMAGE, "ls", "-A", "/run"]);
    assert_eq!(run_dir, base_run_dir);

    // Neither the proxy nor the bundle enters the cache key.
    let again = build(&script, &[]);
    assert_eq!(image_id(&again), id);
}

#[test]
fn missing_daemon_names_address() {
    let result = run(imgscript()
        .arg("run")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/hello/build.img"
        ))
        .env("DOCKER_HOST", "unix:///tmp/imgscript-test-no-daemon.sock")
        .env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains(
            "cannot connect to the Docker daemon at unix:///tmp/imgscript-test-no-daemon.sock"
        ),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains("panicked"), "{}", result.stderr);
}

#[test]
fn missing_base_image_names_reference() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    // Port 9 on loopback refuses connections, so the pull fails at once.
    let script = script_with(
        &workspace,
        r#"from_registry("127.0.0.1:9/imgscript/missing:1")"#,
    );
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("base image 127.0.0.1:9/imgscript/missing:1"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("from 127.0.0.1:9"),
        "{}",
        result.stderr
    );
}

#[test]
fn cached_label_on_derived_image_is_not_trusted() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let script = script_with(
        &workspace,
        &format!(r#"debian_slim("3.11").run_commands(["echo {nonce} > /nonce"])"#),
    );
    build(&script, &[]);

    // A plain commit on top of the cached step image inherits its labels.
    let plan = run(imgscript().args(["plan", "--format", "json"]).arg(&script));
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let label = format!(
        "label=dev.imgscript.key={}",
        plan["steps"][1]["cache_key"].as_str().unwrap()
    );
    let cached = docker(&["images", "-q", "--no-trunc", "--filter", &label]);
    let step_image = cached
        .lines()
        .next()
        .expect("the cached step image")
        .to_string();
    let container = docker(&["create", &step_image, "sh", "-c", "echo tampered > /nonce"]);
    docker(&["start", "-a", &container]);
    docker(&["commit", &container]);
    docker(&["rm", &container]);

    // An empty cache index makes the run list images by label, which finds both.
    let empty_index = tempfile::tempdir().unwrap();
    let again = build_with_index(&script, empty_index.path());
    assert!(
        again.stderr.contains("listing cached images"),
        "{}",
        again.stderr
    );
    let content = docker(&["run", "--rm", &image_id(&again), "cat", "/nonce"]);
    assert_eq!(content, nonce);
}

/// Waits up to a minute for a container that `before` does not list.
fn wait_for_new_container(before: &[String]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while all_containers().len() == before.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "no build container appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn next_run_removes_killed_run_container() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11").run_commands(["echo {}", "sleep 60"])"#,
            nonce()
        ),
    );
    let containers_before = all_containers();
    let mut child = imgscript()
        .arg("run")
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_new_container(&containers_before);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = all_containers();
    assert!(left.len() > containers_before.len(), "SIGKILL left nothing");

    let other = script_with(
        &workspace,
        &format!(r#"debian_slim("3.11").env(#{{ RUN: "{}" }})"#, nonce()),
    );
    build(&other, &[]);

    let now = all_containers();
    for container in left.iter().filter(|id| !containers_before.contains(id)) {
        assert!(
            !now.contains(container),
            "{container} of the killed run is left"
        );
    }
}

#[test]
fn sigint_and_sigterm_remove_build_container() {
    let _docker = docker_test();
    for (signal, status) in [("INT", 130), ("TERM", 143)] {
        let workspace = Workspace::new();
        let script = script_with(
            &workspace,
            &format!(
                r#"debian_slim("3.11").run_commands(["echo {}", "sleep 60"])"#,
                nonce()
            ),
        );
        let containers_before = all_containers();
        let child = imgscript()
            .arg("run")
            .arg(&script)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();

        // Wait until the step's container runs, then stop imgscript as
        // Ctrl-C or `timeout` would.
        wait_for_new_container(&containers_before);
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let output = child.wait_with_output().unwrap();

        assert_eq!(
            output.status.code(),
            Some(status),
            "SIG{signal}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(all_containers(), containers_before, "SIG{signal}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("stopped by signal {} after", status - 128))
                && stderr.contains("steps: 0 built, 1 cached, 1 failed"),
            "an interrupted run reports its step and ends with a summary: {stderr}"
        );
    }
}

/// Runs `imgscript run` with its cache index in `index` and debug logs on.
fn build_with_index(script: &std::path::Path, index: &std::path::Path) -> Run {
    let result = run(imgscript()
        .arg("run")
        .arg(script)
        .env("IMGSCRIPT_CACHE_DIR", index)
        .env("RUST_LOG", "imgscript=debug")
        .env("NO_COLOR", "1"));
    assert_eq!(result.code, 0, "imgscript run failed:\n{}", result.stderr);
    result
}

fn walk_files(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn noop_run_skips_image_listing() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let index = tempfile::tempdir().unwrap();
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11").run_commands(["echo {}"]).env(#{{ A: "1" }})"#,
            nonce()
        ),
    );
    let first = build_with_index(&script, index.path());

    let second = build_with_index(&script, index.path());

    assert_eq!(image_id(&first), image_id(&second));
    assert!(
        !second.stderr.contains("listing cached images"),
        "{}",
        second.stderr
    );
    assert!(!second.stderr.contains("(building"), "{}", second.stderr);
}

#[test]
fn complete_index_plans_new_steps_without_listing() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let index = tempfile::tempdir().unwrap();
    let script = script_with(
        &workspace,
        &format!(r#"debian_slim("3.11").run_commands(["echo {}"])"#, nonce()),
    );

    // The first plan with a fresh index lists the store once, and records it.
    let first = build_with_index(&script, index.path());
    assert!(
        first.stderr.contains("listing cached images"),
        "{}",
        first.stderr
    );

    // A new step is then known to be uncached without another listing.
    let changed = script_with(
        &workspace,
        &format!(r#"debian_slim("3.11").run_commands(["echo {}"])"#, nonce()),
    );
    let second = build_with_index(&changed, index.path());
    assert!(
        !second.stderr.contains("listing cached images"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains("(building"), "{}", second.stderr);
}

#[test]
fn stale_index_entries_fall_back_to_listing() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let index = tempfile::tempdir().unwrap();
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11").run_commands(["echo {}"]).env(#{{ A: "1" }})"#,
            nonce()
        ),
    );
    let first = build_with_index(&script, index.path());

    // Point every entry at an image without the key label.
    let base_id = inspect(BASE_IMAGE, "{{.Id}}");
    let entries = walk_files(index.path());
    assert!(
        !entries.is_empty(),
        "the first run recorded no index entries"
    );
    for entry in entries {
        std::fs::write(entry, &base_id).unwrap();
    }
    let stale = build_with_index(&script, index.path());
    assert_eq!(image_id(&stale), image_id(&first));
    assert!(
        stale.stderr.contains("listing cached images"),
        "{}",
        stale.stderr
    );
    assert!(!stale.stderr.contains("(building"), "{}", stale.stderr);

    // A lost index costs a listing, never a rebuild.
    std::fs::remove_dir_all(index.path()).unwrap();
    let lost = build_with_index(&script, index.path());
    assert_eq!(image_id(&lost), image_id(&first));
    assert!(!lost.stderr.contains("(building"), "{}", lost.stderr);
}

#[test]
fn copy_from_copies_between_images() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    let script_text = |builder_text: &str| {
        format!(
            r#"let builder = debian_slim("3.11")
    .run_commands(["mkdir -p /src/dist/sub && echo {builder_text} > /src/dist/app.txt && echo {nonce} > /src/nonce && echo deep > /src/dist/sub/deep.txt && ln -s app.txt /src/dist/link && echo tool > /src/tool"]);

debian_slim("3.11")
    .env(#{{ NONCE: "{nonce}" }})
    .copy_from(builder, "/src/dist", "/app/dist")
    .copy_from(builder, "/src/tool", "/usr/local/bin/")
    .copy_from(builder, "/src/tool", "/opt/renamed")"#
        )
    };
    let script = script_with(&workspace, &script_text("one"));
    build(&script, &[]);

    let listing = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "find /app /usr/local/bin/tool /opt/renamed | sort; cat /app/dist/link; readlink /app/dist/link",
    ]));
    assert_eq!(listing.code, 0, "{}", listing.stderr);
    assert_eq!(
        listing.stdout,
        "/app\n/app/dist\n/app/dist/app.txt\n/app/dist/link\n/app/dist/sub\n/app/dist/sub/deep.txt\n/opt/renamed\n/usr/local/bin/tool\none\napp.txt\n"
    );

    // A change in the source image rebuilds the copies, not the steps before them.
    script_with(&workspace, &script_text("two"));
    let rebuilt = build(&script, &[]);
    assert!(
        rebuilt.stderr.contains("env NONCE (cached)"),
        "{}",
        rebuilt.stderr
    );
    assert_eq!(
        rebuilt.stderr.matches("copy_from /src").count(),
        3,
        "{}",
        rebuilt.stderr
    );
    assert!(
        rebuilt.stderr.contains("copy_from /src/dist (image of")
            && rebuilt
                .stderr
                .contains("-> /app/dist (building: the image it copies from is rebuilt)"),
        "{}",
        rebuilt.stderr
    );
    let content = docker(&[
        "run",
        "--rm",
        &image_id(&rebuilt),
        "cat",
        "/app/dist/app.txt",
    ]);
    assert_eq!(content, "two");
}

#[test]
fn copy_from_missing_path_fails() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let script = script_with(
        &workspace,
        &format!(
            r#"let builder = debian_slim("3.11").env(#{{ N: "{}" }}); debian_slim("3.11").copy_from(builder, "/missing", "/x")"#,
            nonce()
        ),
    );
    let containers_before = all_containers();
    let result = run(imgscript().arg("run").arg(&script).env("NO_COLOR", "1"));
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("/missing does not exist in that image"),
        "{}",
        result.stderr
    );
    assert_eq!(all_containers(), containers_before);
}

#[test]
fn copies_into_existing_folders_like_docker() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    workspace.write("baked.txt", "baked\n");
    workspace.write("attached.txt", "attached\n");
    let script = script_with(
        &workspace,
        &format!(
            r#"let builder = debian_slim("3.11")
    .run_commands(["mkdir -p /src/dist && echo {nonce} > /src/dist/a.txt && echo tool > /src/tool"]);

debian_slim("3.11")
    .run_commands(["mkdir -p /opt/tools /app && echo keep > /opt/tools/existing.txt && ln -s /opt/tools /opt/link && echo {nonce}"])
    .copy_from(builder, "/src/tool", "/opt/tools")
    .copy_from(builder, "/src/dist", "/app/")
    .add_local_file("./baked.txt", "/opt/link", #{{ copy: true }})
    .add_local_file("./attached.txt", "/opt/tools")"#
        ),
    );
    build(&script, &[]);

    let listing = run(imgscript().arg("run").arg(&script).args([
        "--",
        "sh",
        "-c",
        "ls /opt/tools; ls /app; cat /opt/tools/existing.txt /opt/tools/attached.txt",
    ]));
    assert_eq!(listing.code, 0, "{}", listing.stderr);
    assert_eq!(
        listing.stdout,
        "attached.txt\nbaked.txt\nexisting.txt\ntool\na.txt\nkeep\nattached\n"
    );
}

#[test]
fn unreachable_package_index_shows_command_and_output() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    // A port on this machine that nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let script = script_with(
        &workspace,
        &format!(
            r#"debian_slim("3.11")
    .env(#{{ NONCE: "{}" }})
    .pip_install(["requests"], #{{ index_url: "http://{closed}/simple" }})"#,
            nonce()
        ),
    );

    let result = run(imgscript()
        .args(["run", "--progress", "plain"])
        .arg(&script)
        .env("NO_COLOR", "1"));

    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("step `pip_install` failed"),
        "{}",
        result.stderr
    );
    assert!(
        result
            .stderr
            .contains(&format!("--index-url http://{closed}/simple")),
        "the message should show the command: {}",
        result.stderr
    );
    assert!(
        result.stderr.contains("Connection refused")
            || result.stderr.contains("No matching distribution"),
        "the message should show the output's tail: {}",
        result.stderr
    );
}

#[test]
fn symlinks_in_a_copied_tree_stay_links() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let outside = workspace.write("outside.txt", &format!("outside {}\n", nonce()));
    workspace.write("tree/inside.txt", "inside\n");
    std::os::unix::fs::symlink(&outside, workspace.path().join("tree/out-link")).unwrap();
    std::os::unix::fs::symlink("/etc", workspace.path().join("tree/etc-link")).unwrap();
    let script = script_with(
        &workspace,
        r#"debian_slim("3.11").add_local_dir("./tree", "/tree", #{ copy: true })"#,
    );

    let id = image_id(&build(&script, &[]));

    let listing = docker(&[
        "run",
        "--rm",
        &id,
        "sh",
        "-c",
        "readlink /tree/out-link; readlink /tree/etc-link; ls /tree",
    ]);
    assert_eq!(
        listing,
        format!(
            "{}\n/etc\netc-link\ninside.txt\nout-link",
            outside.display()
        )
    );
    let through_link = std::process::Command::new("docker")
        .args(["run", "--rm", &id, "cat", "/tree/out-link"])
        .output()
        .unwrap();
    assert!(
        !through_link.status.success(),
        "the link must not carry the outside file into the image"
    );
}
