//! Workload ids as typed on the command line, in every spelling Flux v1's
//! fluxctl read: `<namespace>:<kind>/<name>`, `<cluster>:<kind>/<name>`,
//! `<kind>/<name>` (in `--namespace`, else the default namespace) and the
//! old `<namespace>/<name>` (that namespace's Deployment).
//!
//! Every verb reads its ids here, before anything is asked or written, so a
//! malformed id is refused the same way everywhere.

use flux_manifests::{CLUSTER, ResourceId};

/// The kinds a `<kind>/<name>` id may start with; any other first part is
/// the namespace of the old `<namespace>/<name>` spelling.
const WORKLOAD_KINDS: &[&str] = &[
    "deployment",
    "daemonset",
    "statefulset",
    "replicaset",
    "cronjob",
    "job",
    "pod",
    "helmrelease",
    "fluxhelmrelease",
    "kustomization",
];

/// An id that reads as none of the spellings.
#[derive(Debug, thiserror::Error)]
#[error(
    "{flag} {text}: not a workload id; expected <namespace>:<kind>/<name>, <kind>/<name> \
     or <namespace>/<name>, with namespace and kind of letters, digits, '-' and '_' and a name \
     of those and '.' or ':'"
)]
pub struct InvalidId {
    flag: String,
    text: String,
}

/// Where ids that name no namespace are.
#[derive(Debug, Clone, Copy)]
pub struct Namespaces<'a> {
    /// `--namespace`, when given.
    pub given: Option<&'a str>,
    /// The namespace when none is given (`default`, or `--default-namespace`).
    pub default: &'a str,
}

impl Namespaces<'_> {
    /// Reads one id given with `flag` (named in the error).
    pub fn parse(&self, flag: &str, text: &str) -> Result<ResourceId, InvalidId> {
        let invalid = || InvalidId {
            flag: flag.to_string(),
            text: text.to_string(),
        };
        if let Some((namespace, rest)) = text.split_once(':') {
            let (kind, name) = rest.split_once('/').ok_or_else(invalid)?;
            // Kustomizations are named by their folder, slashes included.
            let name_ok = if namespace == CLUSTER {
                name.split('/').all(is_name)
            } else {
                is_name(name)
            };
            if !(namespace == CLUSTER || is_word(namespace)) || !is_word(kind) || !name_ok {
                return Err(invalid());
            }
            return Ok(ResourceId::new(namespace, kind, name));
        }
        let (first, name) = text.split_once('/').ok_or_else(invalid)?;
        if !is_word(first) {
            return Err(invalid());
        }
        if WORKLOAD_KINDS.contains(&first.to_ascii_lowercase().as_str()) {
            if !is_name(name) {
                return Err(invalid());
            }
            let namespace = self.given.unwrap_or(self.default);
            return Ok(ResourceId::new(namespace, first, name));
        }
        // The old service spelling: its name was as plain as a namespace.
        if !is_word(name) {
            return Err(invalid());
        }
        Ok(ResourceId::new(first, "deployment", name))
    }

    /// Reads every id of a list flag.
    pub fn parse_all(&self, flag: &str, texts: &[String]) -> Result<Vec<ResourceId>, InvalidId> {
        texts.iter().map(|text| self.parse(flag, text)).collect()
    }
}

/// Letters, digits, `-` and `_`: what v1 allowed in namespaces and kinds.
fn is_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A word that may also hold `.` and `:`, as names do.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Namespaces<'static> = Namespaces {
        given: None,
        default: "default",
    };

    fn read(namespaces: Namespaces<'_>, text: &str) -> String {
        namespaces.parse("--workload", text).unwrap().to_string()
    }

    #[test]
    fn every_v1_spelling_reads_as_a_full_id() {
        assert_eq!(
            read(DEFAULT, "sock-shop:Deployment/front-end"),
            "sock-shop:deployment/front-end"
        );
        assert_eq!(
            read(DEFAULT, "sock-shop/front-end"),
            "sock-shop:deployment/front-end"
        );
        assert_eq!(
            read(DEFAULT, "deployment/helloworld"),
            "default:deployment/helloworld"
        );
        let in_shop = Namespaces {
            given: Some("sock-shop"),
            default: "default",
        };
        assert_eq!(
            read(in_shop, "statefulset/carts-db"),
            "sock-shop:statefulset/carts-db"
        );
        assert_eq!(
            read(DEFAULT, "<cluster>:kustomization/overlays/prod"),
            "<cluster>:kustomization/overlays/prod"
        );
        assert_eq!(read(DEFAULT, "ns:job/name.v1:2"), "ns:job/name.v1:2");
    }

    #[test]
    fn malformed_ids_are_refused_naming_the_flag() {
        for bad in [
            "name.space:deployment/x",
            "front-end",
            "ns:deployment/",
            ":deployment/x",
            "ns:/x",
            "ns:deployment/a/b",
            "ns:deploy ment/x",
            "name.space/x",
            "deployment/",
        ] {
            let error = DEFAULT.parse("--exclude", bad).expect_err(bad);
            assert!(
                error.to_string().starts_with(&format!("--exclude {bad}: ")),
                "{error}"
            );
        }
    }
}
