//! The REPL's line editing: completion, hints from history, syntax
//! highlighting, and multi-line entries that continue while they do not
//! parse yet.

use std::borrow::Cow;
use std::path::PathBuf;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hinter, HistoryHinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use crate::api_description::{builders, option_names, Kind};

/// The REPL's own commands, as typed after `:`.
pub const COMMANDS: &[(&str, &str)] = &[
    ("build", ":build EXPR      build the image and print its id"),
    (
        "plan",
        ":plan EXPR       show each step, cached or to build, and why",
    ),
    (
        "shell",
        ":shell EXPR      open a shell in a container of the image",
    ),
    (
        "run",
        ":run EXPR -- CMD run CMD in a container of the image",
    ),
    ("ls", ":ls EXPR PATH    list PATH inside the image"),
    (
        "help",
        ":help [NAME]     this list, or the signature and options of a builder",
    ),
    (
        "save",
        ":save FILE       write the entries that worked as a script",
    ),
    (
        "load",
        ":load FILE       evaluate a script into this session",
    ),
    ("quit", ":quit            leave (Ctrl-D does too)"),
];

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "import", "as", "if", "else", "for", "in", "while", "loop", "return",
    "true", "false", "break", "continue", "throw", "try", "catch",
];

pub struct ReplHelper {
    /// Variables in the session's scope, refreshed after each entry.
    pub variables: Vec<String>,
    /// The folder relative paths resolve against.
    pub folder: PathBuf,
    pub colors: bool,
    hinter: HistoryHinter,
}

impl ReplHelper {
    pub fn new(folder: PathBuf, colors: bool) -> Self {
        ReplHelper {
            variables: Vec::new(),
            folder,
            colors,
            hinter: HistoryHinter::new(),
        }
    }
}

impl Helper for ReplHelper {}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(complete(line, pos, &self.variables, &self.folder))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, context: &Context<'_>) -> Option<String> {
        self.hinter.hint(line, pos, context)
    }
}

impl Validator for ReplHelper {
    fn validate(&self, context: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = context.input();
        if input.trim_start().starts_with(':') || !crate::script::is_incomplete(input) {
            return Ok(ValidationResult::Valid(None));
        }
        Ok(ValidationResult::Incomplete)
    }
}

impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        match self.colors {
            true => Cow::Owned(highlight(line)),
            false => Cow::Borrowed(line),
        }
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        match self.colors {
            true => Cow::Owned(format!("\x1b[2m{hint}\x1b[0m")),
            false => Cow::Borrowed(hint),
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.colors
    }
}

/// Returns where the completed word starts and the candidates for it.
pub fn complete(
    line: &str,
    pos: usize,
    variables: &[String],
    folder: &std::path::Path,
) -> (usize, Vec<Pair>) {
    let before = &line[..pos];

    // A REPL command name right after the colon, then its argument.
    if let Some(command) = before.strip_prefix(':') {
        if let Some((name, argument)) = command.split_once(' ') {
            let argument = argument.trim_start();
            let start = pos - argument.len();
            match name {
                "save" | "load" => return (start, complete_path(argument, folder)),
                "help" => {
                    let candidates = builders()
                        .iter()
                        .filter(|builder| builder.name.starts_with(argument))
                        .map(|builder| pair(builder.name, builder.name))
                        .collect();
                    return (start, candidates);
                }
                _ => {}
            }
        }
        if !command.contains(char::is_whitespace) {
            let candidates = COMMANDS
                .iter()
                .filter(|(name, _)| name.starts_with(command))
                .map(|(name, _)| pair(name, &format!("{name} ")))
                .collect();
            return (1, candidates);
        }
    }

    if let Some((start, typed)) = open_string(before) {
        if is_local_path_argument(&before[..start]) {
            return (pos - typed.len(), complete_path(typed, folder));
        }
        return (pos, Vec::new());
    }

    let word_start = before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |index| index + 1);
    let word = &before[word_start..];
    let preceding = before[..word_start].trim_end();

    // Functions of imported modules are not in the API description.
    if preceding.ends_with("::") {
        return (word_start, Vec::new());
    }

    if preceding.ends_with('.') && !preceding.ends_with("..") {
        let candidates = builders()
            .iter()
            .filter(|builder| builder.kind == Kind::Method && builder.name.starts_with(word))
            .map(|builder| pair(builder.name, &format!("{}(", builder.name)))
            .collect();
        return (word_start, candidates);
    }

    if let Some(owner) = option_map_owner(preceding) {
        // The keys of a map that is no builder's options are the user's own.
        let Some(function) = owner else {
            return (word_start, Vec::new());
        };
        let candidates = option_names(&function)
            .into_iter()
            .filter(|name| name.starts_with(word))
            .map(|name| pair(name, &format!("{name}: ")))
            .collect();
        return (word_start, candidates);
    }

    let mut candidates: Vec<Pair> = builders()
        .iter()
        .filter(|builder| builder.kind != Kind::Method && builder.name.starts_with(word))
        .map(|builder| pair(builder.name, &format!("{}(", builder.name)))
        .collect();
    candidates.extend(
        variables
            .iter()
            .filter(|name| name.starts_with(word))
            .map(|name| pair(name, name)),
    );
    candidates.extend(
        KEYWORDS
            .iter()
            .filter(|keyword| !word.is_empty() && keyword.starts_with(word))
            .map(|keyword| pair(keyword, &format!("{keyword} "))),
    );
    (word_start, candidates)
}

fn pair(display: &str, replacement: &str) -> Pair {
    Pair {
        display: display.to_string(),
        replacement: replacement.to_string(),
    }
}

/// When `text` ends inside a string literal, returns where the string's
/// opening quote is and what was typed after it.
fn open_string(text: &str) -> Option<(usize, &str)> {
    let mut open: Option<(usize, char)> = None;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match open {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some((_, quote)) if c == quote => open = None,
            Some(_) => {}
            None if c == '"' || c == '`' => open = Some((index, c)),
            None => {}
        }
    }
    open.map(|(index, _)| (index, &text[index + 1..]))
}

/// Checks whether a string opened right after `text` is the local path argument
/// of `add_local_file` or `add_local_dir`.
fn is_local_path_argument(text: &str) -> bool {
    let text = text.trim_end();
    let Some(call) = text.strip_suffix('(') else {
        return false;
    };
    let call = call.trim_end();
    call.ends_with("add_local_file") || call.ends_with("add_local_dir")
}

/// Completes a path typed inside a string, relative to `folder`.
fn complete_path(typed: &str, folder: &std::path::Path) -> Vec<Pair> {
    let (dir, prefix) = match typed.rfind('/') {
        Some(index) => (&typed[..=index], &typed[index + 1..]),
        None => ("", typed),
    };
    let base = if dir.starts_with('/') {
        PathBuf::from(dir)
    } else {
        folder.join(dir)
    };
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut candidates: Vec<Pair> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let suffix = if entry.path().is_dir() { "/" } else { "" };
            Some(pair(
                &format!("{name}{suffix}"),
                &format!("{dir}{name}{suffix}"),
            ))
        })
        .collect();
    candidates.sort_by(|left, right| left.display.cmp(&right.display));
    candidates
}

/// When `text` (what precedes the word being typed) ends where a map key
/// goes, right after `#{` or after a `,` in an open `#{`, returns the
/// function whose options map it is, or `Some(None)` for another map.
fn option_map_owner(text: &str) -> Option<Option<String>> {
    if !(text.ends_with("#{") || text.ends_with(',')) {
        return None;
    }
    // Find the innermost open `#{`, skipping closed brackets.
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut map_start = None;
    for index in (0..bytes.len()).rev() {
        match bytes[index] {
            b'}' | b']' | b')' => depth += 1,
            b'{' if depth == 0 => {
                if index > 0 && bytes[index - 1] == b'#' {
                    map_start = Some(index - 1);
                }
                break;
            }
            b'[' | b'(' if depth == 0 => return None,
            b'{' | b'[' | b'(' => depth -= 1,
            _ => {}
        }
    }
    let before_map = &text[..map_start?];
    Some(map_owner(before_map))
}

/// Returns the name called at the innermost open `(` of `before_map` when the
/// map is that call's options: not nested in another map, and not the
/// first argument of a builder that takes a map there, such as `env`.
fn map_owner(before_map: &str) -> Option<String> {
    let bytes = before_map.as_bytes();
    let mut depth = 0usize;
    for index in (0..bytes.len()).rev() {
        match bytes[index] {
            b')' | b']' | b'}' => depth += 1,
            b'{' if depth == 0 => return None,
            b'(' if depth == 0 => {
                let name: String = before_map[..index]
                    .trim_end()
                    .chars()
                    .rev()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let first_argument = before_map[index + 1..].trim().is_empty();
                let takes_map_first = crate::api_description::builder(&name)
                    .and_then(|builder| builder.params.first())
                    .is_some_and(|param| param.kind == "map");
                if name.is_empty() || (first_argument && takes_map_first) {
                    return None;
                }
                return Some(name);
            }
            b'(' | b'[' | b'{' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Colours strings, numbers, keywords, builder calls and REPL commands
/// with ANSI codes.
pub fn highlight(line: &str) -> String {
    const STRING: &str = "\x1b[32m";
    const NUMBER: &str = "\x1b[33m";
    const KEYWORD: &str = "\x1b[35m";
    const BUILDER: &str = "\x1b[36m";
    const COMMAND: &str = "\x1b[1m";
    const RESET: &str = "\x1b[0m";

    let mut out = String::with_capacity(line.len() * 2);
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut index = 0;
    if line.starts_with(':') {
        let end = line.find(char::is_whitespace).unwrap_or(line.len());
        out.push_str(&format!("{COMMAND}{}{RESET}", &line[..end]));
        index = chars
            .iter()
            .position(|(at, _)| *at >= end)
            .unwrap_or(chars.len());
    }
    while index < chars.len() {
        let (start, c) = chars[index];
        if c == '"' || c == '`' {
            let mut end = index + 1;
            let mut escaped = false;
            while end < chars.len() {
                let next = chars[end].1;
                end += 1;
                if escaped {
                    escaped = false;
                } else if next == '\\' {
                    escaped = true;
                } else if next == c {
                    break;
                }
            }
            let stop = chars.get(end).map_or(line.len(), |(at, _)| *at);
            out.push_str(&format!("{STRING}{}{RESET}", &line[start..stop]));
            index = end;
        } else if c.is_ascii_digit() {
            let mut end = index;
            while end < chars.len()
                && (chars[end].1.is_ascii_alphanumeric()
                    || chars[end].1 == '.'
                    || chars[end].1 == '_')
            {
                end += 1;
            }
            let stop = chars.get(end).map_or(line.len(), |(at, _)| *at);
            out.push_str(&format!("{NUMBER}{}{RESET}", &line[start..stop]));
            index = end;
        } else if c.is_alphabetic() || c == '_' {
            let mut end = index;
            while end < chars.len() && (chars[end].1.is_alphanumeric() || chars[end].1 == '_') {
                end += 1;
            }
            let stop = chars.get(end).map_or(line.len(), |(at, _)| *at);
            let word = &line[start..stop];
            let called = line[stop..].trim_start().starts_with('(');
            if KEYWORDS.contains(&word) {
                out.push_str(&format!("{KEYWORD}{word}{RESET}"));
            } else if called && crate::api_description::builder(word).is_some() {
                out.push_str(&format!("{BUILDER}{word}{RESET}"));
            } else {
                out.push_str(word);
            }
            index = end;
        } else {
            out.push(c);
            index += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<String> {
        let folder = std::env::temp_dir();
        complete(line, line.len(), &["base".to_string()], &folder)
            .1
            .into_iter()
            .map(|pair| pair.display)
            .collect()
    }

    #[test]
    fn methods_after_a_dot() {
        let found = names("base.apt_");
        assert_eq!(found, vec!["apt_install"]);
        assert!(names("debian_slim().").contains(&"pip_install".to_string()));
        assert!(!names("base.").contains(&"debian_slim".to_string()));
    }

    #[test]
    fn globals_and_variables() {
        let found = names("deb");
        assert_eq!(found, vec!["debian_slim"]);
        assert_eq!(names("ba"), vec!["base"]);
        assert_eq!(names(":bu"), vec!["build"]);
    }

    #[test]
    fn option_keys_inside_a_map() {
        let found = names("base.apt_install([\"git\"], #{ install_");
        assert_eq!(found, vec!["install_recommends"]);
        let found = names("base.uv_sync(#{ frozen: true, ex");
        assert_eq!(found, vec!["extras", "extra_options"]);
        assert!(names("let m = #{ a: 1, ").is_empty());
        assert!(names("base.env(#{ ").is_empty());
        assert!(names("base.run_function(\"./f.py\", \"f\", #{ kwargs: #{ ").is_empty());
        let found = names("base.pip_install([\"a\"], #{\n    find_");
        assert_eq!(found, vec!["find_links"]);
    }

    #[test]
    fn paths_inside_local_file_arguments() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::create_dir(folder.path().join("src")).unwrap();
        std::fs::write(folder.path().join("setup.cfg"), "").unwrap();
        let line = "base.add_local_dir(\"./s";
        let (start, found) = complete(line, line.len(), &[], folder.path());
        assert_eq!(start, line.len() - 3);
        let found: Vec<String> = found.into_iter().map(|pair| pair.replacement).collect();
        assert_eq!(found, vec!["./setup.cfg", "./src/"]);
    }

    #[test]
    fn highlighting_marks_tokens() {
        let shown = highlight("let a = debian_slim(\"3.11\")");
        assert!(shown.contains("\x1b[35mlet\x1b[0m"), "{shown}");
        assert!(shown.contains("\x1b[36mdebian_slim\x1b[0m"), "{shown}");
        assert!(shown.contains("\x1b[32m\"3.11\"\x1b[0m"), "{shown}");
    }
}
