//! Properties over generated input: parsing never panics, and canonical and
//! familiar renderings parse back to the same reference.

use flux_image::{ImageRef, Policy};
use proptest::prelude::*;

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((\\.|_|__|-+)[a-z0-9]{1,6}){0,2}"
}

fn registry() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("docker.io".to_string())),
        Just(Some("localhost".to_string())),
        "[a-z][a-z0-9-]{0,8}[a-z0-9]\\.(io|com)(:[0-9]{1,5})?".prop_map(Some),
        Just(Some("[::1]:5000".to_string())),
    ]
}

fn reference() -> impl Strategy<Value = String> {
    (
        registry(),
        prop::collection::vec(component(), 1..4),
        prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        prop::option::of("[0-9a-f]{64}"),
    )
        .prop_map(|(registry, path, tag, digest)| {
            let mut text = registry.map(|r| format!("{r}/")).unwrap_or_default();
            text.push_str(&path.join("/"));
            if let Some(tag) = tag {
                text.push(':');
                text.push_str(&tag);
            }
            if let Some(hex) = digest {
                text.push_str("@sha256:");
                text.push_str(&hex);
            }
            text
        })
}

proptest! {
    #[test]
    fn canonical_and_familiar_forms_parse_back_to_the_same_reference(text in reference()) {
        let Ok(image) = ImageRef::parse(&text) else {
            // A 64-hex Docker Hub name is legitimately refused.
            return Ok(());
        };
        let canonical = ImageRef::parse(&image.canonical()).expect("canonical form parses");
        prop_assert_eq!(&canonical, &image);
        prop_assert_eq!(canonical.canonical(), image.canonical());
        let familiar = ImageRef::parse(&image.familiar()).expect("familiar form parses");
        prop_assert_eq!(familiar, image);
    }

    #[test]
    fn reference_parsing_never_panics(text in "\\PC{0,80}") {
        if let Err(error) = ImageRef::parse(&text) {
            prop_assert!(error.position <= text.chars().count());
        }
    }

    #[test]
    fn policy_parsing_and_checking_never_panic(policy in "(semver:|regexp:|glob:)?[ -~]{0,30}", tag in "[ -~]{0,20}") {
        if let Ok(policy) = policy.parse::<Policy>() {
            let _ = policy.check(&tag);
            let reparsed: Policy = policy.to_string().parse().expect("display form parses");
            prop_assert_eq!(reparsed.to_string(), policy.to_string());
        }
    }
}
