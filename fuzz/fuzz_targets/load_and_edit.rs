//! libFuzzer driving [`flux_fuzz::load_and_edit`]: manifests from any text.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flux_fuzz::load_and_edit(data));
