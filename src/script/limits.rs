//! The limits a script runs under, so that a runaway or hostile script
//! stops with a clear error instead of hanging or exhausting memory.
//!
//! Rhai itself reads no host files and runs no host commands: the engine
//! has no file or process functions, and the only paths a script reaches
//! are the local paths the builder functions declare.

use rhai::{Dynamic, Engine, EvalAltResult};

/// Operations (expressions, statements, calls) one evaluation may run. A
/// 2,000-step script takes about a hundred thousand; `loop {}` reaches the
/// limit in a second or two.
pub const MAX_OPERATIONS: u64 = 50_000_000;

/// Nested function calls, so a function that recurses without end stops.
pub const MAX_CALL_LEVELS: usize = 64;

pub const MAX_STRING_BYTES: usize = 16 * 1024 * 1024;
/// Rhai checks an array's or map's size on every change by walking it, so
/// filling one costs the square of its size: 10,000 items take about a
/// second.
pub const MAX_ARRAY_ITEMS: usize = 10_000;
pub const MAX_MAP_ENTRIES: usize = 10_000;

/// Modules one evaluation may load: the imports of one file, and the
/// distinct modules of the whole import tree.
pub const MAX_MODULES: usize = 1_000;

/// Resident memory of the whole process while a script runs. The size
/// limits above bound each value, not how many of them a script keeps: a
/// map of 10,000 strings of 16 MiB would hold 160 GiB.
pub const MAX_RESIDENT_BYTES: u64 = 1 << 30;

/// Operations between two readings of the resident memory. A reading
/// costs a few microseconds, and a loop that adds a large string in each
/// pass grows by tens of megabytes in this many operations.
const MEMORY_CHECK_INTERVAL: u64 = 1_024;

/// The token that ends an evaluation over MAX_RESIDENT_BYTES.
const MEMORY_LIMIT_TOKEN: &str = "imgscript: memory limit";

pub fn apply(engine: &mut Engine) {
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_call_levels(MAX_CALL_LEVELS);
    engine.set_max_string_size(MAX_STRING_BYTES);
    engine.set_max_array_size(MAX_ARRAY_ITEMS);
    engine.set_max_map_size(MAX_MAP_ENTRIES);
    engine.set_max_modules(MAX_MODULES);
    engine.on_progress(|operations| {
        let over = operations % MEMORY_CHECK_INTERVAL == 0
            && resident_bytes().is_some_and(|bytes| bytes > MAX_RESIDENT_BYTES);
        over.then(|| Dynamic::from(MEMORY_LIMIT_TOKEN))
    });
    // `eval` would run text built at run time, out of reach of `imgscript
    // check` and the editors' diagnostics.
    engine.disable_symbol("eval");
}

/// Returns the message and help of an error that a limit raised.
pub fn describe(error: &EvalAltResult) -> Option<(String, String)> {
    let described = match error {
        EvalAltResult::ErrorTooManyOperations(_) => (
            format!("the script ran more than {MAX_OPERATIONS} operations, the limit"),
            "look for a loop that never ends".to_string(),
        ),
        EvalAltResult::ErrorStackOverflow(_) => (
            format!("function calls nested deeper than {MAX_CALL_LEVELS} levels, the limit"),
            "look for a function that calls itself without end".to_string(),
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => (
            format!("{} exceeds its limit", what.to_lowercase()),
            format!(
                "a string may hold {MAX_STRING_BYTES} bytes, an array {MAX_ARRAY_ITEMS} items and a map {MAX_MAP_ENTRIES} entries"
            ),
        ),
        EvalAltResult::ErrorTooManyModules(_) => (
            format!("the script imported more than {MAX_MODULES} modules, the limit"),
            "a file may import at most that many modules, and so may all modules together"
                .to_string(),
        ),
        EvalAltResult::ErrorTerminated(token, _)
            if token.clone().into_immutable_string().ok().as_deref()
                == Some(MEMORY_LIMIT_TOKEN) =>
        {
            (
                format!(
                    "the script used more than {} of memory, the limit",
                    bytesize::ByteSize(MAX_RESIDENT_BYTES).display().iec()
                ),
                "look for a loop that keeps adding to a map, an array or a string".to_string(),
            )
        }
        _ => return None,
    };
    Some(described)
}

/// Returns the resident memory of this process, from /proc/self/statm.
fn resident_bytes() -> Option<u64> {
    use nix::unistd::{sysconf, SysconfVar};
    let page_bytes = sysconf(SysconfVar::PAGE_SIZE).ok()??;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_bytes as u64)
}
