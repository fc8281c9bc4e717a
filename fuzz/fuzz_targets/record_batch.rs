//! Fuzzes produce-path batch validation and offset assignment: arbitrary bytes must be accepted or refused,
//! never panic; accepted input must survive offset assignment and re-validate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vltava::log::batch;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = batch::validate_producer_records(data, 1 << 20) {
        let mut copy = data.to_vec();
        batch::assign_offsets(&mut copy, &v, 1000, 3, Some(1_700_000_000_000));
        assert!(batch::validate_producer_records(&copy, 1 << 20).is_ok(), "assigned batch must stay valid");
    }
});
