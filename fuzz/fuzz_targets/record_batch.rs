//! Fuzzes produce-path batch validation and offset assignment: arbitrary bytes must be accepted or refused,
//! never panic; accepted input must survive offset assignment and re-validate.
//!
//! Random bytes almost never carry a valid CRC-32C, which would stop exploration at the checksum. So each
//! input is tried twice: as given, and with the first batch's CRC fixed up to match its (possibly garbage)
//! content, which lets the fuzzer reach header, count and record-walking checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vltava::log::batch;

fn check(data: &[u8]) {
    if let Ok(v) = batch::validate_producer_records(data, 1 << 20, false) {
        // Offsets and epoch are outside the CRC: the batch stays a valid producer batch.
        let mut copy = data.to_vec();
        batch::assign_offsets(&mut copy, &v, 1000, 3, None);
        assert!(batch::validate_producer_records(&copy, 1 << 20, false).is_ok(), "assigned batch must stay valid");
        // LogAppendTime rewrites attributes and max timestamp and recomputes the CRC: what is stored must
        // pass the checks a replica (or recovery) applies. (A producer may not send the LogAppendTime bit,
        // so producer validation would rightly refuse it.)
        let mut copy = data.to_vec();
        batch::assign_offsets(&mut copy, &v, 1000, 3, Some(1_700_000_000_000));
        assert!(batch::validate_follower_records(&copy).is_ok(), "LogAppendTime batch must stay valid");
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 61 {
        let mut fixed = data.to_vec();
        let declared = i32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
        let end = usize::try_from(declared).ok().map(|l| l.saturating_add(12)).unwrap_or(0).min(fixed.len());
        if end > 21 {
            let crc = crc32c::crc32c(&fixed[21..end]);
            fixed[17..21].copy_from_slice(&crc.to_be_bytes());
            check(&fixed);
        }
    }
});
