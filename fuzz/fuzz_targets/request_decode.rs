//! Fuzzes request parsing: any frame body must parse or be refused, never panic or over-allocate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vltava::api::parse(bytes::Bytes::copy_from_slice(data));
});
