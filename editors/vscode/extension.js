// Starts `imgscript lsp` for .img files when the imgscript program can be
// found; without it, the extension still gives highlighting and snippets.
const { execFileSync } = require("child_process");
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function findProgram() {
  const configured = vscode.workspace.getConfiguration("imgscript").get("path") || "imgscript";
  try {
    execFileSync(configured, ["--version"], { stdio: "ignore" });
    return configured;
  } catch (error) {
    return undefined;
  }
}

function activate(context) {
  const program = findProgram();
  if (!program) {
    return;
  }
  const server = { command: program, args: ["lsp"], transport: TransportKind.stdio };
  client = new LanguageClient(
    "imgscript",
    "imgscript language server",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "imgscript" }] }
  );
  context.subscriptions.push(client);
  client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
