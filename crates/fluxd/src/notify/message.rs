//! What each endpoint is sent: the versioned JSON body of generic webhooks,
//! and the chat messages of Slack, Microsoft Teams and Discord, with a link
//! to the commit when the git URL has a web form.

use serde_json::{Value, json};

use super::Notice;

/// The version of the generic webhook body; a change that removes or
/// changes a field raises it.
pub const BODY_VERSION: u32 = 1;

/// Discord refuses longer message contents.
const DISCORD_LIMIT: usize = 2000;

/// The web form of the config repo (`https://github.com/org/repo`), for links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRepo {
    base: String,
    forge: Forge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forge {
    GitHub,
    GitLab,
    Gitea,
}

impl WebRepo {
    /// The web form of a git URL on GitHub, GitLab or Gitea (hosts named
    /// so, and codeberg.org), in the scp-like, ssh or https form; `None` for
    /// other hosts and `file://` URLs. Credentials and ssh ports are dropped.
    pub fn of_git_url(url: &str) -> Option<WebRepo> {
        let (host, path) = host_and_path(url)?;
        let lower = host.to_ascii_lowercase();
        let name = lower.split(':').next().unwrap_or_default();
        let forge = if name.contains("github") {
            Forge::GitHub
        } else if name.contains("gitlab") {
            Forge::GitLab
        } else if name.contains("gitea") || name.contains("forgejo") || name == "codeberg.org" {
            Forge::Gitea
        } else {
            return None;
        };
        let path = path.trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        if path.is_empty() {
            return None;
        }
        Some(WebRepo {
            base: format!("https://{host}/{path}"),
            forge,
        })
    }

    /// The page of `commit`.
    pub fn commit_url(&self, commit: &str) -> String {
        match self.forge {
            Forge::GitHub | Forge::Gitea => format!("{}/commit/{commit}", self.base),
            Forge::GitLab => format!("{}/-/commit/{commit}", self.base),
        }
    }
}

/// (host, path) of a git URL; the host keeps an https port, never an ssh one.
fn host_and_path(url: &str) -> Option<(String, String)> {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit('@').next().unwrap_or(authority);
        let host = match scheme {
            "https" | "http" => host.to_string(),
            "ssh" | "git+ssh" | "ssh+git" => host.split(':').next().unwrap_or(host).to_string(),
            _ => return None,
        };
        return Some((host, path.to_string()));
    }
    // scp-like: [user@]host:path
    let (authority, path) = url.split_once(':')?;
    if authority.contains('/') {
        return None;
    }
    let host = authority.rsplit('@').next().unwrap_or(authority);
    Some((host.to_string(), path.to_string()))
}

/// The generic webhook body, version [`BODY_VERSION`].
pub fn webhook_body(notice: &Notice, repo: Option<&WebRepo>) -> Value {
    let commit = notice
        .commit
        .as_ref()
        .map(|id| json!({"id": id, "url": repo.map(|repo| repo.commit_url(id))}));
    json!({
        "version": BODY_VERSION,
        "kind": notice.kind.as_str(),
        "time": notice.time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "summary": notice.summary,
        "objects": notice.objects,
        "changes": notice.changes,
        "commit": commit,
        "error": notice.error,
        "file": notice.file,
    })
}

/// The lines of a chat message, in a markup whose link is `link(text, url)`.
fn lines(
    notice: &Notice,
    repo: Option<&WebRepo>,
    link: impl Fn(&str, &str) -> String,
) -> Vec<String> {
    let mut lines = vec![notice.summary.clone()];
    for change in &notice.changes {
        lines.push(format!(
            "• {} {}: {} → {}",
            change.workload, change.container, change.from, change.to
        ));
    }
    if let Some(file) = &notice.file {
        lines.push(format!("file {file}"));
    }
    if let Some(error) = &notice.error {
        lines.push(error.clone());
    }
    if let Some(commit) = &notice.commit {
        let short = &commit[..commit.len().min(7)];
        let shown = match repo {
            Some(repo) => link(short, &repo.commit_url(commit)),
            None => short.to_string(),
        };
        lines.push(format!("commit {shown}"));
    }
    lines
}

fn title(notice: &Notice) -> String {
    format!("fluxd: {}", notice.kind)
}

/// A Slack incoming-webhook message (`mrkdwn` links).
pub fn slack_body(notice: &Notice, repo: Option<&WebRepo>) -> Value {
    let text = lines(notice, repo, |text, url| format!("<{url}|{text}>")).join("\n");
    json!({"text": format!("*{}*\n{text}", title(notice))})
}

/// A Microsoft Teams incoming-webhook message card (Markdown links).
pub fn teams_body(notice: &Notice, repo: Option<&WebRepo>) -> Value {
    let text = lines(notice, repo, |text, url| format!("[{text}]({url})")).join("\n\n");
    let colour = if notice.kind.is_failure() {
        "D32F2F"
    } else {
        "2E7D32"
    };
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": notice.summary,
        "themeColor": colour,
        "title": title(notice),
        "text": text,
    })
}

/// A Discord webhook message (Markdown links), cut to Discord's limit.
pub fn discord_body(notice: &Notice, repo: Option<&WebRepo>) -> Value {
    let text = lines(notice, repo, |text, url| format!("[{text}](<{url}>)")).join("\n");
    let mut content = format!("**{}**\n{text}", title(notice));
    if content.chars().count() > DISCORD_LIMIT {
        content = content.chars().take(DISCORD_LIMIT - 1).collect();
        content.push('…');
    }
    json!({"content": content})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_of_forges_have_web_forms() {
        let cases = [
            (
                "git@github.com:weaveworks/flux-get-started.git",
                "https://github.com/weaveworks/flux-get-started/commit/abc",
            ),
            (
                "ssh://git@github.com:22/weaveworks/flux-get-started",
                "https://github.com/weaveworks/flux-get-started/commit/abc",
            ),
            (
                "https://user:token@gitlab.com/group/sub/repo.git",
                "https://gitlab.com/group/sub/repo/-/commit/abc",
            ),
            (
                "https://gitea.example.com:3000/org/repo",
                "https://gitea.example.com:3000/org/repo/commit/abc",
            ),
        ];
        for (url, page) in cases {
            let repo = WebRepo::of_git_url(url).unwrap_or_else(|| panic!("{url} has a web form"));
            assert_eq!(repo.commit_url("abc"), page, "{url}");
        }
        assert_eq!(WebRepo::of_git_url("file:///tmp/repo.git"), None);
        assert_eq!(
            WebRepo::of_git_url("git@git.example.com:org/repo.git"),
            None
        );
    }

    #[test]
    fn a_long_discord_message_is_cut_to_the_limit() {
        let notice = Notice::new(super::super::NoticeKind::SyncError, "x".repeat(3000));
        let body = discord_body(&notice, None);
        let content = body["content"].as_str().expect("content is text");
        assert_eq!(content.chars().count(), DISCORD_LIMIT);
    }
}
