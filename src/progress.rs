//! Progress reports from the executor. The executor never prints; it calls a
//! [`Progress`] that the CLI chooses.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Receives what happens during a build, in order.
pub trait Progress: Send + Sync {
    /// Reports a step whose cached image is reused.
    fn step_cached(&self, location: &str, description: &str);
    /// Reports a step that starts building, with the reason it is not cached.
    fn step_started(&self, location: &str, description: &str, reason: &str);
    /// Reports one line of a running step's output.
    fn step_output(&self, line: &str);
    fn step_finished(&self, location: &str, elapsed: Duration);
    fn pulling(&self, reference: &str);
    /// Reports the end of a build that took `elapsed` in all.
    fn summary(&self, _elapsed: Duration) {}
}

/// How a run reports progress, chosen with `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Plain lines; a live view is not implemented yet.
    Auto,
    /// One line per event, for logs and CI.
    Plain,
    /// One JSON object per line, for tools.
    Json,
}

impl ProgressMode {
    pub fn reporter(self) -> Box<dyn Progress> {
        match self {
            ProgressMode::Auto | ProgressMode::Plain => Box::new(PlainProgress::default()),
            ProgressMode::Json => Box::new(JsonProgress::default()),
        }
    }
}

/// Counts of the steps a build reused and built, for its summary.
#[derive(Default)]
struct StepCounts {
    cached: AtomicUsize,
    built: AtomicUsize,
}

/// Writes one line per event to stderr.
#[derive(Default)]
pub struct PlainProgress {
    counts: StepCounts,
}

impl PlainProgress {
    fn line(&self, text: std::fmt::Arguments) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{text}");
    }
}

impl Progress for PlainProgress {
    fn step_cached(&self, location: &str, description: &str) {
        self.counts.cached.fetch_add(1, Ordering::Relaxed);
        self.line(format_args!("[{location}] {description} (cached)"));
    }

    fn step_started(&self, location: &str, description: &str, reason: &str) {
        self.counts.built.fetch_add(1, Ordering::Relaxed);
        self.line(format_args!(
            "[{location}] {description} (building: {reason})"
        ));
    }

    fn step_output(&self, line: &str) {
        self.line(format_args!("    {line}"));
    }

    fn step_finished(&self, location: &str, elapsed: Duration) {
        self.line(format_args!(
            "[{location}] done in {:.1}s",
            elapsed.as_secs_f64()
        ));
    }

    fn pulling(&self, reference: &str) {
        self.line(format_args!("pulling {reference}"));
    }

    fn summary(&self, elapsed: Duration) {
        self.line(format_args!(
            "steps: {} built, {} cached, in {:.1}s",
            self.counts.built.load(Ordering::Relaxed),
            self.counts.cached.load(Ordering::Relaxed),
            elapsed.as_secs_f64()
        ));
    }
}

/// Writes one JSON object per event to stderr, each on its own line, with
/// an `event` field naming it.
#[derive(Default)]
pub struct JsonProgress {
    counts: StepCounts,
}

impl JsonProgress {
    fn event(&self, value: serde_json::Value) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{value}");
    }
}

impl Progress for JsonProgress {
    fn step_cached(&self, location: &str, description: &str) {
        self.counts.cached.fetch_add(1, Ordering::Relaxed);
        self.event(serde_json::json!({
            "event": "step_cached", "location": location, "step": description,
        }));
    }

    fn step_started(&self, location: &str, description: &str, reason: &str) {
        self.counts.built.fetch_add(1, Ordering::Relaxed);
        self.event(serde_json::json!({
            "event": "step_started", "location": location, "step": description, "reason": reason,
        }));
    }

    fn step_output(&self, line: &str) {
        self.event(serde_json::json!({ "event": "step_output", "line": line }));
    }

    fn step_finished(&self, location: &str, elapsed: Duration) {
        self.event(serde_json::json!({
            "event": "step_finished", "location": location, "seconds": elapsed.as_secs_f64(),
        }));
    }

    fn pulling(&self, reference: &str) {
        self.event(serde_json::json!({ "event": "pulling", "reference": reference }));
    }

    fn summary(&self, elapsed: Duration) {
        self.event(serde_json::json!({
            "event": "summary",
            "built": self.counts.built.load(Ordering::Relaxed),
            "cached": self.counts.cached.load(Ordering::Relaxed),
            "seconds": elapsed.as_secs_f64(),
        }));
    }
}
