//! Properties over generated manifests in mixed styles.

use std::path::Path;

use flux_manifests::{Checkout, LoadOptions};
use flux_testkit::generate;
use proptest::prelude::*;

fn load(text: &str) -> Checkout {
    Checkout::from_text(Path::new("g.yaml"), text, LoadOptions::default())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_generated_container_is_found(seed in any::<u64>(), workloads in 1usize..6) {
        let file = &generate::files(workloads, 1, seed)[0];
        let checkout = load(&file.text);
        prop_assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
        let found: Vec<(String, Vec<(String, String)>)> = checkout
            .workloads
            .iter()
            .map(|w| (w.id.to_string(), w.containers.iter().map(|c| (c.name.clone(), c.spelling.clone())).collect()))
            .collect();
        let expected: Vec<(String, Vec<(String, String)>)> = file
            .workloads
            .iter()
            .map(|w| (w.id.clone(), w.containers.iter().map(|c| (c.name.clone(), c.image.clone())).collect()))
            .collect();
        prop_assert_eq!(found, expected);
    }

    #[test]
    fn a_single_image_edit_changes_only_the_target_span(
        seed in any::<u64>(),
        workloads in 1usize..6,
        pick in any::<usize>(),
        tag in "[a-z0-9][a-z0-9._-]{0,20}",
    ) {
        let before = generate::files(workloads, 1, seed).remove(0).text;
        let checkout = load(&before);
        let targets: Vec<_> = checkout
            .workloads
            .iter()
            .flat_map(|w| w.containers.iter().map(move |c| (w, c)))
            .collect();
        let (workload, container) = targets[pick % targets.len()];
        let image = container.image.with_tag(&tag).unwrap();
        let after = checkout.set_image(&before, &workload.id, &container.name, &image).unwrap();
        let span = container.span.clone();
        prop_assert_eq!(&before[..span.start], &after[..span.start]);
        let tail = before.len() - span.end;
        prop_assert_eq!(&before[span.end..], &after[after.len() - tail..]);
        let edited = &after[span.start..after.len() - tail];
        prop_assert!(edited.contains(&tag), "{} lacks {}", edited, tag);

        // Read back: the target runs the new image, every other container its old one.
        let reread = load(&after);
        for (w, c) in &targets {
            let now = reread.workload(&w.id).unwrap().container(&c.name).unwrap();
            if w.id == workload.id && c.name == container.name {
                prop_assert_eq!(&now.image, &image);
            } else {
                prop_assert_eq!(&now.spelling, &c.spelling);
            }
        }
    }
}
