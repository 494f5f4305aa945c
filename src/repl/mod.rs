//! `imgscript repl`: build an image an entry at a time, look inside it,
//! and keep what works. Entries are evaluated by the same [`Session`] as
//! scripts, so a session saved with `:save` builds the same image with
//! `imgscript run`.

mod commands;
mod helper;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use rhai::Dynamic;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor};

use crate::backend::{daemon_address, Docker};
use crate::cache_index::CacheIndex;
use crate::diagnostics::Error;
use crate::image::{Image, Layer, ScriptSource};
use crate::plan::{Plan, PlanOptions, Status};
use crate::script::{self, Session};
pub(crate) use helper::complete;
use helper::ReplHelper;

/// Runs the REPL until `:quit` or the end of input. With `file`, the script
/// is evaluated first and its variables are in scope.
pub fn run(file: Option<PathBuf>) -> Result<ExitCode, Error> {
    let thread = std::thread::Builder::new()
        .name("repl".into())
        .stack_size(script::EVALUATION_STACK_BYTES)
        .spawn(move || Repl::start(file.as_deref())?.run())
        .expect("spawning the REPL thread");
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The source of entries: a line editor on a terminal, or plain lines
/// from a pipe, which get no prompts and no colours.
enum Input {
    Editor(Box<Editor<ReplHelper, FileHistory>>),
    Piped(std::iter::Peekable<std::io::Lines<std::io::StdinLock<'static>>>),
}

/// The end of reading one entry.
enum Read {
    Entry(String),
    /// Ctrl-C at the prompt: the entry being typed is dropped.
    Cancelled,
    End,
}

impl Input {
    fn read_entry(&mut self, prompt: &str) -> Read {
        match self {
            Input::Editor(editor) => match editor.readline(prompt) {
                Ok(entry) => {
                    let _ = editor.add_history_entry(entry.as_str());
                    Read::Entry(entry)
                }
                Err(ReadlineError::Interrupted) => Read::Cancelled,
                Err(_) => Read::End,
            },
            Input::Piped(lines) => {
                let mut entry = String::new();
                while let Some(line) = lines.next() {
                    let Ok(line) = line else { return Read::End };
                    if !entry.is_empty() {
                        entry.push('\n');
                    }
                    entry.push_str(&line);
                    // A script's method chains go on with a line that starts
                    // with `.`; piped input can look ahead for one.
                    let continues = matches!(
                        lines.peek(),
                        Some(Ok(next)) if next.trim_start().starts_with('.')
                    );
                    let is_command = entry.trim_start().starts_with(':');
                    if is_command || !(continues || script::is_incomplete(&entry)) {
                        return Read::Entry(entry);
                    }
                }
                match entry.trim().is_empty() {
                    true => Read::End,
                    false => Read::Entry(entry),
                }
            }
        }
    }

    fn update(&mut self, variables: Vec<String>) {
        if let Input::Editor(editor) = self {
            if let Some(helper) = editor.helper_mut() {
                helper.variables = variables;
            }
        }
    }

    fn save_history(&mut self) {
        if let (Input::Editor(editor), Some(path)) = (self, history_path()) {
            if let Some(folder) = path.parent() {
                let _ = std::fs::create_dir_all(folder);
            }
            let _ = editor.save_history(&path);
        }
    }
}

/// An entry that evaluated without error.
pub(super) struct Entry {
    pub text: String,
    /// Name and arity of each function it defines.
    pub defines: Vec<(String, usize)>,
}

impl Entry {
    /// Checks whether a saved script can leave this entry out: it only defines
    /// functions, and entries after it define each of them again.
    pub fn is_superseded(&self, later: &[Entry]) -> bool {
        let only_functions = self.text.trim_start().starts_with("fn ");
        only_functions
            && !self.defines.is_empty()
            && self
                .defines
                .iter()
                .all(|function| later.iter().any(|entry| entry.defines.contains(function)))
    }
}

/// `$XDG_DATA_HOME/imgscript/history`, else under `~/.local/share`.
fn history_path() -> Option<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    from_env("XDG_DATA_HOME")
        .or_else(|| from_env("HOME").map(|home| home.join(".local/share")))
        .map(|data| data.join("imgscript").join("history"))
}

pub(crate) struct Repl {
    session: Session,
    runtime: tokio::runtime::Runtime,
    /// Held so that Ctrl-C outside the line editor never ends the session:
    /// builds listen for it, and elsewhere it is ignored.
    _interrupts: tokio::signal::unix::Signal,
    interactive: bool,
    /// Entries that evaluated without error, in order, for `:save`.
    entries: Vec<Entry>,
    /// The variable that most recently received an image, which a saved
    /// script ends with when the last entry is not itself an image.
    last_image_variable: Option<String>,
    last_entry_is_image: bool,
    /// Files this session wrote with `:save`, which it may overwrite.
    saved: Vec<PathBuf>,
    /// Whether an entry or command failed, which makes piped input end
    /// with status 1.
    pub(super) failed: bool,
    count: usize,
}

impl Repl {
    fn start(file: Option<&Path>) -> Result<Self, Error> {
        let folder = match file {
            Some(file) => script::script_folder(file),
            None => std::env::current_dir().map_err(|error| Error::Read {
                path: PathBuf::from("."),
                reason: error.to_string(),
            })?,
        };
        let stand_in = Arc::new(ScriptSource {
            path: PathBuf::from("repl"),
            folder: folder.clone(),
            text: String::new(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|error| Error::docker("starting the async runtime", error))?;
        let interrupts = runtime
            .block_on(async {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            })
            .map_err(|error| Error::docker("listening for Ctrl-C", error))?;
        let mut repl = Repl {
            session: Session::new(stand_in),
            runtime,
            _interrupts: interrupts,
            interactive: std::io::stdin().is_terminal(),
            entries: Vec::new(),
            last_image_variable: None,
            last_entry_is_image: false,
            saved: Vec::new(),
            failed: false,
            count: 0,
        };
        if let Some(file) = file {
            if let Err(error) = repl.load(file) {
                repl.failed = true;
                report(error);
            }
        }
        Ok(repl)
    }

    fn run(mut self) -> Result<ExitCode, Error> {
        let mut input = self.input()?;
        if self.interactive {
            eprintln!("imgscript repl: enter builder calls, :help for commands, Ctrl-D to leave");
        }
        input.update(self.names());
        loop {
            let prompt = if self.interactive { "img> " } else { "" };
            let entry = match input.read_entry(prompt) {
                Read::Entry(entry) => entry,
                Read::Cancelled => continue,
                Read::End => break,
            };
            let trimmed = entry.trim();
            if trimmed.is_empty() {
                continue;
            }
            if let Some(command) = trimmed.strip_prefix(':') {
                if self.command(command) == commands::Next::Quit {
                    break;
                }
            } else {
                self.evaluate_entry(entry);
            }
            input.update(self.names());
        }
        input.save_history();
        match self.failed && !self.interactive {
            true => Ok(ExitCode::FAILURE),
            false => Ok(ExitCode::SUCCESS),
        }
    }

    /// Variables and functions in scope, for completion.
    fn names(&self) -> Vec<String> {
        let mut names = self.session.variables();
        names.extend(self.session.functions().iter().cloned());
        names
    }

    fn input(&self) -> Result<Input, Error> {
        if !self.interactive {
            return Ok(Input::Piped(std::io::stdin().lines().peekable()));
        }
        let config = Config::builder()
            .auto_add_history(false)
            .completion_type(CompletionType::List)
            .build();
        let mut editor =
            Editor::<ReplHelper, FileHistory>::with_config(config).map_err(|error| {
                Error::Usage {
                    message: format!("cannot start the line editor: {error}"),
                    help: "pipe entries into `imgscript repl` instead".into(),
                }
            })?;
        let colors = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        editor.set_helper(Some(ReplHelper::new(
            self.session.folder().to_path_buf(),
            colors,
        )));
        if let Some(path) = history_path() {
            let _ = editor.load_history(&path);
        }
        Ok(Input::Editor(Box::new(editor)))
    }

    /// Evaluates a script file into the session, as if typed.
    fn load(&mut self, file: &Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(file).map_err(|error| Error::Read {
            path: file.to_path_buf(),
            reason: error.to_string(),
        })?;
        // A loaded script's relative paths start at its own folder, as they
        // do when `imgscript run` runs it.
        let source = Arc::new(ScriptSource {
            path: file.to_path_buf(),
            folder: script::script_folder(file),
            text: text.clone(),
        });
        let before = self.image_variables();
        let value = self.session.eval(source).map_err(Error::from)?;
        self.note_entry(text, value.is::<Image>(), &before);
        Ok(())
    }

    fn evaluate_entry(&mut self, entry: String) {
        self.count += 1;
        let source = Arc::new(ScriptSource {
            path: PathBuf::from(format!("entry-{}", self.count)),
            folder: self.session.folder().to_path_buf(),
            text: entry.clone(),
        });
        let before = self.image_variables();
        match self.session.eval(source) {
            Ok(value) => {
                let is_image = value.is::<Image>();
                self.note_entry(entry, is_image, &before);
                self.show(value);
            }
            Err(error) => {
                self.failed = true;
                report(Error::from(error));
            }
        }
    }

    /// Records a successful entry, and which image a saved script would
    /// end with.
    fn note_entry(&mut self, entry: String, is_image: bool, before: &[(String, String)]) {
        self.entries.push(Entry {
            text: entry,
            defines: self.session.last_defined().to_vec(),
        });
        self.last_entry_is_image = is_image;
        let after = self.image_variables();
        if let Some((name, _)) = after.iter().find(|item| !before.contains(item)) {
            self.last_image_variable = Some(name.clone());
        }
    }

    /// Image variables with a fingerprint of their value, to tell which
    /// ones an entry set.
    fn image_variables(&self) -> Vec<(String, String)> {
        self.session
            .images()
            .into_iter()
            .map(|(name, image)| {
                let fingerprint = format!("{:p}", Arc::as_ptr(&image.layer));
                (name, fingerprint)
            })
            .collect()
    }

    fn show(&self, value: Dynamic) {
        if value.is_unit() {
            return;
        }
        if let Some(image) = value.clone().try_cast::<Image>() {
            self.describe(&image);
            return;
        }
        if let Some(map) = value.clone().try_cast::<rhai::Map>() {
            let images: Vec<(String, Image)> = map
                .iter()
                .filter_map(|(name, value)| {
                    value
                        .clone()
                        .try_cast::<Image>()
                        .map(|image| (name.to_string(), image))
                })
                .collect();
            if !images.is_empty() && images.len() == map.len() {
                for (name, image) in images {
                    println!("{name}:");
                    self.describe(&image);
                }
                return;
            }
        }
        if value.is_string() {
            println!("{value:?}");
        } else {
            println!("{value}");
        }
    }

    /// Prints an image's steps, its cache key's prefix, and whether it is
    /// built.
    fn describe(&self, image: &Image) {
        let mut layers: Vec<&Layer> = Vec::new();
        let mut layer = Some(image.layer.as_ref());
        while let Some(current) = layer {
            layers.push(current);
            layer = current.parent.as_deref();
        }
        println!(
            "Image with {} step{}:",
            layers.len(),
            if layers.len() == 1 { "" } else { "s" }
        );
        for layer in layers.iter().rev() {
            println!("  {}  {}", layer.describe(), layer.call.location());
        }
        for mount in image.mounts.iter() {
            println!(
                "  attached when a container starts: {} -> {}",
                mount.context.display_source(),
                mount.destination
            );
        }
        if let Some(tag) = &image.tag {
            println!("  tagged {tag}");
        }
        match self.runtime.block_on(plan_of(image)) {
            Ok(plan) => {
                let last = plan.steps.last().expect("a plan has a step per layer");
                let key = last
                    .key
                    .as_deref()
                    .map(|key| key.chars().take(12).collect::<String>())
                    .unwrap_or_else(|| "unknown until the base image is pulled".into());
                let state = match &last.status {
                    Status::Cached { .. } => "built".to_string(),
                    Status::Build(_) => format!(
                        "not built: {} of {} steps to build",
                        plan.steps_to_build().max(1),
                        plan.steps.len()
                    ),
                };
                println!("  cache key {key}, {state}");
            }
            Err(error) => println!("  cache state unknown: {error}"),
        }
    }
}

/// Plans `image` alone, pulling nothing, to learn its key and state.
async fn plan_of(image: &Image) -> Result<Plan, Error> {
    let docker = Docker::connect().await?;
    let cache_index = CacheIndex::for_daemon(&daemon_address());
    let options = PlanOptions {
        force_all: false,
        progress: None,
    };
    Plan::new(&docker, &cache_index, vec![(None, image.clone())], options).await
}

/// Prints an error as `imgscript run` does; the session goes on.
fn report(error: Error) {
    eprintln!("{:?}", miette::Report::new(error));
}
