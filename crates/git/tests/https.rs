//! HTTPS credentials against a real git server (`git http-backend` behind
//! Basic authentication): a token from a file fetches and pushes, a rotated
//! file is read at the next fetch, a wrong token is a clear authentication
//! error without the token in it, and no file of the data folder holds it.

use std::path::Path;

use flux_git::{CommitMessage, CommitSpec, GitError, Repo, RepoConfig, RepoState};
use flux_testkit::git::{BRANCH, BareRepo, HttpServer, IsolatedEnv};
use tempfile::TempDir;

const USER: &str = "x-access-token";
const TOKEN: &str = "ghp-4f2c91d0e7";
const ROTATED: &str = "ghp-rotated-88a1";

struct Setup {
    remote: BareRepo,
    server: HttpServer,
    env: IsolatedEnv,
    data: TempDir,
}

impl Setup {
    fn new() -> Self {
        let remote = BareRepo::seeded(&[("manifests/app.yaml", "image: app:1.0.0\n")]);
        let server = HttpServer::serve(&remote, USER, TOKEN);
        Self {
            remote,
            server,
            env: IsolatedEnv::new(),
            data: TempDir::new().expect("temp dir"),
        }
    }

    fn token_file(&self, token: &str) -> std::path::PathBuf {
        let file = self.data.path().join("secret-token");
        std::fs::write(&file, format!("{token}\n")).expect("token written");
        file
    }

    fn repo(&self, url: String, token_file: Option<std::path::PathBuf>) -> Repo {
        let mut config = RepoConfig::new(url, BRANCH, self.data.path().join("git"));
        config.env = self.env.vars();
        config.paths = vec!["manifests".into()];
        config.https_token_file = token_file;
        Repo::new(config)
    }
}

async fn release(repo: &Repo, image: &str) -> String {
    let pushed = repo
        .commit_and_push(|dir| {
            std::fs::write(dir.join("manifests/app.yaml"), format!("image: {image}\n"))?;
            let message = CommitMessage::release(image, &["default:deployment/app"]);
            Ok::<_, std::io::Error>(Some(CommitSpec::new(message)))
        })
        .await
        .expect("the release is pushed");
    pushed.revision
}

/// Files under `dir` (the token file itself left out) whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "secret-token")
                && std::fs::read(&path)
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
async fn a_token_from_a_file_clones_fetches_and_pushes() {
    let setup = Setup::new();
    let repo = setup.repo(setup.server.url(), Some(setup.token_file(TOKEN)));

    let status = repo.refresh().await.expect("the token opens the repo");
    assert_eq!(status.state, RepoState::Ready, "{status:?}");
    let revision = release(&repo, "app:1.1.0").await;
    assert_eq!(setup.remote.head(BRANCH), revision);

    let outside = setup
        .remote
        .commit_file(BRANCH, "manifests/db.yaml", "image: db:5\n", "add db");
    repo.refresh().await.expect("fetched again");
    assert_eq!(repo.head().await.expect("a head"), outside);

    assert_eq!(
        files_holding(setup.data.path(), TOKEN),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_rotated_token_file_is_read_at_the_next_fetch() {
    let setup = Setup::new();
    let file = setup.token_file(TOKEN);
    let repo = setup.repo(setup.server.url(), Some(file.clone()));
    repo.refresh()
        .await
        .expect("the first token opens the repo");

    setup.server.set_password(ROTATED);
    let refused = repo.refresh().await.expect_err("the old token is refused");
    assert!(
        matches!(refused, GitError::Authentication { .. }),
        "{refused:?}"
    );

    std::fs::write(&file, ROTATED).expect("token rotated");
    let status = repo.refresh().await.expect("the rotated token opens it");
    assert_eq!(status.state, RepoState::Ready);
    release(&repo, "app:1.2.0").await;
}

#[tokio::test]
async fn a_wrong_token_is_an_authentication_error_that_does_not_show_it() {
    let setup = Setup::new();
    let wrong = "ghp-wrong-5b7e";
    let repo = setup.repo(setup.server.url(), Some(setup.token_file(wrong)));

    let error = repo.refresh().await.expect_err("a wrong token is refused");
    assert!(
        matches!(error, GitError::Authentication { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.starts_with("authentication to http://127.0.0.1:"),
        "{text}"
    );
    assert!(!text.contains(wrong), "{text}");
    assert_eq!(repo.status().state, RepoState::Unreachable);
    assert!(setup.server.refused() > 0, "the server saw the wrong token");
    assert_eq!(
        files_holding(setup.data.path(), wrong),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn credentials_in_the_url_work_and_stay_out_of_the_mirror() {
    let setup = Setup::new();
    let repo = setup.repo(setup.server.url_with(USER, TOKEN), None);
    assert_eq!(repo.config().url, setup.server.url());

    repo.refresh()
        .await
        .expect("the URL's credentials open the repo");
    release(&repo, "app:1.3.0").await;
    let config = std::fs::read_to_string(repo.mirror_dir().join("config")).expect("config");
    assert!(config.contains(&setup.server.url()), "{config}");
    assert_eq!(
        files_holding(setup.data.path(), TOKEN),
        Vec::<String>::new()
    );

    let wrong = setup.repo(setup.server.url_with(USER, "not-the-token"), None);
    let error = wrong.refresh().await.expect_err("refused");
    assert!(
        !format!("{error} {error:?}").contains("not-the-token"),
        "{error:?}"
    );
}
