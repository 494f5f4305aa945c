//! `imgscript lsp`, driven over stdio by a small client that speaks the
//! Language Server Protocol as an editor does.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn start() -> Self {
        let mut child = imgscript()
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("imgscript lsp starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = 0usize;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 {
                        return;
                    }
                    let header = header.trim();
                    if header.is_empty() {
                        break;
                    }
                    if let Some(value) = header.strip_prefix("Content-Length: ") {
                        length = value.parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let _ = sender.send(serde_json::from_slice(&body).unwrap());
            }
        });
        let mut client = Client {
            child,
            stdin,
            messages,
            next_id: 1,
        };
        client.request("initialize", json!({ "capabilities": {} }));
        client.notify("initialized", json!({}));
        client
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and returns its result, skipping notifications.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let message = self.receive();
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{message}");
                return message["result"].clone();
            }
        }
    }

    /// Waits for the next notification of `method`.
    fn notification(&mut self, method: &str) -> Value {
        loop {
            let message = self.receive();
            if message["method"] == json!(method) {
                return message["params"].clone();
            }
        }
    }

    fn receive(&mut self) -> Value {
        self.messages
            .recv_timeout(Duration::from_secs(30))
            .expect("the server answers within 30 s")
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "imgscript", "version": 1, "text": text } }),
        );
    }

    fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        let status = self.child.wait().unwrap();
        assert!(status.success());
    }
}

fn uri(workspace: &Workspace, name: &str) -> String {
    format!("file://{}", workspace.path().join(name).display())
}

#[test]
fn diagnostics_locate_and_clear_errors() {
    let workspace = Workspace::new();
    let document = uri(&workspace, "build.img");
    let mut client = Client::start();
    client.open(
        &document,
        "let base = debian_slim(\"3.11\");\nbase.apt_instal([\"git\"])\n",
    );
    let published = client.notification("textDocument/publishDiagnostics");
    assert_eq!(published["uri"], json!(document));
    let diagnostic = &published["diagnostics"][0];
    assert_eq!(
        diagnostic["range"],
        json!({ "start": { "line": 1, "character": 5 }, "end": { "line": 1, "character": 15 } })
    );
    let message = diagnostic["message"].as_str().unwrap();
    assert!(
        message.contains("unknown function or method `apt_instal`"),
        "{message}"
    );
    assert!(message.contains("did you mean `apt_install`?"), "{message}");

    client.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": document, "version": 2 },
            "contentChanges": [{ "text": "let base = debian_slim(\"3.11\");\nbase.apt_install([\"git\"])\n" }]
        }),
    );
    let published = client.notification("textDocument/publishDiagnostics");
    assert_eq!(published["diagnostics"], json!([]));
    client.stop();
}

#[test]
fn completion_after_a_dot_lists_image_methods() {
    let workspace = Workspace::new();
    let document = uri(&workspace, "build.img");
    let mut client = Client::start();
    client.open(&document, "let base = debian_slim(\"3.11\");\nbase.\n");
    let result = client.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": document }, "position": { "line": 1, "character": 5 } }),
    );
    let labels: Vec<&str> = result
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["label"].as_str().unwrap())
        .collect();
    for method in ["apt_install", "pip_install", "run_commands", "env"] {
        assert!(labels.contains(&method), "{labels:?}");
    }
    assert!(!labels.contains(&"debian_slim"), "{labels:?}");
    client.stop();
}

#[test]
fn hover_shows_signature_and_description() {
    let workspace = Workspace::new();
    let document = uri(&workspace, "build.img");
    let mut client = Client::start();
    client.open(&document, "debian_slim(\"3.11\").apt_install([\"git\"])\n");
    let result = client.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": document }, "position": { "line": 0, "character": 24 } }),
    );
    let value = result["contents"]["value"].as_str().unwrap();
    assert!(
        value.contains("image.apt_install(packages, [options])"),
        "{value}"
    );
    assert!(value.contains("install_recommends"), "{value}");
    assert_eq!(
        result["range"],
        json!({ "start": { "line": 0, "character": 20 }, "end": { "line": 0, "character": 31 } })
    );
    client.stop();
}

#[test]
fn definition_finds_variables_and_imported_modules() {
    let workspace = Workspace::new();
    workspace.write("common.img", "fn base() { debian_slim(\"3.11\") }\n");
    let document = uri(&workspace, "build.img");
    let mut client = Client::start();
    client.open(
        &document,
        "import \"./common\" as common;\nlet app = common::base();\napp.env(#{ A: \"1\" })\n",
    );
    let result = client.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": document }, "position": { "line": 2, "character": 1 } }),
    );
    assert_eq!(result["uri"], json!(document));
    assert_eq!(
        result["range"]["start"],
        json!({ "line": 1, "character": 4 })
    );

    let result = client.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": document }, "position": { "line": 0, "character": 10 } }),
    );
    assert_eq!(result["uri"], json!(uri(&workspace, "common.img")));
    client.stop();
}

#[test]
fn module_errors_show_at_import() {
    let workspace = Workspace::new();
    workspace.write(
        "common.img",
        "fn base() {\n    debian_slim(\"3.11\").apt_instal([\"git\"])\n}\n",
    );
    let module = uri(&workspace, "common.img");
    let document = uri(&workspace, "build.img");
    let mut client = Client::start();

    // A file of functions is a module, not a script missing its image.
    client.open(&module, "fn base() {\n    debian_slim(\"3.11\")\n}\n");
    let published = client.notification("textDocument/publishDiagnostics");
    assert_eq!(published["diagnostics"], json!([]), "{published}");

    client.open(
        &document,
        "// the app\nimport \"./common\" as common;\ncommon::base()\n",
    );
    let published = loop {
        let published = client.notification("textDocument/publishDiagnostics");
        if published["uri"] == json!(document) {
            break published;
        }
    };
    let diagnostic = &published["diagnostics"][0];
    assert_eq!(diagnostic["range"]["start"]["line"], 1, "{diagnostic}");
    let message = diagnostic["message"].as_str().unwrap();
    assert!(message.contains("common.img 2:"), "{message}");
    assert!(message.contains("apt_instal"), "{message}");

    let result = client.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": document }, "position": { "line": 2, "character": 10 } }),
    );
    assert_eq!(result["uri"], json!(module));
    assert_eq!(
        result["range"]["start"],
        json!({ "line": 0, "character": 3 })
    );
    client.stop();
}

#[test]
fn completion_spans_lines_and_keeps_existing_text() {
    let workspace = Workspace::new();
    let document = uri(&workspace, "build.img");
    let mut client = Client::start();
    client.open(
        &document,
        "debian_slim(\"3.11\")\n    .pip_install([\"a\"], #{\n        find_\n    })\n    .apt_ins([\"git\"])\n",
    );
    let result = client.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": document }, "position": { "line": 2, "character": 13 } }),
    );
    let labels: Vec<&str> = result
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, vec!["find_links"]);

    // On a name already followed by `(`, the edit replaces the whole name
    // and adds no second `(`.
    let result = client.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": document }, "position": { "line": 4, "character": 8 } }),
    );
    let item = result
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["label"] == "apt_install")
        .unwrap();
    assert_eq!(item["textEdit"]["newText"], "apt_install");
    assert_eq!(
        item["textEdit"]["range"],
        json!({ "start": { "line": 4, "character": 5 }, "end": { "line": 4, "character": 12 } })
    );
    client.stop();
}
