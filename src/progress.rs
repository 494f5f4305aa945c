//! Progress reports from the executor. The executor never prints; it calls a
//! [`Progress`] that the CLI chooses.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The step a report is about. Steps that build at the same time tell
/// their reports apart by `index`, since one script line can make several
/// steps (in a loop, say).
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// The step's position in the plan.
    pub index: usize,
    /// The script position of the call that made the step.
    pub location: String,
    pub description: String,
}

impl StepInfo {
    pub fn of(plan: &crate::plan::Plan, index: usize) -> Self {
        let layer = &plan.steps[index].layer;
        StepInfo {
            index,
            location: layer.call.location(),
            description: layer.describe(),
        }
    }
}

/// Receives what happens during a build. Reports of steps that build at
/// the same time interleave.
pub trait Progress: Send + Sync {
    /// Reports a step whose cached image is reused.
    fn step_cached(&self, step: &StepInfo);
    /// Reports a step that starts building, with the reason it is not cached.
    fn step_started(&self, step: &StepInfo, reason: &str);
    /// Reports one line of a running step's output.
    fn step_output(&self, step: &StepInfo, line: &str);
    fn step_finished(&self, step: &StepInfo, elapsed: Duration);
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
    fn step_cached(&self, step: &StepInfo) {
        self.counts.cached.fetch_add(1, Ordering::Relaxed);
        self.line(format_args!(
            "[{}] {} (cached)",
            step.location, step.description
        ));
    }

    fn step_started(&self, step: &StepInfo, reason: &str) {
        self.counts.built.fetch_add(1, Ordering::Relaxed);
        self.line(format_args!(
            "[{}] {} (building: {reason})",
            step.location, step.description
        ));
    }

    fn step_output(&self, step: &StepInfo, line: &str) {
        self.line(format_args!("[{}]   {line}", step.location));
    }

    fn step_finished(&self, step: &StepInfo, elapsed: Duration) {
        self.line(format_args!(
            "[{}] done in {:.1}s",
            step.location,
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
    fn step_cached(&self, step: &StepInfo) {
        self.counts.cached.fetch_add(1, Ordering::Relaxed);
        self.event(serde_json::json!({
            "event": "step_cached", "index": step.index, "location": step.location,
            "step": step.description,
        }));
    }

    fn step_started(&self, step: &StepInfo, reason: &str) {
        self.counts.built.fetch_add(1, Ordering::Relaxed);
        self.event(serde_json::json!({
            "event": "step_started", "index": step.index, "location": step.location,
            "step": step.description, "reason": reason,
        }));
    }

    fn step_output(&self, step: &StepInfo, line: &str) {
        self.event(serde_json::json!({
            "event": "step_output", "index": step.index, "line": line,
        }));
    }

    fn step_finished(&self, step: &StepInfo, elapsed: Duration) {
        self.event(serde_json::json!({
            "event": "step_finished", "index": step.index, "location": step.location,
            "seconds": elapsed.as_secs_f64(),
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
