//! Progress reports from the executor. The executor never prints; it calls a
//! [`Progress`] that the CLI chooses.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

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
    /// Reports a step that failed after `elapsed`, with the error's message.
    fn step_failed(&self, step: &StepInfo, elapsed: Duration, message: &str);
    fn pulling(&self, reference: &str);
    /// Reports the bytes of a pull downloaded so far, of the `total` the
    /// engine has announced.
    fn pull_bytes(&self, _reference: &str, _downloaded: u64, _total: u64) {}
    fn pulled(&self, reference: &str, elapsed: Duration);
    /// Reports a local folder whose files are hashed for a cache key, when
    /// that may take a while.
    fn hashing(&self, context: &str, files: usize);
    fn hashed(&self, context: &str, elapsed: Duration);
    /// Reports the end of a build that took `elapsed` in all.
    fn summary(&self, _elapsed: Duration) {}
    /// Reports each step still running when signal `signal` stopped the
    /// run, as failed.
    fn stopped(&self, signal: i32);
}

/// How a run reports progress, chosen with `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A live view when stderr is a terminal, else plain lines.
    Auto,
    /// One line per event, for logs and CI.
    Plain,
    /// One JSON object per line, for tools.
    Json,
}

impl ProgressMode {
    pub fn reporter(self) -> Box<dyn Progress> {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => {
                Box::new(LiveProgress::default())
            }
            ProgressMode::Auto | ProgressMode::Plain => Box::new(PlainProgress::default()),
            ProgressMode::Json => Box::new(JsonProgress::default()),
        }
    }
}

/// Counts of the steps a build reused, started and finished, for its
/// summary, and the steps running now. A step that started and never
/// finished failed (or was stopped).
#[derive(Default)]
struct StepCounts {
    cached: AtomicUsize,
    started: AtomicUsize,
    built: AtomicUsize,
    running: Mutex<HashMap<usize, (StepInfo, Instant)>>,
}

impl StepCounts {
    fn cached(&self) -> usize {
        self.cached.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn started(&self, step: &StepInfo) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.running_steps()
            .insert(step.index, (step.clone(), Instant::now()));
    }

    fn built(&self, step: &StepInfo) {
        self.built.fetch_add(1, Ordering::Relaxed);
        self.ended(step);
    }

    fn ended(&self, step: &StepInfo) {
        self.running_steps().remove(&step.index);
    }

    /// Returns the steps running now, in plan order, with how long each
    /// has run, and clears the list.
    fn take_running(&self) -> Vec<(StepInfo, Duration)> {
        let mut running: Vec<(StepInfo, Duration)> = self
            .running_steps()
            .drain()
            .map(|(_, (step, started))| (step, started.elapsed()))
            .collect();
        running.sort_by_key(|(step, _)| step.index);
        running
    }

    fn running_steps(&self) -> std::sync::MutexGuard<'_, HashMap<usize, (StepInfo, Instant)>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns (built, cached, failed).
    fn totals(&self) -> (usize, usize, usize) {
        let built = self.built.load(Ordering::Relaxed);
        let started = self.started.load(Ordering::Relaxed);
        let cached = self.cached.load(Ordering::Relaxed);
        (built, cached, started.saturating_sub(built))
    }

    /// Formats the summary line of the plain and live views; failed steps
    /// are named only when there are some.
    fn line(&self, elapsed: Duration) -> String {
        let (built, cached, failed) = self.totals();
        let failed = if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        };
        format!(
            "steps: {built} built, {cached} cached{failed}, in {:.1}s",
            elapsed.as_secs_f64()
        )
    }
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
        self.counts.cached();
        self.line(format_args!(
            "[{}] {} (cached)",
            step.location, step.description
        ));
    }

    fn step_started(&self, step: &StepInfo, reason: &str) {
        self.counts.started(step);
        self.line(format_args!(
            "[{}] {} (building: {reason})",
            step.location, step.description
        ));
    }

    fn step_output(&self, step: &StepInfo, line: &str) {
        self.line(format_args!("[{}]   {line}", step.location));
    }

    fn step_finished(&self, step: &StepInfo, elapsed: Duration) {
        self.counts.built(step);
        self.line(format_args!(
            "[{}] done in {:.1}s",
            step.location,
            elapsed.as_secs_f64()
        ));
    }

    fn step_failed(&self, step: &StepInfo, elapsed: Duration, message: &str) {
        self.counts.ended(step);
        // The error itself follows the summary; only a stop is named here.
        let ending = if message.starts_with("stopped") {
            message
        } else {
            "failed"
        };
        self.line(format_args!(
            "[{}] {ending} after {:.1}s",
            step.location,
            elapsed.as_secs_f64()
        ));
    }

    fn pulling(&self, reference: &str) {
        self.line(format_args!("pulling {reference}"));
    }

    fn pulled(&self, reference: &str, elapsed: Duration) {
        self.line(format_args!(
            "pulled {reference} in {:.1}s",
            elapsed.as_secs_f64()
        ));
    }

    fn hashing(&self, context: &str, files: usize) {
        self.line(format_args!("hashing {context} ({files} files)"));
    }

    fn hashed(&self, context: &str, elapsed: Duration) {
        self.line(format_args!(
            "hashed {context} in {:.1}s",
            elapsed.as_secs_f64()
        ));
    }

    fn stopped(&self, signal: i32) {
        for (step, elapsed) in self.counts.take_running() {
            self.step_failed(&step, elapsed, &format!("stopped by signal {signal}"));
        }
    }

    fn summary(&self, elapsed: Duration) {
        self.line(format_args!("{}", self.counts.line(elapsed)));
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
        self.counts.cached();
        self.event(serde_json::json!({
            "event": "step_cached", "index": step.index, "location": step.location,
            "step": step.description,
        }));
    }

    fn step_started(&self, step: &StepInfo, reason: &str) {
        self.counts.started(step);
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
        self.counts.built(step);
        self.event(serde_json::json!({
            "event": "step_finished", "index": step.index, "location": step.location,
            "seconds": elapsed.as_secs_f64(),
        }));
    }

    fn step_failed(&self, step: &StepInfo, elapsed: Duration, message: &str) {
        self.counts.ended(step);
        self.event(serde_json::json!({
            "event": "step_failed", "index": step.index, "location": step.location,
            "seconds": elapsed.as_secs_f64(), "error": message,
        }));
    }

    fn pulling(&self, reference: &str) {
        self.event(serde_json::json!({ "event": "pulling", "reference": reference }));
    }

    fn pulled(&self, reference: &str, elapsed: Duration) {
        self.event(serde_json::json!({
            "event": "pulled", "reference": reference, "seconds": elapsed.as_secs_f64(),
        }));
    }

    fn hashing(&self, context: &str, files: usize) {
        self.event(serde_json::json!({ "event": "hashing", "context": context, "files": files }));
    }

    fn hashed(&self, context: &str, elapsed: Duration) {
        self.event(serde_json::json!({
            "event": "hashed", "context": context, "seconds": elapsed.as_secs_f64(),
        }));
    }

    fn stopped(&self, signal: i32) {
        for (step, elapsed) in self.counts.take_running() {
            self.step_failed(&step, elapsed, &format!("stopped by signal {signal}"));
        }
    }

    fn summary(&self, elapsed: Duration) {
        let (built, cached, failed) = self.counts.totals();
        self.event(serde_json::json!({
            "event": "summary", "built": built, "cached": cached, "failed": failed,
            "seconds": elapsed.as_secs_f64(),
        }));
    }
}

/// A live view on a terminal: one line per running step with its elapsed
/// time and last output line, a single line counting cached steps, and a
/// line per finished step kept above them.
pub struct LiveProgress {
    lines: MultiProgress,
    cached: ProgressBar,
    running: Mutex<HashMap<usize, ProgressBar>>,
    /// Pulls and hashing, by reference or folder.
    tasks: Mutex<HashMap<String, ProgressBar>>,
    counts: StepCounts,
}

/// How often running steps redraw their elapsed time.
const LIVE_TICK: Duration = Duration::from_millis(120);

impl Default for LiveProgress {
    fn default() -> Self {
        let lines = MultiProgress::new();
        let cached = lines.add(ProgressBar::hidden());
        cached.set_style(ProgressStyle::with_template("  {msg}").expect("a valid template"));
        LiveProgress {
            lines,
            cached,
            running: Mutex::default(),
            tasks: Mutex::default(),
            counts: StepCounts::default(),
        }
    }
}

impl LiveProgress {
    fn spinner(&self, prefix: String) -> ProgressBar {
        let style =
            ProgressStyle::with_template("{spinner:.cyan} {prefix} {elapsed:.dim} {wide_msg:.dim}")
                .expect("a valid template");
        let bar = self.lines.add(ProgressBar::new_spinner());
        bar.set_style(style);
        bar.set_prefix(prefix);
        bar.enable_steady_tick(LIVE_TICK);
        bar
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<usize, ProgressBar>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProgressBar>> {
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces a task's live line with `done`, kept above the live lines.
    fn finish_task(&self, name: &str, done: String) {
        if let Some(bar) = self.tasks().remove(name) {
            bar.finish_and_clear();
            self.lines.remove(&bar);
        }
        let _ = self.lines.println(done);
    }
}

impl Progress for LiveProgress {
    fn step_cached(&self, step: &StepInfo) {
        let cached = self.counts.cached();
        if self.cached.is_hidden() {
            self.cached
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        let noun = if cached == 1 { "step" } else { "steps" };
        self.cached.set_message(format!(
            "{cached} cached {noun}, the last: {}",
            step.description
        ));
    }

    fn step_started(&self, step: &StepInfo, _reason: &str) {
        self.counts.started(step);
        let bar = self.spinner(format!("[{}] {}", step.location, step.description));
        self.running().insert(step.index, bar);
    }

    fn step_output(&self, step: &StepInfo, line: &str) {
        if let Some(bar) = self.running().get(&step.index) {
            bar.set_message(line.trim_end().to_string());
        }
    }

    fn step_finished(&self, step: &StepInfo, elapsed: Duration) {
        self.counts.built(step);
        self.end_step_line(step, '✓', elapsed);
    }

    fn step_failed(&self, step: &StepInfo, elapsed: Duration, _message: &str) {
        self.counts.ended(step);
        self.end_step_line(step, '✗', elapsed);
    }

    fn pulling(&self, reference: &str) {
        let bar = self.spinner(format!("pulling {reference}"));
        self.tasks().insert(reference.to_string(), bar);
    }

    fn pull_bytes(&self, reference: &str, downloaded: u64, total: u64) {
        if let Some(bar) = self.tasks().get(reference) {
            bar.set_message(format!(
                "{} of {}",
                indicatif::HumanBytes(downloaded),
                indicatif::HumanBytes(total)
            ));
        }
    }

    fn pulled(&self, reference: &str, elapsed: Duration) {
        self.finish_task(
            reference,
            format!("✓ pulled {reference} ({:.1}s)", elapsed.as_secs_f64()),
        );
    }

    fn hashing(&self, context: &str, files: usize) {
        let bar = self.spinner(format!("hashing {context}"));
        bar.set_message(format!("{files} files"));
        self.tasks().insert(context.to_string(), bar);
    }

    fn hashed(&self, context: &str, elapsed: Duration) {
        self.finish_task(
            context,
            format!("✓ hashed {context} ({:.1}s)", elapsed.as_secs_f64()),
        );
    }

    fn stopped(&self, signal: i32) {
        for (step, elapsed) in self.counts.take_running() {
            self.step_failed(&step, elapsed, &format!("stopped by signal {signal}"));
        }
    }

    fn summary(&self, elapsed: Duration) {
        self.clear();
        let _ = writeln!(std::io::stderr().lock(), "{}", self.counts.line(elapsed));
    }
}

impl LiveProgress {
    /// Replaces a step's running line with a line that stays, marked with
    /// `mark`.
    fn end_step_line(&self, step: &StepInfo, mark: char, elapsed: Duration) {
        if let Some(bar) = self.running().remove(&step.index) {
            bar.finish_and_clear();
            self.lines.remove(&bar);
        }
        let _ = self.lines.println(format!(
            "{mark} [{}] {} ({:.1}s)",
            step.location,
            step.description,
            elapsed.as_secs_f64()
        ));
    }

    /// Takes every live line off the screen, so that what follows (the
    /// summary, or an error) starts on a clean line.
    fn clear(&self) {
        for (_, bar) in self.running().drain() {
            bar.finish_and_clear();
        }
        for (_, bar) in self.tasks().drain() {
            bar.finish_and_clear();
        }
        self.cached.finish_and_clear();
        let _ = self.lines.clear();
    }
}

impl Drop for LiveProgress {
    fn drop(&mut self) {
        self.clear();
    }
}
