//! Any text: the fast reader, whenever it takes the text, builds the tree
//! the full parser builds; loading never panics; and every edit either is
//! refused or yields text that reads back with the intended value and
//! nothing else lost.

#![no_main]

use std::path::Path;

use flux_manifests::{Checkout, LoadOptions, PolicyUpdate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert!(flux_manifests::fast_reader_agrees(text), "fast reader differs: {text:?}");
    let path = Path::new("fuzz.yaml");
    let checkout = Checkout::from_text(path, text, LoadOptions::default());
    for workload in &checkout.workloads {
        for container in &workload.containers {
            let Ok(image) = container.image.with_tag("fuzzed-1") else {
                continue;
            };
            if let Ok(edited) = checkout.set_image(text, &workload.id, &container.name, &image) {
                let reread = Checkout::from_text(path, &edited, LoadOptions::default());
                let now = reread.workload(&workload.id).and_then(|w| w.container(&container.name));
                assert_eq!(now.map(|c| &c.image), Some(&image));
                assert_eq!(reread.resources.len(), checkout.resources.len());
            }
        }
        if let Ok(edited) = checkout.update_policies(text, &workload.id, &PolicyUpdate::automate()) {
            let reread = Checkout::from_text(path, &edited, LoadOptions::default());
            assert!(reread.workload(&workload.id).is_some_and(|w| w.policies.automated));
        }
    }
});
