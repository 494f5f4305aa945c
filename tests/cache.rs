//! `imgscript cache ls` and `imgscript cache prune`.

mod common;

use std::path::Path;

use common::*;

/// Runs imgscript with `args` and the cache folder `cache`, and requires
/// success.
fn imgscript_ok(cache: &Path, args: &[&str]) -> Run {
    let result = run(imgscript().args(args).env("IMGSCRIPT_CACHE_DIR", cache));
    assert_eq!(
        result.code, 0,
        "imgscript {args:?} failed:\n{}",
        result.stderr
    );
    result
}

/// Returns the cache keys of the steps after the base, from `imgscript plan`.
fn step_keys(cache: &Path, script: &Path) -> Vec<String> {
    let plan = imgscript_ok(
        cache,
        &["plan", "--format", "json", script.to_str().unwrap()],
    );
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    plan["steps"].as_array().unwrap()[1..]
        .iter()
        .map(|step| step["cache_key"].as_str().unwrap().to_string())
        .collect()
}

fn image_of(key: &str) -> Option<String> {
    let label = format!("label=dev.imgscript.key={key}");
    let listed = docker(&["images", "-q", "--no-trunc", "--filter", &label]);
    listed.lines().next().map(str::to_string)
}

fn exists(image_id: &str) -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", image_id])
        .output()
        .unwrap()
        .status
        .success()
}

/// Marks `key` in the cache index as last used in 2001.
fn age(cache: &Path, key: &str) {
    let index = cache.join("index");
    for daemon in std::fs::read_dir(index).unwrap() {
        let entry = daemon.unwrap().path().join(key);
        if entry.exists() {
            let status = std::process::Command::new("touch")
                .args(["-d", "2001-01-01"])
                .arg(&entry)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
}

#[test]
fn ls_lists_built_layers_with_last_use() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let cache = tempfile::tempdir().unwrap();
    let script = workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\").run_commands([\"echo {}\"])\n",
            nonce()
        ),
    );
    imgscript_ok(cache.path(), &["run", script.to_str().unwrap()]);
    let key = &step_keys(cache.path(), &script)[0];

    let listed = imgscript_ok(cache.path(), &["cache", "ls", "--format", "json"]);

    let layers: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    let layer = layers
        .iter()
        .find(|layer| layer["cache_key"] == key.as_str())
        .expect("the built layer is listed");
    assert_eq!(layer["image_id"].as_str(), image_of(key).as_deref());
    assert!(layer["size"].as_u64().unwrap() > 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now - layer["last_used"].as_u64().unwrap() < 600, "{layer}");

    let table = imgscript_ok(cache.path(), &["cache", "ls"]);
    assert!(table.stdout.starts_with("CACHE KEY"), "{}", table.stdout);
    assert!(table.stdout.contains(&key[..12]), "{}", table.stdout);
}

#[test]
fn prune_removes_old_untagged_imgscript_layers_only() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let cache = tempfile::tempdir().unwrap();
    let nonce = nonce();
    let script = workspace.write(
        "build.img",
        &format!(
            "debian_slim(\"3.11\")\n    .run_commands([\"echo old {nonce}\"])\n    .run_commands([\"echo tagged {nonce}\"])\n    .run_commands([\"echo inherited {nonce}\"])\n"
        ),
    );
    let recent = workspace.write(
        "recent.img",
        &format!("debian_slim(\"3.11\").run_commands([\"echo recent {nonce}\"])\n"),
    );
    imgscript_ok(cache.path(), &["run", script.to_str().unwrap()]);
    imgscript_ok(cache.path(), &["run", recent.to_str().unwrap()]);
    let keys = step_keys(cache.path(), &script);
    let recent_key = &step_keys(cache.path(), &recent)[0];
    for key in &keys {
        age(cache.path(), key);
    }
    let images: Vec<String> = keys.iter().map(|key| image_of(key).unwrap()).collect();
    // A tag names the second layer. An image built by `docker build` on
    // the third inherits its labels but is not imgscript's.
    let tag = format!("imgscript-test-prune:{}", nonce.replace('-', "."));
    docker(&["tag", &images[1], &tag]);
    let context = workspace.write(
        "context/Dockerfile",
        &format!("FROM {}\nLABEL made-by=docker-build\n", images[2]),
    );
    let built_on_cache = docker(&["build", "-q", context.parent().unwrap().to_str().unwrap()]);

    let dry = imgscript_ok(
        cache.path(),
        &["cache", "prune", "--older-than", "9000days", "--dry-run"],
    );
    assert!(dry.stderr.contains("would remove"), "{}", dry.stderr);
    assert!(exists(&images[0]), "a dry run removes nothing");

    let pruned = imgscript_ok(
        cache.path(),
        &["cache", "prune", "--older-than", "9000days"],
    );

    assert!(
        !exists(&images[0]),
        "the old layer is removed: {}",
        pruned.stderr
    );
    // The legacy builder records the cached layer as the parent of its
    // image, so the engine refuses to remove the layer.
    assert!(exists(&images[2]), "the layer under the docker build stays");
    assert!(pruned.stderr.contains("kept "), "{}", pruned.stderr);
    assert!(exists(&images[1]), "the tagged layer stays");
    assert!(image_of(recent_key).is_some(), "the recent layer stays");
    assert_eq!(
        inspect(
            built_on_cache.trim(),
            "{{index .Config.Labels \"made-by\"}}"
        ),
        "docker-build",
        "the image docker build made stays"
    );
    docker(&["rmi", &tag]);
    docker(&["rmi", built_on_cache.trim()]);
}

#[test]
fn prune_rejects_a_bad_size_or_duration_with_an_example() {
    for (option, value, example) in [
        ("--keep-storage", "lots", "500MB"),
        // A bare number is not bytes: that would remove nearly everything.
        ("--keep-storage", "20", "500MB"),
        ("--older-than", "3", "7days"),
    ] {
        let result = run(imgscript().args(["cache", "prune", option, value]));
        assert_eq!(result.code, 2, "{}", result.stderr);
        assert!(
            result.stderr.contains(option) && result.stderr.contains(example),
            "{}",
            result.stderr
        );
    }
}
