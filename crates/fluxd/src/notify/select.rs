//! Which notices an endpoint gets: by kind and by workload glob.

use std::collections::BTreeSet;

use super::{Notice, NoticeKind};

/// An endpoint's choice of notices. Empty kinds or globs choose every one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Kinds wanted; empty is all.
    pub kinds: BTreeSet<NoticeKind>,
    /// Globs over object ids (`namespace:kind/name`, kind lower-case); `*`
    /// matches any run of characters. Empty is all.
    pub workloads: Vec<String>,
}

impl Selection {
    /// Whether `notice` is wanted. With workload globs, a notice is wanted
    /// when one of its objects matches one; a notice about no object (a file
    /// that does not parse) is then not wanted.
    pub fn wants(&self, notice: &Notice) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&notice.kind) {
            return false;
        }
        if self.workloads.is_empty() {
            return true;
        }
        notice.objects.iter().any(|object| {
            let id = object.id();
            self.workloads.iter().any(|glob| glob_matches(glob, &id))
        })
    }
}

/// `*`-only glob matching, the whole text.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::ObjectRef;

    fn release_of(id: &str) -> Notice {
        let object = ObjectRef::workload(id).expect("a workload id");
        Notice::new(NoticeKind::Release, "released").about(object)
    }

    #[test]
    fn globs_match_whole_ids() {
        assert!(glob_matches("default:*", "default:deployment/front-end"));
        assert!(glob_matches(
            "*:deployment/front-*",
            "sock-shop:deployment/front-end"
        ));
        assert!(glob_matches("*/front-end", "default:deployment/front-end"));
        assert!(!glob_matches("default:*", "sock-shop:deployment/front-end"));
        assert!(!glob_matches("*/front", "default:deployment/front-end"));
        assert!(glob_matches("a*a", "aa"));
        assert!(!glob_matches("a*a", "a"));
    }

    #[test]
    fn a_selection_chooses_by_kind_and_workload() {
        let selection = Selection {
            kinds: [NoticeKind::Release].into(),
            workloads: vec!["sock-shop:*".into()],
        };
        assert!(selection.wants(&release_of("sock-shop:deployment/carts")));
        assert!(!selection.wants(&release_of("default:deployment/carts")));
        let automation = Notice {
            kind: NoticeKind::Automation,
            ..release_of("sock-shop:deployment/carts")
        };
        assert!(!selection.wants(&automation));
        assert!(Selection::default().wants(&automation));
    }
}
