//! Progress reports from the executor. The executor never prints; it calls a
//! [`Progress`] that the CLI chooses.

use std::io::Write;
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
}

/// Writes one line per event to stderr.
pub struct PlainProgress;

impl PlainProgress {
    fn line(&self, text: std::fmt::Arguments) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{text}");
    }
}

impl Progress for PlainProgress {
    fn step_cached(&self, location: &str, description: &str) {
        self.line(format_args!("[{location}] {description} (cached)"));
    }

    fn step_started(&self, location: &str, description: &str, reason: &str) {
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
}
