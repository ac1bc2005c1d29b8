//! The properties the fuzz targets check, as plain functions of the input
//! bytes: the libFuzzer targets in `fuzz_targets/` call them, and any other
//! engine (or a test replaying saved inputs) can call them the same way.
//! A broken property panics.

use std::path::Path;

use flux_image::{Candidate, ImageRef, Policy, Rejection};
use flux_manifests::{Checkout, LoadOptions, PolicyUpdate};

/// Image references and tag policies from arbitrary text.
///
/// The whole input, when it parses as a reference, renders in its
/// canonical and familiar forms to text that parses back to it. Its first
/// line as a policy: the policy's text parses back to the same policy, and
/// held against the other lines as tags it never panics, says why it
/// rejects a tag in terms that hold (a comparator it names fails on its own),
/// and orders what it admits (a sort with an inconsistent order panics).
pub fn reference_and_policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(image) = ImageRef::parse(text) {
        let again = ImageRef::parse(&image.canonical()).expect("canonical form parses");
        assert_eq!(again, image);
        let familiar = ImageRef::parse(&image.familiar()).expect("familiar form parses");
        assert_eq!(familiar, image);
    }
    let mut lines = text.split('\n');
    let Some(Ok(policy)) = lines.next().map(str::parse::<Policy>) else {
        return;
    };
    let written = policy.to_string();
    let reread: Policy = written.parse().expect("a policy's text parses");
    assert_eq!(reread, policy, "{written:?} reads back differently");
    let tags: Vec<&str> = lines.collect();
    let tags = if tags.is_empty() { vec!["1.2.3"] } else { tags };
    for tag in &tags {
        if let Err(Rejection::OutsideRange(failed)) = policy.check(tag) {
            for comparator in failed {
                let alone: Policy = format!("semver:{comparator}")
                    .parse()
                    .expect("a failed comparator, as written in the message, parses");
                assert!(
                    !alone.admits(tag),
                    "{comparator:?} is named as failing on {tag:?} but admits it"
                );
            }
        }
    }
    let verdict = policy.judge(tags.iter().map(|tag| Candidate::new(*tag)));
    assert!(verdict.admitted.iter().all(|c| policy.admits(&c.tag)));
}

/// Any text as a manifest file: the fast reader, whenever it takes the
/// text, builds the tree the full parser builds; loading never panics; and
/// every edit either is refused or yields text that reads back with the
/// intended value and nothing else lost.
pub fn load_and_edit(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert!(
        flux_manifests::fast_reader_agrees(text),
        "fast reader differs: {text:?}"
    );
    let path = Path::new("fuzz.yaml");
    let checkout = Checkout::from_text(path, text, LoadOptions::default());
    for workload in &checkout.workloads {
        for container in &workload.containers {
            let Ok(image) = container.image.with_tag("fuzzed-1") else {
                continue;
            };
            if let Ok(edited) = checkout.set_image(text, &workload.id, &container.name, &image) {
                let reread = Checkout::from_text(path, &edited, LoadOptions::default());
                let now = reread
                    .workload(&workload.id)
                    .and_then(|w| w.container(&container.name));
                assert_eq!(now.map(|c| &c.image), Some(&image));
                assert_eq!(reread.resources.len(), checkout.resources.len());
            }
        }
        if let Ok(edited) = checkout.update_policies(text, &workload.id, &PolicyUpdate::automate())
        {
            let reread = Checkout::from_text(path, &edited, LoadOptions::default());
            assert!(
                reread
                    .workload(&workload.id)
                    .is_some_and(|w| w.policies.automated)
            );
        }
    }
}
