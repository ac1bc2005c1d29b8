//! Image references as a file spells them: the repository exactly as
//! written, then the tag and digest.

use flux_image::ImageRef;

/// Splits an image as written into repository, tag and digest.
pub fn split(text: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    let name_start = rest.rfind('/').map_or(0, |slash| slash + 1);
    match rest[name_start..].rfind(':') {
        Some(colon) => {
            let colon = name_start + colon;
            (&rest[..colon], Some(&rest[colon + 1..]), digest)
        }
        None => (rest, None, digest),
    }
}

/// The file's spelling of its repository with the new image's tag and digest.
pub fn respell(old: &str, new: &ImageRef) -> String {
    let (repository, _, _) = split(old);
    let mut out = repository.to_string();
    if let Some(tag) = new.tag() {
        out.push(':');
        out.push_str(tag);
    }
    if let Some(digest) = new.digest() {
        out.push('@');
        out.push_str(digest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_keeps_registry_ports_in_the_repository() {
        assert_eq!(
            split("localhost:5000/app:1.0"),
            ("localhost:5000/app", Some("1.0"), None)
        );
        assert_eq!(
            split("localhost:5000/app"),
            ("localhost:5000/app", None, None)
        );
        assert_eq!(
            split("app:1@sha256:abc"),
            ("app", Some("1"), Some("sha256:abc"))
        );
    }

    #[test]
    fn respelling_keeps_the_repository_as_written() {
        let new = ImageRef::parse("postgres:16.2").unwrap();
        assert_eq!(
            respell("docker.io/library/postgres:16.1", &new),
            "docker.io/library/postgres:16.2"
        );
        let pinned = ImageRef::parse(
            "postgres@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        assert_eq!(
            respell("postgres:16.1", &pinned),
            "postgres@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
    }
}
