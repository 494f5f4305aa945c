//! Evaluation of `.img` scripts with Rhai.
//!
//! The engine gets the builder functions of [`api`], runs the script once
//! and hands back the image values of its last expression. Nothing here
//! talks to Docker. Errors from Rhai and from builder calls become
//! [`ScriptError`]s that point at the script.

#[macro_use]
mod api;
mod bases;
mod config_steps;
mod files;
mod limits;
mod modules;
mod options;
mod run_steps;
mod secrets;

use options::friendly_type;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, Position};

use crate::diagnostics::{span_at, ScriptError};
use crate::image::{Image, ScriptSource};
use crate::suggest::did_you_mean;
use modules::{ScriptModules, Sources};

pub use api::builder_names;
pub use modules::stdlib_names;

/// The images a script builds: one image, or named images.
#[derive(Debug, Clone)]
pub enum Target {
    Single(Image),
    Named(BTreeMap<String, Image>),
}

impl Target {
    /// Returns the images to build: all of them, or the one `name` selects.
    pub fn select(&self, name: Option<&str>) -> Result<Vec<(Option<String>, Image)>, String> {
        match (self, name) {
            (Target::Single(image), None) => Ok(vec![(None, image.clone())]),
            (Target::Single(_), Some(name)) => Err(format!(
                "--target {name} needs a script whose last expression is a map of names to images, but this script returns a single image; drop --target to build it"
            )),
            (Target::Named(images), None) => Ok(images
                .iter()
                .map(|(name, image)| (Some(name.clone()), image.clone()))
                .collect()),
            (Target::Named(images), Some(name)) => match images.get(name) {
                Some(image) => Ok(vec![(Some(name.to_string()), image.clone())]),
                None => {
                    let names: Vec<&str> = images.keys().map(String::as_str).collect();
                    let hint = match did_you_mean(name, names.iter().copied()) {
                        Some(close) => format!("; did you mean `{close}`?"),
                        None => String::new(),
                    };
                    Err(format!(
                        "the script has no target named `{name}`{hint} (targets: {})",
                        names.join(", ")
                    ))
                }
            },
        }
    }
}

/// A failure inside a builder call, raised to Rhai as a runtime error and
/// turned into a [`ScriptError`] at the call's position.
#[derive(Debug, Clone)]
pub struct CallError {
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

impl CallError {
    pub fn new(message: impl Into<String>) -> Self {
        CallError {
            message: message.into(),
            label: "here".to_string(),
            help: None,
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(super) fn into_rhai(self, position: Position) -> Box<EvalAltResult> {
        Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(self), position))
    }
}

/// Method chains are one level of nesting per link, so long scripts need
/// more depth than Rhai's default.
const MAX_EXPRESSION_DEPTH: usize = 10_000;

/// Stack for the thread that evaluates scripts, so that deep chains reach
/// [`MAX_EXPRESSION_DEPTH`] before they overflow the stack.
pub(crate) const EVALUATION_STACK_BYTES: usize = 512 * 1024 * 1024;

/// Reads and evaluates the script at `path`.
pub fn evaluate_file(path: &Path) -> Result<Target, crate::diagnostics::Error> {
    let text = std::fs::read_to_string(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => crate::diagnostics::Error::Usage {
            message: format!("script {} not found", path.display()),
            help: "pass the path of an .img script".into(),
        },
        _ if path.is_dir() => crate::diagnostics::Error::Usage {
            message: format!("{} is a folder, not a script", path.display()),
            help: "pass the path of an .img script, such as build.img".into(),
        },
        _ => crate::diagnostics::Error::Read {
            path: path.to_path_buf(),
            reason: error.to_string(),
        },
    })?;
    evaluate_text(path, text).map_err(crate::diagnostics::Error::Script)
}

/// Evaluates `text` as the script at `path`, whose folder relative paths
/// start from. The file itself is not read, so an editor can check text
/// that is not saved yet.
pub fn evaluate_text(path: &Path, text: String) -> Result<Target, Box<ScriptError>> {
    run_on_evaluation_thread(path, text, evaluate)
}

/// Checks `text` as `imgscript check` does, except that a file that only
/// defines functions passes as a module that others import, since it has
/// no image to end with.
pub fn check_text(path: &Path, text: String) -> Result<(), Box<ScriptError>> {
    run_on_evaluation_thread(path, text, |script| {
        let mut session = Session::new(Arc::clone(&script));
        let value = session.eval(Arc::clone(&script))?;
        let is_module = value.is_unit() && !session.functions().is_empty();
        match is_module {
            true => Ok(None),
            false => target_from(&script, value).map(Some),
        }
    })
    .map(|_| ())
}

/// Runs `work` on the script at `path` with `text`, on a thread with the
/// stack that deep method chains need.
fn run_on_evaluation_thread<T: Send + 'static>(
    path: &Path,
    text: String,
    work: impl FnOnce(Arc<ScriptSource>) -> Result<T, Box<ScriptError>> + Send + 'static,
) -> Result<T, Box<ScriptError>> {
    let script = Arc::new(ScriptSource {
        path: path.to_path_buf(),
        folder: script_folder(path),
        text,
    });

    let thread_script = Arc::clone(&script);
    std::thread::Builder::new()
        .name("script".into())
        .stack_size(EVALUATION_STACK_BYTES)
        .spawn(move || work(thread_script))
        .expect("spawning the script thread")
        .join()
        .unwrap_or_else(|_| {
            Err(Box::new(ScriptError {
                message: "internal error: evaluating the script panicked".into(),
                source_code: named_source(&script),
                span: (0, 0).into(),
                label: "while evaluating this script".into(),
                help: Some("please report this as a bug in imgscript".into()),
            }))
        })
}

fn evaluate(script: Arc<ScriptSource>) -> Result<Target, Box<ScriptError>> {
    let mut session = Session::new(Arc::clone(&script));
    let value = session.eval(Arc::clone(&script))?;
    target_from(&script, value)
}

/// An engine with the builder functions, and the variables, functions and
/// imported modules that earlier evaluations left: one script, or the
/// entries of a REPL session one after another.
pub struct Session {
    engine: Engine,
    sources: Arc<Sources>,
    scope: rhai::Scope<'static>,
    /// Names of the functions that evaluations defined.
    functions: Vec<String>,
    /// Name and arity of each function the last evaluation defined.
    last_defined: Vec<(String, usize)>,
    /// The folder that relative paths of builders and imports start from.
    folder: PathBuf,
}

impl Session {
    /// Starts a session whose relative paths resolve against the folder of
    /// `main`, the script (or, in the REPL, a stand-in for the entries).
    pub fn new(main: Arc<ScriptSource>) -> Self {
        let sources = Arc::new(Sources::default());
        let mut engine = Engine::new();
        engine.set_max_expr_depths(MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_DEPTH);
        limits::apply(&mut engine);
        engine.set_fail_on_invalid_map_property(true);
        engine.set_strict_variables(true);
        engine.set_module_resolver(ScriptModules::new(
            Arc::clone(&sources),
            main.folder.clone(),
        ));
        let folder = main.folder.clone();
        api::register(&mut engine, main, Arc::clone(&sources));
        Session {
            engine,
            sources,
            scope: rhai::Scope::new(),
            functions: Vec::new(),
            last_defined: Vec::new(),
            folder,
        }
    }

    /// Returns the folder that relative paths resolve against.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Evaluates `script` with the variables and functions of earlier
    /// evaluations, and keeps its own for later ones when it succeeds.
    pub fn eval(&mut self, script: Arc<ScriptSource>) -> Result<Dynamic, Box<ScriptError>> {
        let name = modules::source_name(&script.path);
        self.sources.insert(name.clone(), Arc::clone(&script));
        let to_error = |error: &EvalAltResult| to_script_error(&self.sources, &script, error);

        let ast = self
            .engine
            .compile_with_scope(&self.scope, &script.text)
            .map_err(|error| to_error(&EvalAltResult::from(error)))?;
        let mut ast = ast;
        ast.set_source(name.as_str());
        let value = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &ast)
            .map_err(|error| to_error(&error))?;

        self.keep_functions(&ast);
        self.keep_imports(&script.text, &name);
        Ok(value)
    }

    /// Makes the functions that `ast` defines callable in later
    /// evaluations. They become a module named after their source, so that
    /// errors and progress lines inside them point into the text that
    /// defined them, not into the entry that calls them. A later definition
    /// of the same name and arity replaces an earlier one.
    fn keep_functions(&mut self, ast: &rhai::AST) {
        let functions = ast.clone_functions_only();
        self.last_defined = functions
            .iter_functions()
            .map(|function| (function.name.to_string(), function.params.len()))
            .collect();
        if functions.iter_functions().next().is_none() {
            return;
        }
        let module = rhai::Module::eval_ast_as_new(rhai::Scope::new(), &functions, &self.engine);
        if let Ok(module) = module {
            self.engine.register_global_module(module.into());
        }
        for function in functions.iter_functions() {
            if !self.functions.iter().any(|known| known == function.name) {
                self.functions.push(function.name.to_string());
            }
        }
    }

    /// Name and arity of each function the last evaluation defined.
    pub fn last_defined(&self) -> &[(String, usize)] {
        &self.last_defined
    }

    /// Names of the functions that evaluations defined.
    pub fn functions(&self) -> &[String] {
        &self.functions
    }

    /// Names of the variables in scope.
    pub fn variables(&self) -> Vec<String> {
        self.scope
            .iter_raw()
            .map(|(name, _, _)| name.to_string())
            .collect()
    }

    /// Values of the variables in scope that are images, by name.
    pub fn images(&self) -> Vec<(String, Image)> {
        self.scope
            .iter_raw()
            .filter_map(|(name, _, value)| {
                value
                    .clone()
                    .try_cast::<Image>()
                    .map(|image| (name.to_string(), image))
            })
            .collect()
    }

    /// Makes the modules that `text` imports (`import "x" as y;`) callable
    /// as `y::…` in later evaluations, whose own scope would not have them.
    fn keep_imports(&mut self, text: &str, importer: &str) {
        for (path, alias) in imports(text) {
            let resolved = self.engine.module_resolver().resolve(
                &self.engine,
                Some(importer),
                &path,
                Position::NONE,
            );
            if let Ok(module) = resolved {
                self.engine.register_static_module(alias, module);
            }
        }
    }
}

/// Checks whether `text` fails to parse only because it stops too early: at an
/// open bracket or string, or after a trailing `.`, so that more lines may
/// complete it.
pub fn is_incomplete(text: &str) -> bool {
    if text.trim_end().ends_with('.') {
        return true;
    }
    let mut engine = Engine::new_raw();
    engine.set_max_expr_depths(MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_DEPTH);
    let Err(error) = engine.compile(text) else {
        return false;
    };
    match error.err_type() {
        rhai::ParseErrorType::UnexpectedEOF
        | rhai::ParseErrorType::BadInput(rhai::LexError::UnterminatedString) => true,
        // Inside an open block, Rhai reports the missing `;` of the
        // statement before the missing `}`.
        rhai::ParseErrorType::MissingToken(_, _) => {
            unclosed_brackets(text) > 0 && only_space_after(text, error.position())
        }
        _ => false,
    }
}

/// Counts the brackets of `text` that are opened and not closed, outside
/// strings and comments.
fn unclosed_brackets(text: &str) -> i64 {
    let mut depth = 0i64;
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(_) if c == '\\' => {
                chars.next();
            }
            Some(open) if c == open => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '`' | '\'' => quote = Some(c),
                '/' if chars.peek() == Some(&'/') => {
                    while chars.next_if(|next| *next != '\n').is_some() {}
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            },
        }
    }
    depth
}

/// Checks whether nothing but white space follows `position` in `text`, so that
/// an error there means the text stopped early rather than went wrong.
fn only_space_after(text: &str, position: Position) -> bool {
    let (Some(line), Some(column)) = (position.line(), position.position()) else {
        return true;
    };
    let mut lines = text.split('\n').skip(line - 1);
    let rest_of_line: String = lines
        .next()
        .unwrap_or_default()
        .chars()
        .skip(column - 1)
        .collect();
    rest_of_line.trim().is_empty() && lines.all(|later| later.trim().is_empty())
}

/// Lists the `import "path" as alias;` statements of a script, as pairs.
fn imports(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for statement in text.split(';') {
        let words: Vec<&str> = statement.split_whitespace().collect();
        if let ["import", path, "as", alias] = words.as_slice() {
            let path = path.trim_matches('"');
            found.push((path.to_string(), alias.to_string()));
        }
    }
    found
}

/// Returns the folder of the script's real file, following symlinks, so a
/// linked script finds the files beside its target.
pub(crate) fn script_folder(path: &Path) -> PathBuf {
    let absolute = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf());
    absolute.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn named_source(script: &ScriptSource) -> miette::NamedSource<String> {
    miette::NamedSource::new(script.path.display().to_string(), script.text.clone())
}

fn target_from(script: &ScriptSource, value: Dynamic) -> Result<Target, Box<ScriptError>> {
    let last_line = script.text.trim_end().lines().count().max(1);
    let error_at_end = |message: String| {
        Box::new(ScriptError {
            message,
            source_code: named_source(script),
            span: span_at(&script.text, last_line, 1),
            label: "the last expression".into(),
            help: Some("end the script with an image, such as `debian_slim(\"3.11\").apt_install([\"git\"])`, or a map such as `#{ app: app, worker: worker }`".into()),
        })
    };

    if let Some(image) = value.clone().try_cast::<Image>() {
        return Ok(Target::Single(image));
    }
    let type_name = value.type_name().to_string();
    let Some(map) = value.try_cast::<rhai::Map>() else {
        return Err(error_at_end(format!(
            "the script must end with an Image or a map of names to Images, but it ends with {}",
            friendly_type(&type_name)
        )));
    };
    if map.is_empty() {
        return Err(error_at_end(
            "the script ends with an empty map, so there is nothing to build".into(),
        ));
    }

    let mut images = BTreeMap::new();
    for (name, value) in map {
        let type_name = value.type_name().to_string();
        match value.try_cast::<Image>() {
            Some(image) => {
                images.insert(name.to_string(), image);
            }
            None => {
                return Err(error_at_end(format!(
                    "target `{name}` must be an Image, but it is {}",
                    friendly_type(&type_name)
                )))
            }
        }
    }
    Ok(Target::Named(images))
}

/// Turns any Rhai error into a diagnostic that points at the script.
fn to_script_error(
    sources: &Sources,
    main: &Arc<ScriptSource>,
    error: &EvalAltResult,
) -> Box<ScriptError> {
    // Errors raised inside functions and modules arrive wrapped, and the
    // innermost one carries the real cause and position. Its position is in
    // the text of the last function or module passed on the way in.
    let mut error = error;
    let mut script = Arc::clone(main);
    loop {
        let (source, inner) = match error {
            EvalAltResult::ErrorInFunctionCall(_, source, inner, _) => (source, inner),
            EvalAltResult::ErrorInModule(source, inner, _) => (source, inner),
            _ => break,
        };
        if let Some(found) = sources.get(source) {
            script = found;
        }
        error = inner;
    }
    let script = script.as_ref();

    let position = error.position();
    let (line, column) = (
        position.line().unwrap_or(1),
        position.position().unwrap_or(1),
    );
    let mut diagnostic = ScriptError {
        message: String::new(),
        source_code: named_source(script),
        span: span_at(&script.text, line, column),
        label: "here".into(),
        help: None,
    };

    match error {
        EvalAltResult::ErrorRuntime(value, _) if value.is::<CallError>() => {
            let call = value.clone_cast::<CallError>();
            diagnostic.message = call.message;
            diagnostic.label = call.label;
            diagnostic.help = call.help;
        }
        EvalAltResult::ErrorParsing(rhai::ParseErrorType::VariableUndefined(name), _) => {
            describe_undefined_variable(name, &script.text, &mut diagnostic);
        }
        EvalAltResult::ErrorParsing(parse_error, _) => {
            diagnostic.message = format!("syntax error: {parse_error}");
            diagnostic.label = "syntax error".into();
        }
        EvalAltResult::ErrorFunctionNotFound(signature, _) => {
            describe_missing_function(signature, &mut diagnostic);
        }
        EvalAltResult::ErrorVariableNotFound(name, _) => {
            describe_undefined_variable(name, &script.text, &mut diagnostic);
        }
        EvalAltResult::ErrorModuleNotFound(detail, _) => {
            diagnostic.message = format!("module not found: {detail}");
            diagnostic.label = "imported here".into();
        }
        other if limits::describe(other).is_some() => {
            let (message, help) = limits::describe(other).expect("checked by the guard");
            diagnostic.message = message;
            diagnostic.help = Some(help);
        }
        other => {
            diagnostic.message = other.to_string();
            if let Some(stripped) = diagnostic.message.strip_suffix(&format!(" ({position})")) {
                diagnostic.message = stripped.to_string();
            }
        }
    }
    Box::new(diagnostic)
}

fn describe_undefined_variable(name: &str, text: &str, diagnostic: &mut ScriptError) {
    diagnostic.message = format!("variable `{name}` is not defined");
    diagnostic.label = "not defined".into();

    // `name=value` inside a call is Python's keyword argument, which Rhai
    // does not have.
    let after = text
        .get(diagnostic.span.offset() + diagnostic.span.len()..)
        .unwrap_or_default()
        .trim_start();
    if after.starts_with('=') && !after.starts_with("==") {
        diagnostic.label = "a keyword argument?".into();
        diagnostic.help = Some(format!(
            "scripts have no keyword arguments: pass the value alone, such as debian_slim(\"3.11\"), and options as a map last, such as #{{ {name}: ... }}"
        ));
        return;
    }
    diagnostic.help = Some(match did_you_mean(name, builder_names()) {
        Some(close) => format!("did you mean the function `{close}(...)`?"),
        None => format!(
            "define it with `let {name} = ...;` first, or, to pass text, quote it: \"{name}\""
        ),
    });
}

/// Explains a call that matched no function: either the name is unknown, or
/// the name exists and the argument types do not fit.
fn describe_missing_function(signature: &str, diagnostic: &mut ScriptError) {
    let name = signature.split(" (").next().unwrap_or(signature).trim();
    let arguments = signature
        .strip_prefix(name)
        .map(str::trim)
        .unwrap_or_default()
        .replace("&str | ImmutableString | String", "string")
        .replace("ImmutableString", "string")
        .replace("imgscript::image::Image", "Image")
        .replace("imgscript::secret::Secret", "Secret")
        .replace("rhai::Map", "map")
        .replace("Map", "map")
        .replace("rhai::Array", "array")
        .replace("Array", "array")
        .replace("i64", "integer")
        .replace("f64", "number");

    if let Some(usage) = api::usage(name) {
        diagnostic.message = format!("wrong arguments for `{name}`: got {arguments}");
        diagnostic.label = "no form of this function takes these arguments".into();
        diagnostic.help = Some(format!("use {usage}"));
        return;
    }

    diagnostic.message = format!("unknown function or method `{name}`");
    diagnostic.label = "not defined".into();
    diagnostic.help =
        did_you_mean(name, builder_names()).map(|close| format!("did you mean `{close}`?"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every function a script can call is in the API description, and
    /// every builder the description names can be called.
    #[test]
    fn engine_and_api_description_agree() {
        let session = Session::new(Arc::new(ScriptSource {
            path: PathBuf::from("test.img"),
            folder: std::env::temp_dir(),
            text: String::new(),
        }));
        let mut registered: Vec<String> = session
            .engine
            .gen_fn_signatures(false)
            .into_iter()
            .map(|signature| signature.split('(').next().unwrap_or_default().to_string())
            .collect();
        registered.sort();
        registered.dedup();
        let mut described: Vec<String> = crate::api_description::builders()
            .iter()
            .map(|builder| builder.name.to_string())
            .collect();
        described.sort();
        assert_eq!(registered, described);
    }

    #[test]
    fn unfinished_entries_are_incomplete() {
        for text in [
            "debian_slim(",
            "debian_slim(\"3.11\")\n    .apt_install([\"git\",",
            "debian_slim().",
            "let x = #{ a: 1",
            "\"open string",
            "fn f() {",
            "fn f(image) {\n  image.env(#{ B: \"2\" })",
        ] {
            assert!(is_incomplete(text), "{text:?} is incomplete");
        }
        for text in [
            "debian_slim()",
            "let x = 1;",
            "debian_slim())",
            "1 +* 2",
            "",
        ] {
            assert!(!is_incomplete(text), "{text:?} is complete or wrong");
        }
    }
}
