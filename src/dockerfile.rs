//! Just enough Dockerfile reading to check a build before it starts: the
//! sources of `COPY` and `ADD` instructions, which must exist in the build
//! context after its ignore rules.

use globset::GlobBuilder;

use crate::context::LocalContext;

/// Returns the local sources that the Dockerfile's `COPY` and `ADD`
/// instructions name, in order. Sources of `COPY --from`, URLs and sources
/// that use variables are left out, since the context cannot hold them or
/// they cannot be known before the build.
pub fn copy_sources(text: &str) -> Vec<String> {
    let mut sources = Vec::new();
    for instruction in instructions(text) {
        let mut words = instruction.split_whitespace();
        let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
        if keyword != "COPY" && keyword != "ADD" {
            continue;
        }
        let arguments = instruction[keyword.len()..].trim();
        let (flags, paths) = split_flags(arguments);
        if flags.iter().any(|flag| flag.starts_with("--from")) {
            continue;
        }
        let mut paths = parse_paths(paths);
        paths.pop(); // the destination
        sources.extend(
            paths
                .into_iter()
                .filter(|source| !source.contains("://") && !source.contains('$')),
        );
    }
    sources
}

/// Returns the sources that match nothing in `context`.
pub fn missing_sources(sources: &[String], context: &LocalContext) -> Vec<String> {
    sources
        .iter()
        .filter(|source| !source_exists(source, context))
        .cloned()
        .collect()
}

fn source_exists(source: &str, context: &LocalContext) -> bool {
    let normalized = source
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/');
    if normalized.is_empty() || normalized == "." {
        return true;
    }
    let relative_paths = || context.entries.iter().map(|entry| entry.relative.as_str());

    if !normalized.contains(['*', '?', '[']) {
        return relative_paths().any(|relative| relative == normalized);
    }
    match GlobBuilder::new(normalized).literal_separator(true).build() {
        Ok(glob) => {
            let matcher = glob.compile_matcher();
            relative_paths().any(|relative| matcher.is_match(relative))
        }
        // An invalid pattern is the daemon's to report.
        Err(_) => true,
    }
}

/// Joins continuation lines and drops comments, blank lines and parser
/// directives, giving one string per instruction.
pub fn instructions(text: &str) -> Vec<String> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(continued) => {
                current.push_str(continued);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        instructions.push(current);
    }
    instructions
}

/// Splits leading `--flag=value` words from the rest of the arguments.
fn split_flags(arguments: &str) -> (Vec<&str>, &str) {
    let mut flags = Vec::new();
    let mut rest = arguments;
    while rest.starts_with("--") {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        flags.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (flags, rest)
}

/// Parses the paths of an instruction in either the JSON form
/// (`["a", "b"]`) or the whitespace-separated form.
fn parse_paths(paths: &str) -> Vec<String> {
    if paths.starts_with('[') {
        if let Ok(list) = serde_json::from_str::<Vec<String>>(paths) {
            return list;
        }
    }
    paths.split_whitespace().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_of_copy_and_add() {
        let text = "\
# syntax=docker/dockerfile:1
FROM python:3.11-slim-bookworm AS base
COPY requirements.txt /app/
copy --chown=app:app src/ lib/*.py /app/
ADD [\"data dir/file.txt\", \"/data/\"]
ADD https://example.invalid/file.tar.gz /tmp/
COPY --from=base /etc/hostname /x
RUN echo \\
    COPY not-an-instruction /y
COPY ${VERSION}.txt /z
";
        assert_eq!(
            copy_sources(text),
            ["requirements.txt", "src/", "lib/*.py", "data dir/file.txt"]
        );
    }

    #[test]
    fn missing_sources_respect_context() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(folder.path().join("src/pkg")).unwrap();
        std::fs::write(folder.path().join("src/pkg/a.py"), "").unwrap();
        std::fs::write(folder.path().join("secret.txt"), "").unwrap();
        let patterns = vec!["secret.txt".to_string()];
        let context = LocalContext::dir(folder.path().to_path_buf(), ".", &patterns).unwrap();

        let sources: Vec<String> = [
            "src",
            "./src/pkg/a.py",
            "src/*/*.py",
            ".",
            "secret.txt",
            "absent",
            "*.md",
        ]
        .iter()
        .map(|source| source.to_string())
        .collect();
        assert_eq!(
            missing_sources(&sources, &context),
            ["secret.txt", "absent", "*.md"]
        );
    }
}
