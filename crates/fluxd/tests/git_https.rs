//! fluxd reads an https repo with the credentials of a helper of the
//! user's (`--git-credential-helper`); without it, the same repo refuses.

use std::path::Path;

use flux_testkit::daemon::{Fluxd, sock_shop_repo, wait_for};
use flux_testkit::git::{HttpServer, free_port};

const TOKEN: &str = "helper-tok-0c3d";

#[tokio::test]
async fn a_credential_helper_of_the_users_opens_the_repo() {
    let repo = sock_shop_repo(None);
    let server = HttpServer::serve(&repo, "x-access-token", TOKEN);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("git-credentials");
    std::fs::write(
        &store,
        format!("{}\n", server.url_with("x-access-token", TOKEN)),
    )
    .expect("credential store written");
    let helper = format!("store --file={}", store.display());
    let binary = Path::new(env!("CARGO_BIN_EXE_fluxd"));

    let without = Fluxd::spawn(binary, &server.url(), None, free_port(), &[], &[]).await;
    wait_for("the refusal to be logged", || async {
        without.log().contains("authentication to")
    })
    .await;

    let fluxd = Fluxd::spawn(
        binary,
        &server.url(),
        None,
        free_port(),
        &["--git-credential-helper", &helper],
        &[],
    )
    .await;
    let client = fluxd.client();
    wait_for("the manifests to be read", || async {
        client.workloads(None).await.is_ok_and(|w| !w.is_empty())
    })
    .await;
}
