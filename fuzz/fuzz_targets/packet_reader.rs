//! Fuzz target: the packet reader (framing, sequence ids, split payloads,
//! limits) on arbitrary client bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tiox_sql::protocol::fuzz::packets(data);
});
