//! `imgscript repl`, driven in a pseudo-terminal as a user types, and with
//! entries piped in.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use expectrl::{ControlCode, Expect, Regex, Session};

/// Starts the REPL in a pseudo-terminal in the workspace, with its own
/// history file and no colours.
fn start(workspace: &Workspace, file: Option<&str>) -> expectrl::session::OsSession {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_imgscript"));
    command
        .arg("repl")
        .args(file)
        .current_dir(workspace.path())
        .env("XDG_DATA_HOME", workspace.path().join("data"))
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    let mut session = Session::spawn(command).expect("the REPL starts in a pty");
    session.set_expect_timeout(Some(Duration::from_secs(120)));
    session.expect("img> ").expect("the first prompt");
    session
}

#[test]
fn multi_line_entry_continues_until_complete() {
    let workspace = Workspace::new();
    let mut repl = start(&workspace, None);
    repl.send_line("let base = debian_slim(").unwrap();
    repl.send_line("    \"3.11\")").unwrap();
    repl.expect("img> ").unwrap();
    repl.send_line("base.").unwrap();
    repl.send_line("env(#{ STAGE: \"one\" })").unwrap();
    repl.expect("Image with 2 steps:").unwrap();
    repl.expect("env STAGE").unwrap();
    repl.expect("img> ").unwrap();
    repl.send(ControlCode::EndOfTransmission).unwrap();
    repl.expect(expectrl::Eof).unwrap();
}

#[test]
fn tab_completes_a_method_after_a_dot() {
    let workspace = Workspace::new();
    let mut repl = start(&workspace, None);
    repl.send_line("let base = debian_slim(\"3.11\")").unwrap();
    repl.expect("img> ").unwrap();
    repl.send("base.apt_ins\t").unwrap();
    repl.expect("tall(").unwrap();
    repl.send("[\"git\"])\r").unwrap();
    repl.expect("apt_install git").unwrap();
    repl.expect("img> ").unwrap();
    repl.send(ControlCode::EndOfTransmission).unwrap();
    repl.expect(expectrl::Eof).unwrap();
}

#[test]
fn session_goes_on_after_an_error() {
    let workspace = Workspace::new();
    let mut repl = start(&workspace, None);
    repl.send_line("debian_slim(\"3.11\").apt_instal([\"git\"])")
        .unwrap();
    repl.expect("did you mean `apt_install`?").unwrap();
    repl.expect("img> ").unwrap();
    repl.send_line("40 + 2").unwrap();
    repl.expect("42").unwrap();
    repl.send_line(":quit").unwrap();
    repl.expect(expectrl::Eof).unwrap();
}

#[test]
fn build_then_save_gives_the_same_image() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let mut repl = start(&workspace, None);
    repl.send_line(format!(
        "let app = debian_slim(\"3.11\").env(#{{ NONCE: \"{}\" }}).run_commands([\"echo built > /built.txt\"])",
        nonce()
    ))
    .unwrap();
    repl.expect("img> ").unwrap();
    repl.send_line(":build app").unwrap();
    let built = repl.expect(Regex("sha256:[0-9a-f]{64}")).unwrap();
    let id = String::from_utf8_lossy(built.get(0).unwrap()).to_string();
    repl.expect("img> ").unwrap();
    repl.send_line(":save saved.img").unwrap();
    repl.expect("saved 1 entries").unwrap();
    repl.send_line(":quit").unwrap();
    repl.expect(expectrl::Eof).unwrap();

    let result = build(&workspace.path().join("saved.img"), &[]);
    assert_eq!(image_id(&result), id);
}

#[test]
fn shell_runs_commands_in_the_image() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    workspace.write("notes/todo.txt", "attached file\n");
    let containers_before = all_containers();
    let mut repl = start(&workspace, None);
    repl.send_line("let app = debian_slim(\"3.11\").add_local_dir(\"./notes\", \"/notes\")")
        .unwrap();
    repl.expect("img> ").unwrap();
    repl.send_line(":shell app").unwrap();
    // Typed before the shell's prompt, the line would still go to the
    // REPL's line editor, which reads ahead.
    repl.expect("# ").unwrap();
    repl.send_line("echo shell-$((40 + 2)); cat /notes/todo.txt")
        .unwrap();
    repl.expect("shell-42").unwrap();
    repl.expect("attached file").unwrap();
    repl.send_line("exit").unwrap();
    repl.expect("img> ").unwrap();
    repl.send_line("1 + 1").unwrap();
    repl.expect("2").unwrap();
    repl.expect("img> ").unwrap();
    repl.send(ControlCode::EndOfTransmission).unwrap();
    repl.expect(expectrl::Eof).unwrap();
    let left: Vec<String> = all_containers()
        .into_iter()
        .filter(|container| !containers_before.contains(container))
        .collect();
    assert!(left.is_empty(), "the shell's container stayed: {left:?}");
}

#[test]
fn piped_entries_run_without_prompts() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    workspace.write("base.img", "let base = debian_slim(\"3.11\");\n");
    let mut child = imgscript()
        .arg("repl")
        .arg("base.img")
        .current_dir(workspace.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"let app = base\n    .env(#{ A: \"1\" })\nnosuch()\napp\n:ls app /etc/os-release\n:help env\nfn broken(image) {\n    image.nope()\n}\nbroken(app)\n",
        )
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(1), "entries failed: {stderr}");
    assert!(!stdout.contains("img> "), "{stdout}");
    // The error inside the function points into the entry that defined it.
    assert!(stderr.contains("image.nope()"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "no colours on a pipe: {stderr}");
    assert!(
        stderr.contains("unknown function or method `nosuch`"),
        "{stderr}"
    );
    assert!(stdout.contains("Image with 2 steps:"), "{stdout}");
    assert!(stdout.contains("/etc/os-release"), "{stdout}");
    assert!(
        stdout.contains("image.env(variables, [options])"),
        "{stdout}"
    );
}

#[test]
fn ctrl_c_stops_a_build() {
    let _docker = docker_test();
    let workspace = Workspace::new();
    let containers_before = all_containers();
    let mut repl = start(&workspace, None);
    repl.send_line(format!(
        "let slow = debian_slim(\"3.11\").run_commands([\"echo {} && sleep 60\"])",
        nonce()
    ))
    .unwrap();
    repl.expect("img> ").unwrap();
    // rustyline drops keys that arrive before it switches the terminal to
    // raw mode, a moment after it draws the prompt.
    std::thread::sleep(Duration::from_millis(300));
    repl.send_line(":build slow").unwrap();
    repl.expect("building").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    repl.send(ControlCode::EndOfText).unwrap();
    repl.expect("interrupted").unwrap();
    repl.expect("img> ").unwrap();
    repl.send_line("6 * 7").unwrap();
    repl.expect("42").unwrap();
    let left: Vec<String> = all_containers()
        .into_iter()
        .filter(|container| !containers_before.contains(container))
        .collect();
    assert!(left.is_empty(), "the build's container stayed: {left:?}");
    repl.send_line(":quit").unwrap();
    repl.expect(expectrl::Eof).unwrap();
}
