//! A large script on a large context: 2,000 steps over a folder of 100,000
//! files. The build takes minutes, so the test is ignored by `cargo test`
//! and run by tests/long.sh. Its memory is measured by
//! tests/bench/scale.sh, not here.

mod common;

use common::*;

const FOLDERS: usize = 100;
const FILES_PER_FOLDER: usize = 1_000;
/// The base, the copy, one run step and the final workdir make four steps;
/// env steps make up the rest.
const ENV_STEPS: usize = 1_996;

/// Writes the context: FOLDERS folders of FILES_PER_FOLDER small files,
/// one of which contains `nonce`, so that no earlier run cached the copy.
fn write_context(workspace: &Workspace, nonce: &str) {
    for folder in 0..FOLDERS {
        let path = workspace.path().join(format!("context/d{folder:03}"));
        std::fs::create_dir_all(&path).unwrap();
        for file in 0..FILES_PER_FOLDER {
            std::fs::write(
                path.join(format!("f{file:04}.txt")),
                format!("{folder} {file}\n"),
            )
            .unwrap();
        }
    }
    workspace.write("context/d000/f0000.txt", nonce);
}

/// Removes the images that the script's steps and its target left in the
/// store: two thousand of them, which no other test uses. One listing finds
/// them all; a `docker images` per key would take minutes.
fn remove_images(workspace: &Workspace, script: &std::path::Path, target: &str) {
    let cache = workspace.path().join("cache");
    let plan = run(imgscript()
        .args(["plan", "--format", "json"])
        .arg(script)
        .env("IMGSCRIPT_CACHE_DIR", &cache));
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let keys: std::collections::HashSet<&str> = plan["steps"].as_array().unwrap()[1..]
        .iter()
        .filter_map(|step| step["cache_key"].as_str())
        .collect();
    let listed = run(imgscript()
        .args(["cache", "ls", "--format", "json"])
        .env("IMGSCRIPT_CACHE_DIR", &cache));
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();

    let mut images = vec![target.to_string()];
    for layer in listed.as_array().unwrap() {
        if keys.contains(layer["cache_key"].as_str().unwrap()) {
            images.push(layer["image_id"].as_str().unwrap().to_string());
        }
    }
    for batch in images.chunks(200) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "--force", "--no-prune"])
            .args(batch)
            .output();
    }
}

#[test]
#[ignore = "builds 2,000 steps over 100,000 files; run by tests/long.sh"]
fn two_thousand_steps_over_a_hundred_thousand_files() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let nonce = nonce();
    write_context(&workspace, &nonce);
    let script = workspace.write(
        "build.img",
        &format!(
            r#"// 2,000 steps over a context of 100,000 files.
let image = debian_slim("3.11")
    .add_local_dir("./context", "/context", #{{ copy: true }})
    .run_commands(["find /context -type f | wc -l > /count"]);
for i in 0..{ENV_STEPS} {{
    let vars = #{{}};
    vars["STEP_" + i] = "{}";
    image = image.env(vars);
}}
image.workdir("/context")
"#,
            nonce
        ),
    );
    let imgscript = || {
        let mut command = imgscript();
        command
            .env("IMGSCRIPT_CACHE_DIR", workspace.path().join("cache"))
            .env("NO_COLOR", "1");
        command
    };

    let checked = run(imgscript().arg("check").arg(&script));
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    let planned = run(imgscript().arg("plan").arg(&script));
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    assert!(
        planned.stderr.contains("1999 of 2000 steps to build"),
        "{}{}",
        planned
            .stdout
            .lines()
            .take(8)
            .collect::<Vec<_>>()
            .join("\n"),
        planned.stderr
    );

    let built = run(imgscript()
        .args(["run", "--progress", "plain"])
        .arg(&script));
    assert_eq!(built.code, 0, "{}", built.stderr);
    let image = image_id(&built);
    let noop = run(imgscript()
        .args(["run", "--progress", "plain"])
        .arg(&script));
    with_images_removed_after(&workspace, &script, &image, || {
        assert_eq!(noop.code, 0, "{}", noop.stderr);
        assert!(
            noop.stderr.contains("steps: 0 built, 2000 cached"),
            "the rerun should build nothing: {}",
            noop.stderr.lines().last().unwrap_or_default()
        );
        assert_eq!(image_id(&noop), image);

        let count = docker(&["run", "--rm", &image, "cat", "/count"]);
        assert_eq!(count, (FOLDERS * FILES_PER_FOLDER).to_string());
        let last = format!("STEP_{}", ENV_STEPS - 1);
        let env = inspect(&image, "{{json .Config.Env}}");
        assert!(env.contains(&last), "{env}");
        assert_eq!(inspect(&image, "{{.Config.WorkingDir}}"), "/context");
    });
}

/// Runs `checks`, removing the build's images afterwards whether or not
/// they pass.
fn with_images_removed_after(
    workspace: &Workspace,
    script: &std::path::Path,
    image: &str,
    checks: impl FnOnce() + std::panic::UnwindSafe,
) {
    let outcome = std::panic::catch_unwind(checks);
    remove_images(workspace, script, image);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
