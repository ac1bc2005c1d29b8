//! Commit messages in the forms Flux users know from the original:
//! `Release <image> to <workloads>`, `Auto-release <image>`,
//! `Auto-release multiple (N) images` with a list, and policy changes
//! (`Automated: …`, `Deautomated: …`, `Locked: …`, `Unlocked: …`,
//! `Updated policies: …`). A user's own message (`fluxctl -m`) heads the
//! text; the CI skip marker, when configured, ends it.

use std::fmt::Display;

/// One kind of policy change and the workloads it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChange {
    /// Automation turned on.
    Automated(Vec<String>),
    /// Automation turned off.
    Deautomated(Vec<String>),
    /// Workloads locked.
    Locked(Vec<String>),
    /// Workloads unlocked.
    Unlocked(Vec<String>),
    /// Tag policies (or other annotations) changed.
    UpdatedPolicies(Vec<String>),
}

impl PolicyChange {
    fn line(&self) -> String {
        let (verb, ids) = match self {
            Self::Automated(ids) => ("Automated", ids),
            Self::Deautomated(ids) => ("Deautomated", ids),
            Self::Locked(ids) => ("Locked", ids),
            Self::Unlocked(ids) => ("Unlocked", ids),
            Self::UpdatedPolicies(ids) => ("Updated policies", ids),
        };
        format!("{verb}: {}", ids.join(", "))
    }
}

/// A commit message before the CI skip marker is added (the repository
/// adds it, from its configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMessage {
    text: String,
}

impl CommitMessage {
    /// Any message, as given.
    pub fn plain(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }

    /// `Release <image> to <workload>, <workload>`. The image may be a spec
    /// such as `<all latest>` and a workload `<all>`: the angle brackets are
    /// dropped, as the original did.
    pub fn release(image: impl Display, workloads: &[impl Display]) -> Self {
        let image = trim_spec(&image.to_string());
        let workloads: Vec<String> = workloads
            .iter()
            .map(|w| trim_spec(&w.to_string()))
            .collect();
        Self::plain(format!("Release {image} to {}", workloads.join(", ")))
    }

    /// `Auto-release <image>` for one image; `Auto-release multiple (N)
    /// images` followed by a list for several.
    pub fn auto_release(images: &[impl Display]) -> Self {
        match images {
            [] => Self::plain("Auto-release (no images)"),
            [one] => Self::plain(format!("Auto-release {one}")),
            many => {
                let list: Vec<String> = many.iter().map(|i| format!(" - {i}")).collect();
                Self::plain(format!(
                    "Auto-release multiple ({}) images\n\n{}",
                    many.len(),
                    list.join("\n")
                ))
            }
        }
    }

    /// Policy changes: one kind gives one line (`Locked: default:deployment/a`);
    /// several kinds give `Updated workload policies` and a list.
    pub fn policies(changes: &[PolicyChange]) -> Self {
        match changes {
            [one] => Self::plain(one.line()),
            many => Self::plain(format!("Updated workload policies\n\n{}", list(many))),
        }
    }

    /// Policy changes under a user's message: the message, then the changes
    /// as a list.
    pub fn policies_with_user_message(user: &str, changes: &[PolicyChange]) -> Self {
        let user = user.trim();
        if user.is_empty() {
            return Self::policies(changes);
        }
        Self::plain(format!("{user}\n\n{}", list(changes)))
    }

    /// Puts a user's message (`fluxctl -m`) at the head; an empty one changes
    /// nothing.
    pub fn headed_by(self, user: Option<&str>) -> Self {
        match user.map(str::trim) {
            Some(user) if !user.is_empty() => Self::plain(format!("{user}\n\n{}", self.text)),
            _ => self,
        }
    }

    /// The final text, with the CI skip marker (e.g. `[ci skip]`) appended
    /// as its own paragraph when given.
    pub fn render(&self, ci_skip: Option<&str>) -> String {
        let text = self.text.trim_end();
        match ci_skip.map(str::trim) {
            Some(marker) if !marker.is_empty() => format!("{text}\n\n{marker}\n"),
            _ => format!("{text}\n"),
        }
    }

    /// The text without the marker.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn list(changes: &[PolicyChange]) -> String {
    changes
        .iter()
        .map(|c| format!("- {}", c.line()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn trim_spec(spec: &str) -> String {
    spec.trim_matches(|c| c == '<' || c == '>').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_image_and_workloads() {
        let m = CommitMessage::release(
            "weaveworksdemos/front-end:0.3.13",
            &[
                "sock-shop:deployment/front-end",
                "sock-shop:deployment/orders",
            ],
        );
        assert_eq!(
            m.render(None),
            "Release weaveworksdemos/front-end:0.3.13 to sock-shop:deployment/front-end, sock-shop:deployment/orders\n"
        );
    }

    #[test]
    fn release_drops_angle_brackets_of_specs() {
        let m = CommitMessage::release("<all latest>", &["<all>"]);
        assert_eq!(m.as_str(), "Release all latest to all");
    }

    #[test]
    fn auto_release_of_one_image_is_one_line() {
        let m = CommitMessage::auto_release(&["quay.io/app:1.2.0"]);
        assert_eq!(m.as_str(), "Auto-release quay.io/app:1.2.0");
    }

    #[test]
    fn auto_release_of_several_images_counts_and_lists_them() {
        let m = CommitMessage::auto_release(&["a:1", "b:2", "c:3"]);
        assert_eq!(
            m.as_str(),
            "Auto-release multiple (3) images\n\n - a:1\n - b:2\n - c:3"
        );
    }

    #[test]
    fn each_policy_change_kind_has_its_line() {
        let ids = || {
            vec![
                "default:deployment/a".to_string(),
                "default:deployment/b".to_string(),
            ]
        };
        let cases = [
            (PolicyChange::Automated(ids()), "Automated: "),
            (PolicyChange::Deautomated(ids()), "Deautomated: "),
            (PolicyChange::Locked(ids()), "Locked: "),
            (PolicyChange::Unlocked(ids()), "Unlocked: "),
            (PolicyChange::UpdatedPolicies(ids()), "Updated policies: "),
        ];
        for (change, prefix) in cases {
            let m = CommitMessage::policies(&[change]);
            assert_eq!(
                m.as_str(),
                format!("{prefix}default:deployment/a, default:deployment/b")
            );
        }
    }

    #[test]
    fn several_policy_changes_are_listed_under_a_heading() {
        let m = CommitMessage::policies(&[
            PolicyChange::Automated(vec!["ns:deployment/a".into()]),
            PolicyChange::Locked(vec!["ns:deployment/b".into()]),
        ]);
        assert_eq!(
            m.as_str(),
            "Updated workload policies\n\n- Automated: ns:deployment/a\n- Locked: ns:deployment/b"
        );
    }

    #[test]
    fn user_message_heads_the_commit_message() {
        let m = CommitMessage::release("app:2", &["ns:deployment/app"])
            .headed_by(Some("Roll out the fix for #42"));
        assert_eq!(
            m.as_str(),
            "Roll out the fix for #42\n\nRelease app:2 to ns:deployment/app"
        );
        let unchanged = CommitMessage::plain("x").headed_by(Some("  "));
        assert_eq!(unchanged.as_str(), "x");
    }

    #[test]
    fn user_message_heads_policy_changes_as_a_list() {
        let m = CommitMessage::policies_with_user_message(
            "freeze for the demo",
            &[PolicyChange::Locked(vec!["ns:deployment/a".into()])],
        );
        assert_eq!(
            m.as_str(),
            "freeze for the demo\n\n- Locked: ns:deployment/a"
        );
    }

    #[test]
    fn ci_skip_marker_ends_the_message() {
        let m = CommitMessage::auto_release(&["a:1"]);
        assert_eq!(
            m.render(Some("[ci skip]")),
            "Auto-release a:1\n\n[ci skip]\n"
        );
        assert_eq!(m.render(None), "Auto-release a:1\n");
    }
}
