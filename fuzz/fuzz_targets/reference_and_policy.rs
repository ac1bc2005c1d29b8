//! Image references and tag policies from arbitrary text: never a panic, and
//! whatever parses renders to text that parses back to the same thing.
#![no_main]

use flux_image::{ImageRef, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(image) = ImageRef::parse(text) {
        let again = ImageRef::parse(&image.canonical()).expect("canonical form parses");
        assert_eq!(again, image);
        let familiar = ImageRef::parse(&image.familiar()).expect("familiar form parses");
        assert_eq!(familiar, image);
    }
    let (policy, tag) = text.split_once('\n').unwrap_or((text, "1.2.3"));
    if let Ok(policy) = policy.parse::<Policy>() {
        let _ = policy.check(tag);
    }
});
