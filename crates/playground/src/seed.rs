//! What the playground puts in its registry and its git repo: the
//! sock-shop manifests with every image moved to the local registry (only
//! the bytes of each image value change), and a few tags around each tag
//! the manifests run, with distinct creation times.

use std::path::Path;

use flux_image::ImageRef;
use jiff::{SignedDuration, Timestamp};

/// One image value the manifests run, moved to the local registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedImage {
    /// The repository under the local registry, e.g. `weaveworksdemos/front-end`.
    pub repository: String,
    /// The tag the manifest runs (`latest` when it names none).
    pub tag: String,
}

/// A manifest file's text with every `image:` value moved to `host`, and
/// the images it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The new text: the old one with only the image values changed.
    pub text: String,
    /// The images found, in file order.
    pub images: Vec<MovedImage>,
}

/// Moves every `image:` value of a manifest to the registry at `host`
/// (`localhost:5000`): `weaveworksdemos/front-end:0.3.12` becomes
/// `localhost:5000/weaveworksdemos/front-end:0.3.12`, `mongo` becomes
/// `localhost:5000/mongo`. Quotes, indentation and line endings stay; values
/// that are not image references, or pin a digest, are left alone.
pub fn move_images(text: &str, host: &str) -> Moved {
    let mut out = String::with_capacity(text.len() + 64);
    let mut images = Vec::new();
    for line in text.split_inclusive('\n') {
        match move_line(line, host) {
            Some((moved, image)) => {
                out.push_str(&moved);
                images.push(image);
            }
            None => out.push_str(line),
        }
    }
    Moved { text: out, images }
}

/// The line with its image value moved, when it is an `image:` line.
fn move_line(line: &str, host: &str) -> Option<(String, MovedImage)> {
    let key = line.find("image:")?;
    let before = &line[..key];
    if !before.chars().all(|c| c == ' ' || c == '-') {
        return None;
    }
    let value_start = key + "image:".len();
    let rest = &line[value_start..];
    let body = rest.trim_end_matches(['\n', '\r']);
    let value = body.trim();
    if value.is_empty() || value.contains('#') {
        return None;
    }
    let (quote, bare) = match value.chars().next() {
        Some(q @ ('"' | '\'')) => (q.to_string(), value.trim_matches(q)),
        _ => (String::new(), value),
    };
    let reference = ImageRef::parse(bare).ok()?;
    if reference.digest().is_some() {
        return None;
    }
    let repository = local_path(&reference);
    let tag = reference.tag().unwrap_or("latest").to_string();
    let new_value = match reference.tag() {
        Some(tag) => format!("{quote}{host}/{repository}:{tag}{quote}"),
        None => format!("{quote}{host}/{repository}{quote}"),
    };
    let offset = value_start + rest.find(value).expect("the value is part of the line");
    let mut moved = String::with_capacity(line.len() + host.len() + 1);
    moved.push_str(&line[..offset]);
    moved.push_str(&new_value);
    moved.push_str(&line[offset + value.len()..]);
    Some((moved, MovedImage { repository, tag }))
}

/// The repository's path as the local registry holds it: Docker Hub's
/// familiar form (`mongo`, `weaveworksdemos/carts`), or the path under any
/// other registry.
fn local_path(reference: &ImageRef) -> String {
    let name = reference.name();
    if name.registry() == "docker.io" {
        name.familiar()
    } else {
        name.path().to_string()
    }
}

/// Copies every file of `from` into `to`, moving the images of YAML
/// files to `host`; returns the images found, each once.
pub fn copy_moved(from: &Path, to: &Path, host: &str) -> std::io::Result<Vec<MovedImage>> {
    std::fs::create_dir_all(to)?;
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut images: Vec<MovedImage> = Vec::new();
    for entry in entries {
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            for image in copy_moved(&entry.path(), &target, host)? {
                if !images.contains(&image) {
                    images.push(image);
                }
            }
            continue;
        }
        let bytes = std::fs::read(entry.path())?;
        let yaml = matches!(
            entry.path().extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let Some(text) = yaml
            .then(|| String::from_utf8(bytes.clone()).ok())
            .flatten()
        else {
            std::fs::write(&target, &bytes)?;
            continue;
        };
        let moved = move_images(&text, host);
        std::fs::write(&target, moved.text)?;
        for image in moved.images {
            if !images.contains(&image) {
                images.push(image);
            }
        }
    }
    Ok(images)
}

/// The tags to push for a tag the manifests run, oldest first: for
/// `major.minor.patch` (with any suffix), two patches before it (when they
/// exist), itself and the next one, so that a release has a newer tag to
/// move to and a listing has older ones to show; any other tag alone.
pub fn tags_around(tag: &str) -> Vec<String> {
    let Some((prefix, patch, suffix)) = split_patch(tag) else {
        return vec![tag.to_string()];
    };
    let first = patch.saturating_sub(2);
    (first..=patch + 1)
        .map(|p| format!("{prefix}{p}{suffix}"))
        .collect()
}

/// `0.3.12-rc` → (`0.3.`, 12, `-rc`).
fn split_patch(tag: &str) -> Option<(&str, u64, &str)> {
    let mut parts = tag.splitn(3, '.');
    let major = parts.next()?;
    let minor = parts.next()?;
    let rest = parts.next()?;
    if !is_number(major) || !is_number(minor) {
        return None;
    }
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let patch = rest[..digits].parse().ok()?;
    let prefix = &tag[..major.len() + minor.len() + 2];
    Some((prefix, patch, &rest[digits..]))
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Creation times for `count` tags pushed oldest first: a day apart, from
/// 1 November 2016 (the sock-shop's time), so every tag has its own.
pub fn creation_times(count: usize) -> Vec<Timestamp> {
    let start: Timestamp = "2016-11-01T10:00:00Z"
        .parse()
        .expect("a valid RFC 3339 time");
    (0..count)
        .map(|day| start + SignedDuration::from_hours(24 * day as i64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_move_to_the_local_registry_and_nothing_else_changes() {
        let text = "spec:\n  containers:\n  - name: a\n    image: weaveworksdemos/front-end:0.3.12\n  - image: mongo\r\n    name: b\n  - name: c\n    image: \"kbudde/rabbitmq-exporter\"  \n    env: {image: x}\n";
        let moved = move_images(text, "localhost:5000");
        assert_eq!(
            moved.text,
            "spec:\n  containers:\n  - name: a\n    image: localhost:5000/weaveworksdemos/front-end:0.3.12\n  - image: localhost:5000/mongo\r\n    name: b\n  - name: c\n    image: \"localhost:5000/kbudde/rabbitmq-exporter\"  \n    env: {image: x}\n"
        );
        let names: Vec<_> = moved
            .images
            .iter()
            .map(|i| format!("{}:{}", i.repository, i.tag))
            .collect();
        assert_eq!(
            names,
            [
                "weaveworksdemos/front-end:0.3.12",
                "mongo:latest",
                "kbudde/rabbitmq-exporter:latest"
            ]
        );
    }

    #[test]
    fn the_sock_shop_copy_differs_from_the_fixtures_only_by_the_registry_host() {
        let fixtures = flux_testkit::sock_shop_manifests();
        let copy = tempfile::tempdir().unwrap();
        let images = copy_moved(&fixtures, copy.path(), "localhost:5000").unwrap();
        assert_eq!(images.len(), 14, "{images:#?}");
        let mut compared = 0;
        for entry in std::fs::read_dir(&fixtures).unwrap() {
            let entry = entry.unwrap();
            let original = std::fs::read_to_string(entry.path()).unwrap();
            let moved = std::fs::read_to_string(copy.path().join(entry.file_name())).unwrap();
            assert_eq!(moved.replace("localhost:5000/", ""), original);
            let changed = moved.lines().zip(original.lines()).filter(|(a, b)| a != b);
            assert!(
                changed
                    .clone()
                    .all(|(a, _)| a.trim_start().starts_with("image: localhost:5000/"))
            );
            compared += changed.count();
        }
        assert_eq!(compared, 15);
    }

    #[test]
    fn digests_and_other_registries_are_handled() {
        let pinned = "    image: alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000\n";
        assert_eq!(move_images(pinned, "localhost:5000").text, pinned);
        let other = move_images("image: quay.io/team/app:1.0\n", "localhost:5000");
        assert_eq!(other.text, "image: localhost:5000/team/app:1.0\n");
    }

    #[test]
    fn tags_around_a_version_are_older_patches_itself_and_the_next() {
        assert_eq!(
            tags_around("0.3.12"),
            ["0.3.10", "0.3.11", "0.3.12", "0.3.13"]
        );
        assert_eq!(tags_around("0.3.0"), ["0.3.0", "0.3.1"]);
        assert_eq!(
            tags_around("3.6.8-management"),
            [
                "3.6.6-management",
                "3.6.7-management",
                "3.6.8-management",
                "3.6.9-management"
            ]
        );
        assert_eq!(tags_around("alpine"), ["alpine"]);
        assert_eq!(tags_around("latest"), ["latest"]);
        assert_eq!(tags_around("1.2"), ["1.2"]);
    }

    #[test]
    fn creation_times_are_distinct_and_increasing() {
        let times = creation_times(4);
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }
}
