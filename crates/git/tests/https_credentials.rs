//! Credentials in an HTTPS URL are used but never kept: not in the mirror's
//! config, not in any file of the data folder, not in an error.

use std::path::Path;

use flux_git::{GitError, Repo, RepoConfig};
use flux_testkit::git::IsolatedEnv;
use tempfile::TempDir;

const TOKEN: &str = "tok-7c1f0a9e";

/// An `http://` URL on a loopback port nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    drop(listener);
    format!("http://bot:{TOKEN}@127.0.0.1:{port}/config.git")
}

fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .expect("readable file")
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn credentials_in_the_url_are_not_kept_on_disk_nor_shown() {
    let env = IsolatedEnv::new();
    let data = TempDir::new().expect("temp dir");
    let mut config = RepoConfig::new(closed_port_url(), "main", data.path().join("git"));
    config.env = env.vars();
    let repo = Repo::new(config);
    assert!(!repo.config().url.contains(TOKEN), "{}", repo.config().url);
    assert!(repo.config().url.starts_with("http://127.0.0.1:"));

    let error = repo.refresh().await.expect_err("nothing listens there");
    assert!(matches!(error, GitError::Unreachable { .. }), "{error:?}");
    assert!(!error.to_string().contains(TOKEN), "{error}");
    assert!(!format!("{error:?}").contains(TOKEN), "{error:?}");
    let status = repo.status();
    assert!(!status.last_error.unwrap_or_default().contains(TOKEN));

    // The clone got as far as writing the mirror's config.
    assert!(
        !files_holding(data.path(), "127.0.0.1").is_empty(),
        "the mirror's config names the remote"
    );
    assert_eq!(files_holding(data.path(), TOKEN), Vec::<String>::new());
}
