//! Fuzz target: arbitrary SQL text through the parser, the table builder,
//! the planner and the evaluator (`tiox_sql::engine::fuzz::sql`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tiox_sql::engine::fuzz::sql(data);
});
