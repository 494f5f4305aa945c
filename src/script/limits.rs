//! The limits a script runs under, so that a runaway or hostile script
//! stops with a clear error instead of hanging or exhausting memory.
//!
//! Rhai itself reads no host files and runs no host commands: the engine
//! has no file or process functions, and the only paths a script reaches
//! are the local paths the builder functions declare.

use rhai::{Engine, EvalAltResult};

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

/// Modules one evaluation may load, counting each import.
pub const MAX_MODULES: usize = 1_000;

pub fn apply(engine: &mut Engine) {
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_call_levels(MAX_CALL_LEVELS);
    engine.set_max_string_size(MAX_STRING_BYTES);
    engine.set_max_array_size(MAX_ARRAY_ITEMS);
    engine.set_max_map_size(MAX_MAP_ENTRIES);
    engine.set_max_modules(MAX_MODULES);
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
            "look for modules that import each other".to_string(),
        ),
        _ => return None,
    };
    Some(described)
}
