//! A real git server over HTTP: `git http-backend` (git's own CGI program)
//! behind Basic authentication, for tests of HTTPS credentials.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::AsyncWriteExt;

use crate::git::BareRepo;

/// `git http-backend` serving one bare repository on a free loopback port,
/// to one user and password (changeable, as a rotated token would be).
/// Fetches and pushes both work once authenticated. Stopped when dropped.
pub struct HttpServer {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    root: PathBuf,
    name: String,
    user: String,
    password: Mutex<String>,
    address: SocketAddr,
    /// Authorization headers refused so far, as sent.
    refused: Mutex<Vec<String>>,
}

impl HttpServer {
    /// Serves `repo` to `user` with `password`.
    pub fn serve(repo: &BareRepo, user: &str, password: &str) -> HttpServer {
        let path = repo.path();
        let root = path
            .parent()
            .expect("a bare repository lives in a folder")
            .to_path_buf();
        let name = path
            .file_name()
            .expect("a bare repository has a name")
            .to_string_lossy()
            .into_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("git-http")
            .enable_all()
            .build()
            .expect("a runtime for the git HTTP server");
        // Bound outside the runtime so that tests already inside one can start it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("a bound listener");
        let shared = Arc::new(Shared {
            root,
            name,
            user: user.to_string(),
            password: Mutex::new(password.to_string()),
            address,
            refused: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let _ = axum::serve(listener, router).await;
        });
        HttpServer {
            shared,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:<port>/repo.git`, without credentials.
    pub fn url(&self) -> String {
        format!("http://{}/{}", self.shared.address, self.shared.name)
    }

    /// The same URL with `user:password@` in it, as Flux v1 took them.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!(
            "http://{user}:{password}@{}/{}",
            self.shared.address, self.shared.name
        )
    }

    /// Accepts `password` from now on, and no longer the old one.
    pub fn set_password(&self, password: &str) {
        *self.shared.password.lock().expect("never poisoned") = password.to_string();
    }

    /// How many requests carried credentials that were refused.
    pub fn refused(&self) -> usize {
        self.shared.refused.lock().expect("never poisoned").len()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if !authorization.as_deref().is_some_and(|a| shared.admits(a)) {
        if let Some(sent) = authorization {
            shared.refused.lock().expect("never poisoned").push(sent);
        }
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
            "authentication required\n",
        )
            .into_response();
    }
    match run_backend(&shared, request).await {
        Ok(response) => response,
        Err(message) => (StatusCode::INTERNAL_SERVER_ERROR, message).into_response(),
    }
}

impl Shared {
    fn admits(&self, authorization: &str) -> bool {
        let Some(encoded) = authorization.strip_prefix("Basic ") else {
            return false;
        };
        let expected = format!(
            "{}:{}",
            self.user,
            self.password.lock().expect("never poisoned")
        );
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .is_ok_and(|decoded| decoded == expected.as_bytes())
    }
}

/// Runs `git http-backend` for one request, as a web server runs a CGI
/// program: the request in the environment and on stdin, the answer (CGI
/// headers, a blank line, the body) on stdout.
async fn run_backend(shared: &Shared, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX)
        .await
        .map_err(|e| format!("reading the request: {e}"))?;
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", &shared.user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(kind) = parts.headers.get(header::CONTENT_TYPE) {
        command.env("CONTENT_TYPE", kind.to_str().unwrap_or(""));
    }
    // Headers reach CGI programs as HTTP_* variables (Git-Protocol, Content-Encoding).
    for (name, value) in &parts.headers {
        let variable = format!("HTTP_{}", name.as_str().to_uppercase().replace('-', "_"));
        command.env(variable, value.to_str().unwrap_or(""));
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting git http-backend: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(&body)
        .await
        .map_err(|e| format!("feeding git http-backend: {e}"))?;
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("running git http-backend: {e}"))?;
    cgi_response(&output.stdout).ok_or_else(|| {
        format!(
            "git http-backend answered no CGI headers: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn cgi_response(stdout: &[u8]) -> Option<Response> {
    let end = stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let end = end.or_else(|| stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (at, gap) = end?;
    let head = std::str::from_utf8(&stdout[..at]).ok()?;
    let mut response = Response::new(Body::from(stdout[at + gap..].to_vec()));
    for line in head.lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            let code = value.split_whitespace().next()?.parse().ok()?;
            *response.status_mut() = StatusCode::from_u16(code).ok()?;
            continue;
        }
        response.headers_mut().append(
            HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        );
    }
    Some(response)
}
