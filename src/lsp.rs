//! `imgscript lsp`: a language server over stdin and stdout. It checks a
//! document as `imgscript check` does whenever it opens or changes, and
//! handles completion, hover and go-to-definition from the API description
//! and the document's own text. It never talks to Docker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use lsp_server::{Connection, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{Completion, GotoDefinition, HoverRequest, Request as _};
use lsp_types::{
    CompletionItem, CompletionItemKind, CompletionOptions, CompletionParams, CompletionResponse,
    Diagnostic, DiagnosticSeverity, GotoDefinitionParams, GotoDefinitionResponse, Hover,
    HoverContents, HoverParams, HoverProviderCapability, Location, MarkupContent, MarkupKind,
    OneOf, Position, PublishDiagnosticsParams, Range, ServerCapabilities,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextEdit, Uri,
};

use crate::api_description::{self, Kind};
use crate::diagnostics::Error;

/// Serves one client until it requests shutdown or closes the connection.
pub fn serve() -> Result<ExitCode, Error> {
    let (connection, threads) = Connection::stdio();
    let capabilities = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into(), "{".into(), "\"".into(), "/".into()]),
            ..CompletionOptions::default()
        }),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        ..ServerCapabilities::default()
    };
    let protocol_error = |error: lsp_server::ProtocolError| Error::Usage {
        message: format!("language server protocol error: {error}"),
        help: "imgscript lsp is started by an editor, which talks to it on stdin and stdout".into(),
    };
    connection
        .initialize(serde_json::to_value(capabilities).expect("capabilities serialize"))
        .map_err(protocol_error)?;

    let mut server = Server {
        connection: &connection,
        documents: HashMap::new(),
    };
    for message in &connection.receiver {
        match message {
            Message::Request(request) => {
                if connection
                    .handle_shutdown(&request)
                    .map_err(protocol_error)?
                {
                    break;
                }
                server.request(request);
            }
            Message::Notification(notification) => server.notification(notification),
            Message::Response(_) => {}
        }
    }
    drop(server);
    drop(connection);
    let _ = threads.join();
    Ok(ExitCode::SUCCESS)
}

struct Server<'a> {
    connection: &'a Connection,
    documents: HashMap<Uri, String>,
}

impl Server<'_> {
    fn notification(&mut self, notification: Notification) {
        match notification.method.as_str() {
            DidOpenTextDocument::METHOD => {
                if let Ok(params) = serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(
                    notification.params,
                ) {
                    let uri = params.text_document.uri;
                    self.documents
                        .insert(uri.clone(), params.text_document.text);
                    self.publish(&uri);
                }
            }
            DidChangeTextDocument::METHOD => {
                if let Ok(params) = serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(
                    notification.params,
                ) {
                    let uri = params.text_document.uri;
                    // Full sync: the last change contains the whole text.
                    if let Some(change) = params.content_changes.into_iter().last() {
                        self.documents.insert(uri.clone(), change.text);
                    }
                    self.publish(&uri);
                }
            }
            DidCloseTextDocument::METHOD => {
                if let Ok(params) = serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(
                    notification.params,
                ) {
                    let uri = params.text_document.uri;
                    self.documents.remove(&uri);
                    self.send_diagnostics(uri, Vec::new());
                }
            }
            _ => {}
        }
    }

    fn request(&mut self, request: Request) {
        let id = request.id.clone();
        let result = match request.method.as_str() {
            Completion::METHOD => serde_json::from_value::<CompletionParams>(request.params)
                .map(|params| serde_json::to_value(self.completion(params))),
            HoverRequest::METHOD => serde_json::from_value::<HoverParams>(request.params)
                .map(|params| serde_json::to_value(self.hover(params))),
            GotoDefinition::METHOD => {
                serde_json::from_value::<GotoDefinitionParams>(request.params)
                    .map(|params| serde_json::to_value(self.definition(params)))
            }
            _ => {
                self.respond(Response::new_err(
                    id,
                    lsp_server::ErrorCode::MethodNotFound as i32,
                    format!("imgscript lsp does not handle {}", request.method),
                ));
                return;
            }
        };
        let response = match result {
            Ok(Ok(value)) => Response::new_ok(id, value),
            Ok(Err(error)) | Err(error) => Response::new_err(
                id,
                lsp_server::ErrorCode::InvalidParams as i32,
                error.to_string(),
            ),
        };
        self.respond(response);
    }

    fn respond(&self, response: Response) {
        let _ = self.connection.sender.send(Message::Response(response));
    }

    /// Checks the document as `imgscript check` does and publishes the
    /// error, if any, at its place in the document.
    fn publish(&self, uri: &Uri) {
        let Some(text) = self.documents.get(uri) else {
            return;
        };
        let path = document_path(uri);
        let diagnostics = match crate::script::check_text(&path, text.clone()) {
            Ok(()) => Vec::new(),
            Err(error) => vec![diagnostic(&path, text, &error)],
        };
        self.send_diagnostics(uri.clone(), diagnostics);
    }

    fn send_diagnostics(&self, uri: Uri, diagnostics: Vec<Diagnostic>) {
        let params = PublishDiagnosticsParams {
            uri,
            diagnostics,
            version: None,
        };
        let notification = Notification::new(PublishDiagnostics::METHOD.to_string(), params);
        let _ = self
            .connection
            .sender
            .send(Message::Notification(notification));
    }

    fn completion(&self, params: CompletionParams) -> Option<CompletionResponse> {
        let position = params.text_document_position.position;
        let uri = params.text_document_position.text_document.uri;
        let text = self.documents.get(&uri)?;
        let offset = offset_of(text, position);
        let line_start = text[..offset].rfind('\n').map_or(0, |index| index + 1);
        if text[line_start..offset].contains("//") {
            return Some(CompletionResponse::Array(Vec::new()));
        }
        let folder = document_path(&uri)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();

        // The whole text before the cursor, so that an options map opened
        // on an earlier line still finds the call it belongs to.
        let prefix = &text[..offset];
        let (start, pairs) =
            crate::repl::complete(prefix, prefix.len(), &declared_variables(text), &folder);

        // Replace the whole word under the cursor, and do not repeat the
        // `(` or `:` that already follows it.
        let rest = &text[offset..];
        let word_end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let after = &rest[word_end..];
        let range = Range::new(
            position_at(text, start),
            position_at(text, offset + word_end),
        );
        let items = pairs
            .into_iter()
            .map(|pair| {
                let builder = api_description::builder(&pair.display);
                let kind = match builder.map(|builder| builder.kind) {
                    Some(Kind::Method) => CompletionItemKind::METHOD,
                    Some(_) => CompletionItemKind::FUNCTION,
                    None if pair.replacement.ends_with(": ") => CompletionItemKind::PROPERTY,
                    None if pair.display.ends_with('/') => CompletionItemKind::FOLDER,
                    None => CompletionItemKind::VARIABLE,
                };
                CompletionItem {
                    label: pair.display.clone(),
                    kind: Some(kind),
                    detail: builder.map(|builder| builder.signature()),
                    documentation: builder.map(|builder| {
                        lsp_types::Documentation::String(builder.description.to_string())
                    }),
                    text_edit: Some(lsp_types::CompletionTextEdit::Edit(TextEdit {
                        range,
                        new_text: without_repeat(&pair.replacement, after),
                    })),
                    ..CompletionItem::default()
                }
            })
            .collect();
        Some(CompletionResponse::Array(items))
    }

    fn hover(&self, params: HoverParams) -> Option<Hover> {
        let position = params.text_document_position_params.position;
        let text = self
            .documents
            .get(&params.text_document_position_params.text_document.uri)?;
        let (word, range) = word_at(text, position)?;
        let builder = api_description::builder(&word)?;
        let mut markdown = format!(
            "```rhai\n{}\n```\n\n{}",
            builder.signature(),
            builder.description
        );
        if !builder.options.is_empty() {
            markdown.push_str("\n\nOptions:\n");
            for option in builder.options {
                markdown.push_str(&format!(
                    "\n- `{}` ({}): {}",
                    option.name, option.kind, option.description
                ));
            }
        }
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value: markdown,
            }),
            range: Some(range),
        })
    }

    /// Finds where a variable or function is declared in the document, or
    /// the file an `import` names.
    fn definition(&self, params: GotoDefinitionParams) -> Option<GotoDefinitionResponse> {
        let position = params.text_document_position_params.position;
        let uri = params.text_document_position_params.text_document.uri;
        let text = self.documents.get(&uri)?;

        let line = text.lines().nth(position.line as usize)?;
        if let Some(target) = imported_file(line, &document_path(&uri)) {
            let target_uri = file_uri(&target)?;
            let start = Range::new(Position::new(0, 0), Position::new(0, 0));
            return Some(GotoDefinitionResponse::Scalar(Location::new(
                target_uri, start,
            )));
        }

        let (word, range) = word_at(text, position)?;
        if let Some(location) = module_function(text, line, range.start.character, &word, &uri) {
            return Some(GotoDefinitionResponse::Scalar(location));
        }
        for (number, line) in text.lines().enumerate() {
            for keyword in ["let ", "const ", "fn "] {
                let Some(at) = line.find(&format!("{keyword}{word}")) else {
                    continue;
                };
                let after = line[at + keyword.len() + word.len()..].chars().next();
                if after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let start = utf16_length(&line[..at + keyword.len()]);
                let range = Range::new(
                    Position::new(number as u32, start),
                    Position::new(number as u32, start + utf16_length(&word)),
                );
                return Some(GotoDefinitionResponse::Scalar(Location::new(uri, range)));
            }
        }
        None
    }
}

/// Turns a script error into a diagnostic. An error inside an imported
/// module is shown on the document's first line, naming the module.
fn diagnostic(path: &Path, text: &str, error: &crate::diagnostics::ScriptError) -> Diagnostic {
    use miette::SourceCode;

    let in_document = error.source_code.name() == path.display().to_string();
    let mut message = error.message.clone();
    if let Some(help) = &error.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let range = if in_document {
        let start = position_at(text, error.span.offset());
        let end = position_at(text, error.span.offset() + error.span.len());
        Range::new(start, end)
    } else {
        let module = PathBuf::from(error.source_code.name());
        let import_line = text.lines().position(|line| {
            imported_file(line, path).is_some_and(|file| same_file(&file, &module))
        });
        let place = error
            .source_code
            .read_span(&error.span, 0, 0)
            .ok()
            .map(|span| format!("{}:{}", span.line() + 1, span.column() + 1))
            .unwrap_or_default();
        message = format!("in {} {place}: {message}", error.source_code.name());
        match import_line {
            Some(number) => {
                let length = utf16_length(text.lines().nth(number).unwrap_or_default());
                Range::new(
                    Position::new(number as u32, 0),
                    Position::new(number as u32, length),
                )
            }
            None => Range::new(Position::new(0, 0), Position::new(0, 0)),
        }
    };
    Diagnostic {
        range,
        severity: Some(DiagnosticSeverity::ERROR),
        source: Some("imgscript".into()),
        message,
        ..Diagnostic::default()
    }
}

fn same_file(left: &Path, right: &Path) -> bool {
    let canonical =
        |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    canonical(left) == canonical(right)
}

fn document_path(uri: &Uri) -> PathBuf {
    url::Url::parse(uri.as_str())
        .ok()
        .and_then(|url| url.to_file_path().ok())
        .unwrap_or_else(|| PathBuf::from("untitled.img"))
}

fn file_uri(path: &Path) -> Option<Uri> {
    url::Url::from_file_path(path).ok()?.as_str().parse().ok()
}

/// Returns the file that `import "…"` on `line` loads, when it is a script file
/// beside the document rather than a standard library module.
fn imported_file(line: &str, document: &Path) -> Option<PathBuf> {
    let rest = line.trim_start().strip_prefix("import")?.trim_start();
    let path = rest.strip_prefix('"')?.split('"').next()?;
    if !path.starts_with('.') && !path.starts_with('/') {
        return None;
    }
    let folder = document.parent()?;
    ["img", "rhai"]
        .iter()
        .map(|extension| folder.join(format!("{path}.{extension}")))
        .chain(std::iter::once(folder.join(path)))
        .find(|candidate| candidate.is_file())
}

/// For `alias::function` with the cursor on `function`, finds `fn function`
/// in the script file that `import "…" as alias` loads.
fn module_function(
    text: &str,
    line: &str,
    word_start: u32,
    word: &str,
    uri: &Uri,
) -> Option<Location> {
    let before = &line[..byte_index(line, word_start)];
    let alias: String = before
        .strip_suffix("::")?
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let document = document_path(uri);
    let file = text.lines().find_map(|line| {
        let declares = line
            .trim_end()
            .trim_end_matches(';')
            .ends_with(&format!(" as {alias}"));
        declares.then(|| imported_file(line, &document)).flatten()
    })?;
    let module = std::fs::read_to_string(&file).ok()?;
    let (number, found) = module.lines().enumerate().find_map(|(number, line)| {
        let at = line.find(&format!("fn {word}("))?;
        Some((number, at))
    })?;
    let column = utf16_length(&module.lines().nth(number)?[..found + 3]);
    let range = Range::new(
        Position::new(number as u32, column),
        Position::new(number as u32, column + utf16_length(word)),
    );
    Some(Location::new(file_uri(&file)?, range))
}

/// Names declared with `let`, `const` or `fn` anywhere in the document.
fn declared_variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        for keyword in ["let ", "const "] {
            if let Some(rest) = line.strip_prefix(keyword) {
                let name: String = rest
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// Drops the `(` or `: ` that ends a completion when the text after the
/// word already has it.
fn without_repeat(replacement: &str, after: &str) -> String {
    if let Some(name) = replacement.strip_suffix('(') {
        if after.starts_with('(') {
            return name.to_string();
        }
    }
    if let Some(key) = replacement.strip_suffix(": ") {
        if after.trim_start().starts_with(':') {
            return key.to_string();
        }
    }
    replacement.to_string()
}

/// Returns the byte offset in `text` of an LSP position.
fn offset_of(text: &str, position: Position) -> usize {
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        if number == position.line as usize {
            return offset + byte_index(line.trim_end_matches('\n'), position.character);
        }
        offset += line.len();
    }
    text.len()
}

/// Returns the identifier under `position`, with its range.
fn word_at(text: &str, position: Position) -> Option<(String, Range)> {
    let line = text.lines().nth(position.line as usize)?;
    let cursor = byte_index(line, position.character);
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let start = line[..cursor]
        .rfind(|c: char| !is_word(c))
        .map_or(0, |index| index + 1);
    let end = line[cursor..]
        .find(|c: char| !is_word(c))
        .map_or(line.len(), |index| cursor + index);
    if start >= end {
        return None;
    }
    let range = Range::new(
        Position::new(position.line, utf16_length(&line[..start])),
        Position::new(position.line, utf16_length(&line[..end])),
    );
    Some((line[start..end].to_string(), range))
}

/// Returns the byte index in `line` of an LSP character offset, which counts
/// UTF-16 code units.
fn byte_index(line: &str, character: u32) -> usize {
    let mut units = 0u32;
    for (index, c) in line.char_indices() {
        if units >= character {
            return index;
        }
        units += c.len_utf16() as u32;
    }
    line.len()
}

fn utf16_length(text: &str) -> u32 {
    text.chars().map(|c| c.len_utf16() as u32).sum()
}

/// Returns the LSP position of a byte offset in `text`.
fn position_at(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    Position::new(line, utf16_length(&before[line_start..]))
}
