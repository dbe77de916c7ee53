//! Fuzz target: a whole server connection (handshake response, auth,
//! commands, prepared statements) driven by arbitrary client bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tiox_sql::protocol::fuzz::session(data);
});
