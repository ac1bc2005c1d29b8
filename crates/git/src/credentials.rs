//! HTTPS credentials: from a token file (read again by every git run that
//! needs them, so a rotated Secret is picked up) or taken out of a URL of
//! the form `https://user:token@host/repo.git`.
//!
//! Git gets them from a credential helper given on its command line; the
//! helper prints what the environment of that one git process holds (or
//! what the token file holds), so no credential is ever in a URL, in an
//! argument, in the mirror's config or in any file we write.

use std::ffi::OsString;
use std::path::PathBuf;

/// The user name sent with a token when neither the URL nor the
/// configuration names one. GitHub takes it for app and personal tokens;
/// GitLab takes any name with a personal access token.
pub const DEFAULT_HTTPS_USER: &str = "x-access-token";

/// Where the password comes from.
#[derive(Clone)]
pub(crate) enum Secret {
    /// A file holding the token (one line; surrounding newlines dropped).
    File(PathBuf),
    /// A password taken out of the URL.
    Inline(String),
}

/// A user name and where its password comes from.
#[derive(Clone)]
pub(crate) struct HttpsCredentials {
    user: String,
    secret: Secret,
}

// By hand: the password never reaches a debug print.
impl std::fmt::Debug for HttpsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = match &self.secret {
            Secret::File(path) => format!("file {}", path.display()),
            Secret::Inline(_) => "inline (redacted)".to_string(),
        };
        f.debug_struct("HttpsCredentials")
            .field("user", &self.user)
            .field("secret", &secret)
            .finish()
    }
}

/// The helper git runs: `get` prints the user and the password, read from
/// this process's environment or the token file at the moment git asks.
/// It holds no credential itself, so it may show up in any error.
const HELPER: &str = r#"credential.helper=!f() { test "$1" = get || exit 0; printf 'username=%s\n' "$FLUX_GIT_HTTPS_USER"; if test -n "$FLUX_GIT_HTTPS_TOKEN_FILE"; then if ! token=$(cat -- "$FLUX_GIT_HTTPS_TOKEN_FILE" 2>/dev/null); then echo "cannot read the HTTPS token file $FLUX_GIT_HTTPS_TOKEN_FILE" >&2; exit 1; fi; printf 'password=%s\n' "$token"; else printf 'password=%s\n' "$FLUX_GIT_HTTPS_PASSWORD"; fi; }; f"#;

impl HttpsCredentials {
    /// The credentials for a repository: the token file when there is one
    /// (with the URL's user name, else `user`), else the URL's own.
    pub(crate) fn choose(
        from_url: Option<UrlCredentials>,
        token_file: Option<&PathBuf>,
        user: &str,
    ) -> Option<Self> {
        match (token_file, from_url) {
            (Some(path), from_url) => Some(Self {
                user: from_url.map_or_else(|| user.to_string(), |c| c.user),
                secret: Secret::File(path.clone()),
            }),
            (None, Some(from_url)) => Some(Self {
                user: from_url.user,
                secret: Secret::Inline(from_url.password),
            }),
            (None, None) => None,
        }
    }

    /// The `-c` arguments that make git ask our helper (and only it).
    pub(crate) fn config_args() -> [&'static str; 4] {
        // The empty value drops any helper configured before ours.
        ["-c", "credential.helper=", "-c", HELPER]
    }

    /// The environment the helper reads.
    pub(crate) fn env(&self) -> Vec<(OsString, OsString)> {
        let (file, password) = match &self.secret {
            Secret::File(path) => (path.as_os_str().to_owned(), OsString::new()),
            Secret::Inline(password) => (OsString::new(), OsString::from(password)),
        };
        vec![
            ("FLUX_GIT_HTTPS_USER".into(), OsString::from(&self.user)),
            ("FLUX_GIT_HTTPS_TOKEN_FILE".into(), file),
            ("FLUX_GIT_HTTPS_PASSWORD".into(), password),
        ]
    }

    /// The inline password, to scrub from anything git prints.
    pub(crate) fn inline_password(&self) -> Option<&str> {
        match &self.secret {
            Secret::Inline(password) if !password.is_empty() => Some(password),
            _ => None,
        }
    }
}

/// The user and password of a URL's user part.
pub(crate) struct UrlCredentials {
    user: String,
    password: String,
}

/// Splits the credentials out of an `http(s)://user:password@host/…` URL:
/// the URL without them, and them (percent-decoded). Other URLs (ssh's
/// `git@host`, a user name being no secret there) come back as they are.
pub(crate) fn split_url(url: &str) -> (String, Option<UrlCredentials>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return (url.to_string(), None);
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let userinfo = &rest[..at];
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let clean = format!("{scheme}://{}", &rest[at + 1..]);
    let credentials = UrlCredentials {
        user: percent_decode(user),
        password: percent_decode(password),
    };
    (clean, Some(credentials))
}

/// `text` with the user part of every `scheme://user[:password]@` URL in it
/// replaced by `***`, for anything that may show a URL (logs, errors).
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let authority_start = found + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '\'')
            .unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &after[at..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_https_urls() {
        let (url, credentials) = split_url("https://bot:s3cr%40t@git.example.com/org/config.git");
        assert_eq!(url, "https://git.example.com/org/config.git");
        let credentials = credentials.expect("the URL has credentials");
        assert_eq!(credentials.user, "bot");
        assert_eq!(credentials.password, "s3cr@t");
    }

    #[test]
    fn ssh_and_plain_urls_are_left_alone() {
        for url in [
            "ssh://git@example.com/config.git",
            "git@example.com:config.git",
            "https://example.com/config.git",
            "https://example.com/a@b.git",
            "file:///tmp/config.git",
        ] {
            let (same, credentials) = split_url(url);
            assert_eq!(same, url);
            assert!(credentials.is_none(), "{url}");
        }
    }

    #[test]
    fn redaction_hides_the_user_part_of_every_url() {
        assert_eq!(
            redact_urls("fatal: unable to access 'https://bot:tok@host/r.git/': 401"),
            "fatal: unable to access 'https://***@host/r.git/': 401"
        );
        assert_eq!(
            redact_urls("a http://x@h b https://h/p@q c"),
            "a http://***@h b https://h/p@q c"
        );
    }

    #[test]
    fn a_token_file_wins_over_the_urls_password_but_keeps_its_user() {
        let (_, from_url) = split_url("https://bot:old@host/r.git");
        let file = PathBuf::from("/run/secrets/token");
        let chosen = HttpsCredentials::choose(from_url, Some(&file), DEFAULT_HTTPS_USER)
            .expect("a token file gives credentials");
        assert_eq!(chosen.user, "bot");
        assert!(chosen.inline_password().is_none());
        assert!(!format!("{chosen:?}").contains("old"));
    }
}

#[cfg(test)]
mod helper_tests {
    use super::*;
    use crate::command::Git;

    /// What git's credential machinery (with our helper) answers for a host.
    async fn fill(credentials: HttpsCredentials) -> Result<String, String> {
        let home = tempfile::TempDir::new().expect("temp dir");
        let git = Git::new(
            vec![("HOME".into(), home.path().as_os_str().to_owned())],
            None,
            Some(credentials),
        );
        let asked = b"protocol=https\nhost=git.example.com\n\n";
        match git
            .run_with_input(home.path(), ["credential", "fill"], Some(asked))
            .await
        {
            Ok(printed) => Ok(printed.stdout),
            Err(crate::command::RunError::Failed(failure)) => Err(failure.stderr),
            Err(crate::command::RunError::Other(error)) => Err(error.to_string()),
        }
    }

    fn from_file(path: &std::path::Path) -> HttpsCredentials {
        HttpsCredentials::choose(None, Some(&path.to_path_buf()), DEFAULT_HTTPS_USER)
            .expect("a token file gives credentials")
    }

    #[tokio::test]
    async fn git_reads_the_token_file_each_time_it_asks() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "first-token\n").expect("token written");
        let answer = fill(from_file(&file)).await.expect("credentials filled");
        assert!(answer.contains("username=x-access-token\n"), "{answer}");
        assert!(answer.contains("password=first-token\n"), "{answer}");

        std::fs::write(&file, "rotated-token").expect("token rotated");
        let answer = fill(from_file(&file)).await.expect("credentials filled");
        assert!(answer.contains("password=rotated-token\n"), "{answer}");
    }

    #[tokio::test]
    async fn a_missing_token_file_is_named() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let file = dir.path().join("absent");
        let error = fill(from_file(&file)).await.expect_err("no credentials");
        assert!(
            error.contains(&format!(
                "cannot read the HTTPS token file {}",
                file.display()
            )),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_urls_password_reaches_git_through_the_environment() {
        let (_, from_url) = split_url("https://bot:from-the-url@git.example.com/r.git");
        let credentials =
            HttpsCredentials::choose(from_url, None, DEFAULT_HTTPS_USER).expect("credentials");
        let answer = fill(credentials).await.expect("credentials filled");
        assert!(answer.contains("username=bot\n"), "{answer}");
        assert!(answer.contains("password=from-the-url\n"), "{answer}");
    }
}
