//! libFuzzer driving [`flux_fuzz::reference_and_policy`]: image references
//! and tag policies from any text.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flux_fuzz::reference_and_policy(data));
