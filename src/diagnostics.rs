//! Errors as users see them: miette diagnostics that point into the script.

use std::path::PathBuf;

use miette::{Diagnostic, NamedSource, SourceSpan};

use crate::image::CallSite;

/// An error in a script, shown with the script's source and a label on the
/// offending span.
#[derive(Debug, Clone, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct ScriptError {
    pub message: String,
    #[source_code]
    pub source_code: NamedSource<String>,
    #[label("{label}")]
    pub span: SourceSpan,
    pub label: String,
    #[help]
    pub help: Option<String>,
}

/// A build step whose commands failed.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("step `{function}` failed: command exited with code {exit_code}")]
pub struct StepFailed {
    pub function: String,
    pub command: String,
    pub exit_code: i64,
    pub output_tail: String,
    /// The output tail, and a hint where the output shows a known cause.
    #[help]
    pub help: String,
    #[source_code]
    pub source_code: NamedSource<String>,
    #[label("this step ran `{command}`")]
    pub span: SourceSpan,
}

/// A build step stopped because it ran longer than its `timeout`.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("step `{function}` timed out after {seconds} seconds and was stopped")]
pub struct StepTimedOut {
    pub function: String,
    pub seconds: u64,
    #[help]
    pub help: String,
    #[source_code]
    pub source_code: NamedSource<String>,
    #[label("this step ran too long; raise its timeout option if it needs more time")]
    pub span: SourceSpan,
}

/// A step that requests GPUs the engine cannot give.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("the Docker Engine cannot give this step the GPUs it requests ({request}): {reason}")]
#[diagnostic(help(
    "GPU steps need an NVIDIA GPU on the Docker host and the NVIDIA Container Toolkit registered with the engine; remove the gpu option to build without one"
))]
pub struct GpuUnavailable {
    pub request: String,
    pub reason: String,
    /// The script, once the executor knows which step asked.
    #[source_code]
    pub source_code: Option<NamedSource<String>>,
    #[label("this step requests the GPUs")]
    pub span: Option<SourceSpan>,
}

/// A Dockerfile build that the engine reported as failed.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("Dockerfile build failed: {message}")]
pub struct DockerfileFailed {
    pub message: String,
    #[help]
    pub help: String,
    #[source_code]
    pub source_code: NamedSource<String>,
    #[label("this Dockerfile failed to build")]
    pub span: SourceSpan,
}

/// Everything that can stop a run, each as a diagnostic.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Script(#[from] Box<ScriptError>),

    #[error(transparent)]
    #[diagnostic(transparent)]
    StepFailed(#[from] Box<StepFailed>),

    #[error(transparent)]
    #[diagnostic(transparent)]
    DockerfileFailed(#[from] Box<DockerfileFailed>),

    #[error(transparent)]
    #[diagnostic(transparent)]
    StepTimedOut(#[from] Box<StepTimedOut>),

    #[error("cannot connect to the Docker daemon at {address}")]
    #[diagnostic(help(
        "start Docker (for example `sudo systemctl start docker`), or set DOCKER_HOST to the address of a running daemon"
    ))]
    DockerUnavailable { address: String, reason: String },

    #[error("base image {reference} is not in the local image store and could not be pulled from {registry}: {reason}")]
    #[diagnostic(help(
        "check the reference and your access to the registry; on a machine without registry access, load or build the image locally first"
    ))]
    BaseImageUnavailable {
        reference: String,
        registry: String,
        reason: String,
    },

    #[error("image {reference} is not in the local image store")]
    #[diagnostic(help("list local images with `docker images --no-trunc`"))]
    ImageIdNotFound { reference: String },

    #[error("Docker Engine request failed while {action}: {reason}")]
    Docker {
        action: String,
        reason: String,
        #[help]
        help: Option<String>,
    },

    #[error("failed to read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },

    #[error("cannot get the Python build that add_python installs")]
    #[diagnostic(help(
        "IMGSCRIPT_PYTHON_MIRROR names a mirror of python-build-standalone's releases, for machines without GitHub access; it must serve 20241016/SHA256SUMS and the archive beside it"
    ))]
    PythonBuild(#[from] crate::python_build::FetchError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    GpuUnavailable(#[from] Box<GpuUnavailable>),

    #[error("cannot run {program} in the image: {reason}")]
    #[diagnostic(help("check the command's name and that it is installed and executable in the image, for example with `imgscript run FILE -- sh -c 'command -v {program}'`"))]
    CommandNotStarted {
        program: String,
        /// 127 when the command is not found, 126 when it is not executable.
        status: u8,
        reason: String,
    },

    #[error("{message}")]
    #[diagnostic(help("{help}"))]
    Usage { message: String, help: String },

    #[error("interrupted by signal {signal}; every container this run created was removed")]
    Interrupted { signal: i32 },
}

impl StepFailed {
    /// Builds the help text: the tail of the output, and a hint when it
    /// shows a TLS failure that a CA bundle would fix or a full disk.
    pub fn help_for(output_tail: &str) -> String {
        let mut help = format!("the last lines of its output:\n{output_tail}");
        let tls_failure = [
            "CERTIFICATE_VERIFY_FAILED",
            "certificate verify failed",
            "invalid peer certificate",
            "SSL certificate problem",
        ]
        .iter()
        .any(|sign| output_tail.contains(sign));
        if tls_failure {
            help.push_str("\nthe step failed to verify a TLS certificate: behind a TLS-intercepting proxy, pass its CA bundle with --ca-bundle PATH (or IMGSCRIPT_CA_BUNDLE)");
        }
        if shows_full_disk(output_tail) {
            help.push('\n');
            help.push_str(DISK_FULL_HELP);
        }
        help
    }
}

/// The hint for a disk that filled up during a step: the engine's, or the
/// one the step's container writes to, which is the same disk unless the
/// step mounted another.
const DISK_FULL_HELP: &str = "the disk ran out of space, so this step's layer was not saved and the next run builds it again; free space, for example with `imgscript cache prune --older-than 7days` or by removing images you no longer need, then run again";

/// Returns true when `text` shows that a disk filled up.
fn shows_full_disk(text: &str) -> bool {
    let text = text.to_lowercase();
    [
        "no space left on device",
        "enough free space",
        "disk quota exceeded",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

impl Error {
    pub fn docker(action: impl Into<String>, error: impl std::fmt::Display) -> Self {
        let reason = error.to_string();
        let help = shows_full_disk(&reason).then(|| DISK_FULL_HELP.to_string());
        Error::Docker {
            action: action.into(),
            reason,
            help,
        }
    }

    /// Exit status for this error: 2 for usage errors, 128 plus the signal
    /// number after a signal (130 after Ctrl-C), 127 or 126 for a command
    /// that could not start, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } => 2,
            Error::Interrupted { signal } => (128 + signal) as u8,
            Error::CommandNotStarted { status, .. } => *status,
            _ => 1,
        }
    }
}

/// Returns the span of the identifier or quoted string that starts at
/// `line`:`column` (both 1-based, columns counted in characters, as Rhai
/// counts them), or a one-character span where neither starts there.
pub fn span_at(text: &str, line: usize, column: usize) -> SourceSpan {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let line_text = text[line_start..].split('\n').next().unwrap_or("");
    let column_offset: usize = line_text
        .chars()
        .take(column.saturating_sub(1))
        .map(char::len_utf8)
        .sum();
    let start = line_start + column_offset;

    let rest = &text[start.min(text.len())..];
    let identifier_length: usize = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum();
    let quoted_length = rest
        .strip_prefix('"')
        .and_then(|inner| inner.find('"'))
        .map(|end| end + 2);
    let length = match (identifier_length, quoted_length) {
        (0, Some(quoted)) => quoted,
        (0, None) => rest.chars().next().map_or(0, char::len_utf8),
        (identifier, _) => identifier,
    };
    SourceSpan::new(start.into(), length)
}

impl CallSite {
    pub fn named_source(&self) -> NamedSource<String> {
        NamedSource::new(
            self.script.path.display().to_string(),
            self.script.text.clone(),
        )
    }

    pub fn span(&self) -> SourceSpan {
        span_at(&self.script.text, self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_signs_are_recognised() {
        for text in [
            "write /big: no space left on device",
            "head: error writing 'standard output': No space left on device",
            "E: You don't have enough free space in /var/cache/apt/archives/.",
            "OSError: [Errno 122] Disk quota exceeded",
        ] {
            assert!(shows_full_disk(text), "{text}");
            assert!(StepFailed::help_for(text).contains("ran out of space"));
        }
        assert!(!shows_full_disk("exit status 1"));
    }

    #[test]
    fn span_covers_identifier() {
        let text = "let a = 1;\nlet b = debian_slim(\"3.11\");\n";
        let span = span_at(text, 2, 9);
        assert_eq!(
            &text[span.offset()..span.offset() + span.len()],
            "debian_slim"
        );
    }

    #[test]
    fn span_counts_columns_in_characters() {
        let text = "// é\n  x.apt_install()";
        let span = span_at(text, 2, 5);
        assert_eq!(
            &text[span.offset()..span.offset() + span.len()],
            "apt_install"
        );
    }

    #[test]
    fn span_covers_quoted_string() {
        let text = "import \"./lib/common\" as common;";
        let span = span_at(text, 1, 8);
        assert_eq!(
            &text[span.offset()..span.offset() + span.len()],
            "\"./lib/common\""
        );
    }

    #[test]
    fn span_outside_text_is_empty() {
        let span = span_at("abc", 9, 9);
        assert_eq!(span.len(), 0);
    }
}
