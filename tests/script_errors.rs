//! Script errors as users see them: `imgscript check` on broken scripts,
//! with the rendered diagnostic pinned by snapshots. No Docker needed.

mod common;

use common::{imgscript, run, Workspace};

/// Runs `imgscript check` on `script` and returns its exit code and stderr
/// with the temporary folder replaced by `[DIR]`.
fn check(workspace: &Workspace, script: &str) -> (i32, String) {
    let path = workspace.write("build.img", script);
    let result = run(imgscript()
        .arg("check")
        .arg(&path)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100"));
    let folder = workspace.path().display().to_string();
    (result.code, result.stderr.replace(&folder, "[DIR]"))
}

fn check_error(script: &str) -> String {
    let workspace = Workspace::new();
    workspace.write("src/main.py", "print('hi')\n");
    let (code, stderr) = check(&workspace, script);
    assert_eq!(code, 1, "expected a script error, got:\n{stderr}");
    stderr
}

#[test]
fn syntax_error_points_at_line() {
    insta::assert_snapshot!(check_error(
        "let base = debian_slim(\"3.11\"\n    .apt_install([\"git\"]);\nbase\n"
    ));
}

#[test]
fn unknown_method_suggests_name() {
    insta::assert_snapshot!(check_error(
        "debian_slim(\"3.11\")\n    .apt_instal([\"git\"])\n"
    ));
}

#[test]
fn unknown_function_suggests_name() {
    insta::assert_snapshot!(check_error("debain_slim(\"3.11\")\n"));
}

#[test]
fn wrong_argument_type() {
    insta::assert_snapshot!(check_error("debian_slim(\"3.11\").apt_install(42)\n"));
}

#[test]
fn wrong_argument_count() {
    insta::assert_snapshot!(check_error("debian_slim(\"3.11\").env()\n"));
}

#[test]
fn unknown_option_key_suggests_name() {
    insta::assert_snapshot!(check_error(
        "debian_slim(\"3.11\").pip_install([\"six\"], #{ index_ur: \"http://127.0.0.1:1/simple\" })\n"
    ));
}

#[test]
fn wrong_option_type() {
    insta::assert_snapshot!(check_error(
        "debian_slim(\"3.11\").add_local_dir(\"./src\", \"/app\", #{ copy: \"yes\" })\n"
    ));
}

#[test]
fn missing_local_file() {
    insta::assert_snapshot!(check_error(
        "debian_slim(\"3.11\").add_local_file(\"./missing.txt\", \"/app/missing.txt\")\n"
    ));
}

#[test]
fn invalid_python_version() {
    insta::assert_snapshot!(check_error("debian_slim(\"3\")\n"));
}

#[test]
fn python_version_as_number() {
    insta::assert_snapshot!(check_error("debian_slim(3.11)\n"));
}

#[test]
fn run_after_attached_files() {
    insta::assert_snapshot!(check_error(
        "debian_slim(\"3.11\")\n    .add_local_dir(\"./src\", \"/app\")\n    .env(#{ A: \"1\" })\n    .run_commands([\"ls /app\"])\n"
    ));
}

#[test]
fn unquoted_package_name() {
    insta::assert_snapshot!(check_error("debian_slim(\"3.11\").apt_install([curl])\n"));
}

#[test]
fn invalid_tag() {
    insta::assert_snapshot!(check_error("debian_slim(\"3.11\").tag(\"team/app:1:2\")\n"));
}

#[test]
fn invalid_tag_option_is_a_usage_error() {
    let workspace = Workspace::new();
    let path = workspace.write("build.img", "debian_slim(\"3.11\")\n");
    let result = run(imgscript()
        .args(["run", "--tag", "Bad Tag"])
        .arg(&path)
        .env("NO_COLOR", "1"));
    assert_eq!(result.code, 2, "{}", result.stderr);
    assert!(
        result.stderr.contains("invalid --tag \"Bad Tag\""),
        "{}",
        result.stderr
    );
}

#[test]
fn missing_script_is_a_usage_error() {
    let result = run(imgscript().args(["check", "/nonexistent/build.img"]));
    assert_eq!(result.code, 2, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("script /nonexistent/build.img not found"),
        "{}",
        result.stderr
    );
}

#[test]
fn copy_from_relative_path() {
    let stderr = check_error("let b = debian_slim(\"3.11\");\ndebian_slim(\"3.11\").copy_from(b, \"src/dist\", \"/app\")\n");
    assert!(
        stderr.contains("the source path of copy_from must be absolute, found \"src/dist\""),
        "{stderr}"
    );
    assert!(stderr.contains("such as \"/src/dist\""), "{stderr}");
}

#[test]
fn script_must_end_with_image() {
    insta::assert_snapshot!(check_error("let image = debian_slim(\"3.11\");\n"));
}

#[test]
fn relative_path_in_image() {
    insta::assert_snapshot!(check_error(
        "debian_slim(\"3.11\").add_local_dir(\"./src\", \"app\")\n"
    ));
}

#[test]
fn config_steps_after_attached_files_are_fine() {
    let workspace = Workspace::new();
    workspace.write("src/main.py", "print('hi')\n");
    let (code, stderr) = check(
        &workspace,
        "debian_slim(\"3.11\")\n    .add_local_dir(\"./src\", \"/app\")\n    .env(#{ A: \"1\" })\n    .workdir(\"/app\")\n    .cmd([\"python\", \"main.py\"])\n",
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn unknown_target_is_a_usage_error() {
    let workspace = Workspace::new();
    let path = workspace.write(
        "build.img",
        "let base = debian_slim(\"3.11\");\n#{ app: base, worker: base }\n",
    );
    let result = run(imgscript()
        .args(["run", "--target", "ap"])
        .arg(&path)
        .env("NO_COLOR", "1"));
    assert_eq!(result.code, 2, "{}", result.stderr);
    assert!(
        result.stderr.contains("no target named `ap`"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("did you mean `app`?"),
        "{}",
        result.stderr
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let result = run(imgscript().arg("biuld"));
    assert_eq!(result.code, 2, "{}", result.stderr);
}

#[test]
fn every_example_evaluates() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut count = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path().join("build.img");
        if path.is_file() {
            let result = run(imgscript().arg("check").arg(&path));
            assert_eq!(
                result.code,
                0,
                "{} failed:\n{}",
                path.display(),
                result.stderr
            );
            count += 1;
        }
    }
    assert!(
        count >= 3,
        "expected at least three examples, found {count}"
    );
}

#[test]
fn relative_find_links_rejected() {
    let stderr = check_error(
        "debian_slim(\"3.11\").pip_install([\"six\"], #{ find_links: \"./wheels\" })\n",
    );
    assert!(
        stderr.contains("find_links \"./wheels\" is read inside the build container"),
        "{stderr}"
    );
    assert!(stderr.contains("pass find_links: \"/wheels\""), "{stderr}");
}

#[test]
fn missing_dotenv_names_path() {
    let stderr = check_error("debian_slim(\"3.11\").run_commands([\"true\"], #{ secrets: secret_from_dotenv(\"./.env\") })\n");
    assert!(
        stderr.contains(".env file [DIR]/.env does not exist"),
        "{stderr}"
    );
    assert!(!stderr.contains("chmod"), "{stderr}");
}

#[test]
fn single_image_options_name_themselves() {
    let workspace = Workspace::new();
    let path = workspace.write(
        "build.img",
        "let base = debian_slim(\"3.11\");\n#{ app: base, worker: base }\n",
    );
    let tag = run(imgscript()
        .args(["run", "--tag", "one:1"])
        .arg(&path)
        .env("NO_COLOR", "1"));
    assert_eq!(tag.code, 2, "{}", tag.stderr);
    assert!(
        tag.stderr
            .contains("--tag needs a single image, but the script builds 2"),
        "{}",
        tag.stderr
    );
    let command = run(imgscript()
        .arg("run")
        .arg(&path)
        .args(["--", "true"])
        .env("NO_COLOR", "1"));
    assert_eq!(command.code, 2, "{}", command.stderr);
    assert!(
        command.stderr.contains("`-- CMD` needs a single image"),
        "{}",
        command.stderr
    );
}

#[test]
fn keyword_argument_gets_a_hint() {
    insta::assert_snapshot!(check_error("debian_slim(python_version=\"3.11\")\n"));
}

#[test]
fn run_function_names_a_missing_function() {
    let stderr =
        check_error("debian_slim(\"3.11\").run_function(\"./src/main.py\", \"download\")\n");
    assert!(
        stderr.contains("./src/main.py defines no function `download`"),
        "{stderr}"
    );
}

#[test]
fn endless_loop_stops_at_operation_limit() {
    insta::assert_snapshot!(check_error("loop {}\ndebian_slim(\"3.11\")\n"));
}

#[test]
fn endless_recursion_stops_at_call_limit() {
    insta::assert_snapshot!(check_error(
        "fn deeper(n) { deeper(n + 1) }\ndeeper(0);\ndebian_slim(\"3.11\")\n"
    ));
}

#[test]
fn growing_string_stops_at_size_limit() {
    insta::assert_snapshot!(check_error("let text = \"x\";\nloop { text += text; }\n"));
}

#[test]
fn eval_is_disabled() {
    insta::assert_snapshot!(check_error("eval(\"debian_slim(\\\"3.11\\\")\")\n"));
}

#[test]
fn modules_importing_each_other_stop() {
    let workspace = Workspace::new();
    workspace.write("a.img", "import \"./b\" as b;\n");
    workspace.write("b.img", "import \"./a\" as a;\n");
    let (code, stderr) = check(&workspace, "import \"./a\" as a;\ndebian_slim(\"3.11\")\n");
    assert_eq!(code, 1, "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn scripts_cannot_reach_host_files_or_commands() {
    for call in [
        "open_file(\"/etc/passwd\")",
        "read_file(\"/etc/passwd\")",
        "system(\"id\")",
        "exec(\"id\")",
    ] {
        let stderr = check_error(&format!("{call};\ndebian_slim(\"3.11\")\n"));
        assert!(
            stderr.contains("unknown function") || stderr.contains("not found"),
            "{call}: {stderr}"
        );
    }
}

#[test]
fn growing_array_stops_at_size_limit() {
    let stderr = check_error("let items = [];\nloop { items.push(\"item\"); }\n");
    assert!(
        stderr.contains("size of array/blob exceeds its limit"),
        "{stderr}"
    );
}

#[test]
fn growing_map_of_large_strings_stops_at_memory_limit() {
    // Each entry is 512 KiB, under the string limit, and the map never
    // reaches its entry limit before the process would hold gigabytes.
    insta::assert_snapshot!(check_error(
        "let text = \"y\";\nfor i in 0..19 { text += text; }\nlet map = #{};\nlet i = 0;\nloop { map[`k${i}`] = text + `${i}`; i += 1; }\n"
    ));
}

#[test]
fn imports_read_only_scripts() {
    let workspace = Workspace::new();
    workspace.write("notes.txt", "a line that must not be shown\n");
    workspace.write("token", "another line that must not be shown\n");
    for path in ["./notes.txt", "./token"] {
        let (code, stderr) = check(
            &workspace,
            &format!("import \"{path}\" as notes;\ndebian_slim(\"3.11\")\n"),
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("not found"), "{stderr}");
        assert!(!stderr.contains("must not be shown"), "{stderr}");
    }

    // An absolute import path is read as it is, not under the script's folder.
    let common = workspace.write("lib/common.img", "fn greeting() { \"hi\" }\n");
    let absolute = common.with_extension("");
    let (code, stderr) = check(
        &workspace,
        &format!(
            "import \"{}\" as common;\ndebian_slim(\"3.11\").env(#{{ GREETING: common::greeting() }})\n",
            absolute.display()
        ),
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn import_chain_stops_at_module_limit() {
    let workspace = Workspace::new();
    for number in 0..1_100 {
        workspace.write(
            &format!("m{number}.img"),
            &format!("import \"./m{}\" as next;\n", number + 1),
        );
    }
    workspace.write("m1100.img", "fn last() { 1 }\n");
    let (code, stderr) = check(&workspace, "import \"./m0\" as m;\ndebian_slim(\"3.11\")\n");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("imported more than 1000 modules, the limit"),
        "{stderr}"
    );
}

#[test]
fn parent_folder_in_image_path_is_refused() {
    insta::assert_snapshot!(check_error(
        "debian_slim(\"3.11\")\n    .add_local_dir(\"./src\", \"/app/../..\", #{ copy: true })\n"
    ));
}
