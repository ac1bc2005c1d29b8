//! Debian's chromium, headless, driven through chromedriver: started on a
//! free port with a fresh profile, stopped when dropped.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use flux_testkit::git::free_port;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// How long a condition of the page may take to hold, on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A chromedriver and the browser session it drives.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Ends chromedriver and the chromium it started: they share the process
    /// group chromedriver leads, and killing chromedriver alone would leave
    /// chromium running after the test.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a headless chromium of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (Debian's chromium-driver; scripts/test installs it)");
        let profile = tempfile::tempdir().expect("a temporary folder can be made");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "args": args, "binary": "/usr/bin/chromium" }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            let attempt = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await;
            match attempt {
                Ok(client) => break client,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "chromedriver did not start a session: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Runs `script` in the page and answers its value.
    pub async fn run(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("the page runs {script}: {e}"))
    }

    /// The text of the first element `css` selects, empty when none does.
    pub async fn text(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.innerText : '';",
            json!(css)
        );
        self.run(&script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until `script` answers true; panics after [`PATIENCE`] with
    /// `what` and what the page said last.
    pub async fn until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.run(script).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let message = self.text("#message").await;
                let body = self.text("body").await;
                panic!("timed out waiting for {what}; message: {message:?}; page:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of `css` holds `wanted`.
    pub async fn until_text(&self, css: &str, wanted: &str) {
        let script = format!(
            "const e = document.querySelector({}); return !!e && e.innerText.includes({});",
            json!(css),
            json!(wanted)
        );
        self.until(&format!("{css} to show {wanted:?}"), &script)
            .await;
    }

    /// Clicks the first element `css` selects. The page may draw that
    /// element again between finding and clicking it (a live update came),
    /// so a stale element is looked up again.
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("the page has {css}: {e}"));
            match element.click().await {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => continue,
                Err(e) => panic!("{css} can be clicked: {e}"),
            }
        }
    }

    /// Types `text` into the element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("the page has {css}: {e}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{css} takes keys: {e}"));
    }

    /// Saves a screenshot of the page as `target/ui-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .expect("the browser takes a screenshot");
        let folder = screenshots();
        std::fs::create_dir_all(&folder).expect("the screenshot folder can be made");
        let path = folder.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }
}

/// `target/ui-screenshots` of the workspace.
fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join("target")
        });
    target.join("ui-screenshots")
}
