//! What a CI system says about the run fluxctl is a step of: the link to
//! the pipeline run, the commit it built and who wrote that commit, read
//! from the variables Drone, Woodpecker, GitLab CI and GitHub Actions set
//! for every step.

/// The run fluxctl is a step of, as its CI system describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    /// The pipeline run's page.
    pub link: Option<String>,
    /// The commit the pipeline built.
    pub commit: Option<String>,
    /// That commit's author, `Name <email>` when the CI says both.
    pub author: Option<String>,
}

impl Run {
    /// The run described by the process environment.
    pub fn from_env() -> Run {
        Run::from_vars(|name| std::env::var(name).ok())
    }

    /// The run described by `var` (unset and empty variables count alike).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Run {
        let get = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let first = |names: &[&str]| names.iter().find_map(|name| get(name));
        let github_link = match (
            get("GITHUB_SERVER_URL"),
            get("GITHUB_REPOSITORY"),
            get("GITHUB_RUN_ID"),
        ) {
            (Some(server), Some(repository), Some(run)) => Some(format!(
                "{}/{repository}/actions/runs/{run}",
                server.trim_end_matches('/')
            )),
            _ => None,
        };
        let link = first(&["DRONE_BUILD_LINK", "CI_PIPELINE_URL"]).or(github_link);
        let commit = first(&["DRONE_COMMIT_SHA", "CI_COMMIT_SHA", "GITHUB_SHA"]);
        let author = author(
            first(&[
                "DRONE_COMMIT_AUTHOR_NAME",
                "CI_COMMIT_AUTHOR",
                "GITHUB_ACTOR",
            ]),
            first(&["DRONE_COMMIT_AUTHOR_EMAIL", "CI_COMMIT_AUTHOR_EMAIL"]),
        );
        Run {
            link,
            commit,
            author,
        }
    }

    /// The paragraph that ends a commit message made in this run: which
    /// pipeline run made it, from which commit. `None` outside CI.
    pub fn paragraph(&self) -> Option<String> {
        let mut lines = Vec::new();
        if let Some(link) = &self.link {
            lines.push(format!("Pipeline: {link}"));
        }
        if let Some(commit) = &self.commit {
            lines.push(format!("Built from: {commit}"));
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

/// `Name <email>` from a name and an email; a name that already carries
/// its email (GitLab's `CI_COMMIT_AUTHOR`) is kept as it is.
fn author(name: Option<String>, email: Option<String>) -> Option<String> {
    let name = name?;
    if name.ends_with('>') && name.contains(" <") {
        return Some(name);
    }
    Some(match email {
        Some(email) => format!("{name} <{email}>"),
        None => name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vars: &[(&str, &str)]) -> Run {
        Run::from_vars(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn drone_names_the_build_its_commit_and_author() {
        let drone = run(&[
            ("DRONE_BUILD_LINK", "https://drone.example.com/team/app/42"),
            ("DRONE_COMMIT_SHA", "9f2a"),
            ("DRONE_COMMIT_AUTHOR_NAME", "Ada Lovelace"),
            ("DRONE_COMMIT_AUTHOR_EMAIL", "ada@example.com"),
        ]);
        assert_eq!(
            drone.paragraph().as_deref(),
            Some("Pipeline: https://drone.example.com/team/app/42\nBuilt from: 9f2a")
        );
        assert_eq!(
            drone.author.as_deref(),
            Some("Ada Lovelace <ada@example.com>")
        );
    }

    #[test]
    fn gitlab_author_already_carries_the_email() {
        let gitlab = run(&[
            (
                "CI_PIPELINE_URL",
                "https://gitlab.example.com/team/app/-/pipelines/7",
            ),
            ("CI_COMMIT_SHA", "abc1"),
            ("CI_COMMIT_AUTHOR", "Grace Hopper <grace@example.com>"),
        ]);
        assert_eq!(
            gitlab.author.as_deref(),
            Some("Grace Hopper <grace@example.com>")
        );
        assert_eq!(
            gitlab.link.as_deref(),
            Some("https://gitlab.example.com/team/app/-/pipelines/7")
        );
    }

    #[test]
    fn github_run_link_is_made_from_server_repository_and_run() {
        let github = run(&[
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "team/app"),
            ("GITHUB_RUN_ID", "1234"),
            ("GITHUB_SHA", "ffee"),
            ("GITHUB_ACTOR", "octocat"),
        ]);
        assert_eq!(
            github.link.as_deref(),
            Some("https://github.com/team/app/actions/runs/1234")
        );
        assert_eq!(github.author.as_deref(), Some("octocat"));
    }

    #[test]
    fn outside_ci_there_is_nothing_to_say() {
        let none = run(&[("CI_COMMIT_SHA", "  ")]);
        assert_eq!(none, Run::default());
        assert_eq!(none.paragraph(), None);
    }
}
