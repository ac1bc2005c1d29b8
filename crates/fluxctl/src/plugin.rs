//! `fluxctl plugin`: the entrypoint of the image as a CI step. Drone and
//! Woodpecker hand a plugin its `settings:` as `PLUGIN_<NAME>` variables,
//! GitHub Actions hands a Docker action its `with:` inputs as
//! `INPUT_<NAME>`; both are read here and made into a `release` — with
//! `--git-url` when a repository is given, through fluxd otherwise. Every
//! setting is checked before anything is cloned: a missing or contradictory
//! one is a one-line error naming it.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use flux_image::ImageRef;

/// Every setting the plugin reads, as written in a pipeline (lower case)
/// and in `action.yml`.
pub const SETTINGS: [&str; 17] = [
    "image",
    "workload",
    "controller",
    "git_url",
    "git_branch",
    "git_path",
    "manifests",
    "url",
    "token",
    "ssh_key",
    "known_hosts",
    "git_token",
    "message",
    "user",
    "dry_run",
    "wait",
    "timeout",
];

/// A setting that is missing, malformed or contradicts another.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingError(String);

/// The release the settings ask for, as `fluxctl` arguments, and the
/// secrets written for it (removed when this is dropped).
#[derive(Debug)]
pub struct Prepared {
    /// `fluxctl [--url U --token T] release …`.
    pub argv: Vec<OsString>,
    _secrets: Option<tempfile::TempDir>,
}

/// The settings of one step, read from `PLUGIN_<NAME>` or, when unset,
/// `INPUT_<NAME>`; empty values are unset (GitHub sets every input it
/// declares, empty when not given).
struct Settings<F: Fn(&str) -> Option<String>> {
    var: F,
    /// `PLUGIN_` or `INPUT_`: how errors name a setting.
    prefix: &'static str,
}

impl<F: Fn(&str) -> Option<String>> Settings<F> {
    fn new(var: F) -> Self {
        let github = (var)("GITHUB_ACTIONS").as_deref() == Some("true")
            && !SETTINGS
                .iter()
                .any(|name| (var)(&format!("PLUGIN_{}", name.to_uppercase())).is_some());
        let prefix = if github { "INPUT_" } else { "PLUGIN_" };
        Settings { var, prefix }
    }

    fn get(&self, name: &str) -> Option<String> {
        let upper = name.to_uppercase();
        ["PLUGIN_", "INPUT_"]
            .iter()
            .filter_map(|prefix| (self.var)(&format!("{prefix}{upper}")))
            .map(|value| value.trim().to_string())
            .find(|value| !value.is_empty())
    }

    /// How this system spells the setting.
    fn name(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name.to_uppercase())
    }

    /// A comma-separated list, as Drone and Woodpecker pass YAML lists.
    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, SettingError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Some(true)),
            "false" | "no" | "0" => Ok(Some(false)),
            _ => Err(SettingError(format!(
                "{} is {text:?}: write true or false",
                self.name(name)
            ))),
        }
    }

    /// A list given under either of two names; both given and different
    /// is a contradiction.
    fn one_of(&self, first: &str, second: &str) -> Result<Vec<String>, SettingError> {
        let (a, b) = (self.list(first), self.list(second));
        if !a.is_empty() && !b.is_empty() && a != b {
            return Err(SettingError(format!(
                "{} and {} say different things: give one of them",
                self.name(first),
                self.name(second)
            )));
        }
        Ok(if a.is_empty() { b } else { a })
    }

    fn missing(&self, name: &str, what: &str) -> SettingError {
        SettingError(format!("{} is not set: {what}", self.name(name)))
    }
}

/// Reads the settings from the process environment.
pub fn prepare() -> Result<Prepared, SettingError> {
    prepare_from(|name| std::env::var(name).ok())
}

/// Reads the settings through `var`.
pub fn prepare_from(var: impl Fn(&str) -> Option<String>) -> Result<Prepared, SettingError> {
    let settings = Settings::new(var);
    let s = &settings;
    let image = s
        .get("image")
        .ok_or_else(|| s.missing("image", "the image to release, repo:tag or repo@digest"))?;
    let parsed = ImageRef::parse(&image)
        .map_err(|error| SettingError(format!("{} {image}: {error}", s.name("image"))))?;
    if parsed.tag().is_none() && parsed.digest().is_none() {
        return Err(SettingError(format!(
            "{} {image}: name a tag or digest",
            s.name("image")
        )));
    }
    let workloads = s.one_of("workload", "controller")?;
    if workloads.is_empty() {
        return Err(s.missing(
            "workload",
            "the workloads to release to, <namespace>:<kind>/<name>, comma-separated",
        ));
    }
    let namespaces = crate::workload_id::Namespaces {
        given: None,
        default: "default",
    };
    namespaces
        .parse_all(&s.name("workload"), &workloads)
        .map_err(|error| SettingError(error.to_string()))?;
    let git_url = s.get("git_url");
    let url = s.get("url");
    let paths = s.one_of("git_path", "manifests")?;
    for path in &paths {
        crate::config_repo::parse_git_path(path)
            .map_err(|error| SettingError(format!("{}: {error}", s.name("git_path"))))?;
    }
    let dry_run = s.flag("dry_run")?.unwrap_or(false);
    let wait = s.flag("wait")?;
    if git_url.is_none() {
        if url.is_none() {
            return Err(s.missing(
                "git_url",
                "the config repository to release to (or url, a fluxd to release through)",
            ));
        }
        let only_with_git = [
            "git_branch",
            "git_path",
            "manifests",
            "ssh_key",
            "known_hosts",
        ];
        if let Some(name) = only_with_git.iter().find(|name| s.get(name).is_some()) {
            return Err(SettingError(format!(
                "{} needs {}: a release through fluxd ({}) uses fluxd's repository",
                s.name(name),
                s.name("git_url"),
                s.name("url")
            )));
        }
        if wait == Some(false) {
            return Err(SettingError(format!(
                "{} is false, but a release through fluxd always waits for its commit; \
                 give {} to push the commit yourself",
                s.name("wait"),
                s.name("git_url")
            )));
        }
    }
    if wait == Some(true) && url.is_none() {
        return Err(SettingError(format!(
            "{} needs {}: the fluxd that applies the commit",
            s.name("wait"),
            s.name("url")
        )));
    }
    if dry_run && wait == Some(true) {
        return Err(SettingError(format!(
            "{} and {}: a dry run pushes nothing to wait for",
            s.name("wait"),
            s.name("dry_run")
        )));
    }
    if s.get("known_hosts").is_some() && s.get("ssh_key").is_none() {
        return Err(SettingError(format!(
            "{} needs {}",
            s.name("known_hosts"),
            s.name("ssh_key")
        )));
    }
    if let Some(timeout) = s.get("timeout") {
        crate::sync::parse_duration(&timeout)
            .map_err(|error| SettingError(format!("{}: {error}", s.name("timeout"))))?;
    }
    if s.get("git_token").is_some() && s.get("ssh_key").is_some() {
        return Err(SettingError(format!(
            "{} and {}: give the one the git URL's scheme uses",
            s.name("git_token"),
            s.name("ssh_key")
        )));
    }

    let mut argv: Vec<OsString> = vec!["fluxctl".into()];
    let mut push = |items: &[&str]| argv.extend(items.iter().map(OsString::from));
    // With a repository, the daemon is only there to be waited for.
    let through_daemon = git_url.is_none() || wait != Some(false);
    if let (Some(url), true) = (&url, through_daemon) {
        push(&["--url", url]);
        if let Some(token) = s.get("token") {
            push(&["--token", &token]);
        }
    }
    if let Some(timeout) = s.get("timeout") {
        push(&["--timeout", &timeout]);
    }
    push(&["release", "--update-image", &image]);
    push(&["--workload", &workloads.join(",")]);
    let secrets = match &git_url {
        Some(git_url) => {
            push(&["--git-url", git_url]);
            if let Some(branch) = s.get("git_branch") {
                push(&["--git-branch", &branch]);
            }
            for path in &paths {
                push(&["--git-path", path]);
            }
            // Parsed in this process, so the token is not seen by others.
            if let Some(token) = s.get("git_token") {
                push(&["--git-token", &token]);
            }
            write_ssh_secrets(s, &mut push)?
        }
        None => None,
    };
    // fluxd writes the message itself: the run goes in with `-m`.
    let run = match git_url {
        Some(_) => None,
        None => crate::ci::Run::from_vars(&s.var).paragraph(),
    };
    let message: Vec<String> = s.get("message").into_iter().chain(run).collect();
    if !message.is_empty() {
        push(&["--message", &message.join("\n\n")]);
    }
    if let Some(user) = s.get("user") {
        push(&["--user", &user]);
    }
    if dry_run {
        push(&["--dry-run"]);
    }
    Ok(Prepared {
        argv,
        _secrets: secrets,
    })
}

/// Writes the SSH key (and known hosts) given as settings to files only
/// we can read, and adds the flags naming them.
fn write_ssh_secrets<F: Fn(&str) -> Option<String>>(
    s: &Settings<F>,
    push: &mut impl FnMut(&[&str]),
) -> Result<Option<tempfile::TempDir>, SettingError> {
    let Some(key) = s.get("ssh_key") else {
        return Ok(None);
    };
    let dir = tempfile::Builder::new()
        .prefix("fluxctl-plugin-")
        .tempdir()
        .map_err(|error| SettingError(format!("a folder for {}: {error}", s.name("ssh_key"))))?;
    let key_file = secret_file(dir.path(), "identity", &key)
        .map_err(|error| SettingError(format!("writing {}: {error}", s.name("ssh_key"))))?;
    push(&["--git-ssh-key", &key_file.to_string_lossy()]);
    if let Some(known_hosts) = s.get("known_hosts") {
        let file = secret_file(dir.path(), "known_hosts", &known_hosts)
            .map_err(|error| SettingError(format!("writing {}: {error}", s.name("known_hosts"))))?;
        push(&["--git-known-hosts", &file.to_string_lossy()]);
    }
    Ok(Some(dir))
}

/// A file readable by us alone, ending in a newline (ssh wants one after
/// a key; CI secrets often lose it).
fn secret_file(dir: &Path, name: &str, content: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(content.trim_end().as_bytes())?;
    file.write_all(b"\n")?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(vars: &[(&str, &str)]) -> Result<Vec<String>, String> {
        prepare_from(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
        .map(|p| {
            p.argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        })
        .map_err(|e| e.to_string())
    }

    const REPO: (&str, &str) = ("PLUGIN_GIT_URL", "ssh://git@example.com/config.git");
    const IMAGE: (&str, &str) = ("PLUGIN_IMAGE", "registry.example.com/app:1.2.0");
    const WORKLOAD: (&str, &str) = ("PLUGIN_WORKLOAD", "default:deployment/app");

    #[test]
    fn drone_settings_make_a_release_to_the_repository() {
        let argv = prepared(&[
            IMAGE,
            (
                "PLUGIN_CONTROLLER",
                "default:deployment/app,default:deployment/worker",
            ),
            REPO,
            ("PLUGIN_GIT_BRANCH", "main"),
            ("PLUGIN_MANIFESTS", "manifests"),
            ("PLUGIN_MESSAGE", "Roll out 1.2.0"),
        ])
        .expect("valid settings");
        assert_eq!(
            argv.join(" "),
            "fluxctl release --update-image registry.example.com/app:1.2.0 \
             --workload default:deployment/app,default:deployment/worker \
             --git-url ssh://git@example.com/config.git --git-branch main \
             --git-path manifests --message Roll out 1.2.0"
        );
    }

    #[test]
    fn each_missing_setting_is_named() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&[WORKLOAD, REPO], "PLUGIN_IMAGE is not set"),
            (&[IMAGE, REPO], "PLUGIN_WORKLOAD is not set"),
            (&[IMAGE, WORKLOAD], "PLUGIN_GIT_URL is not set"),
            (
                &[("PLUGIN_IMAGE", "app"), WORKLOAD, REPO],
                "PLUGIN_IMAGE app: name a tag or digest",
            ),
        ];
        for (vars, expected) in cases {
            let error = prepared(vars).expect_err(expected);
            assert!(error.starts_with(expected), "{error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn contradictions_are_refused() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (
                &[
                    IMAGE,
                    WORKLOAD,
                    ("PLUGIN_CONTROLLER", "default:deployment/x"),
                    REPO,
                ],
                "PLUGIN_WORKLOAD and PLUGIN_CONTROLLER say different things",
            ),
            (
                &[IMAGE, WORKLOAD, REPO, ("PLUGIN_WAIT", "true")],
                "PLUGIN_WAIT needs PLUGIN_URL",
            ),
            (
                &[
                    IMAGE,
                    WORKLOAD,
                    ("PLUGIN_URL", "http://fluxd"),
                    ("PLUGIN_GIT_PATH", "x"),
                ],
                "PLUGIN_GIT_PATH needs PLUGIN_GIT_URL",
            ),
            (
                &[IMAGE, WORKLOAD, REPO, ("PLUGIN_DRY_RUN", "maybe")],
                "PLUGIN_DRY_RUN is \"maybe\": write true or false",
            ),
            (
                &[
                    IMAGE,
                    WORKLOAD,
                    REPO,
                    ("PLUGIN_URL", "http://fluxd"),
                    ("PLUGIN_WAIT", "true"),
                    ("PLUGIN_DRY_RUN", "true"),
                ],
                "PLUGIN_WAIT and PLUGIN_DRY_RUN",
            ),
        ];
        for (vars, expected) in cases {
            let error = prepared(vars).expect_err(expected);
            assert!(error.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn github_inputs_are_named_as_github_spells_them() {
        let error = prepared(&[
            ("GITHUB_ACTIONS", "true"),
            ("INPUT_IMAGE", "app:1"),
            ("INPUT_WORKLOAD", ""),
            ("INPUT_GIT_URL", "ssh://git@example.com/c.git"),
        ])
        .expect_err("no workload");
        assert!(error.starts_with("INPUT_WORKLOAD is not set"), "{error}");
    }

    #[test]
    fn the_daemon_is_waited_for_unless_told_not_to() {
        let fluxd = ("PLUGIN_URL", "http://fluxd:3030");
        let waits = prepared(&[IMAGE, WORKLOAD, REPO, fluxd]).expect("valid");
        assert_eq!(waits[1..3], ["--url", "http://fluxd:3030"]);
        let pushes_only =
            prepared(&[IMAGE, WORKLOAD, REPO, fluxd, ("PLUGIN_WAIT", "false")]).expect("valid");
        assert!(
            !pushes_only.contains(&"--url".to_string()),
            "{pushes_only:?}"
        );
    }

    /// The input names of `action.yml`, in order.
    fn action_inputs() -> Vec<String> {
        let action = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../action.yml"));
        let inputs = action
            .split_once("\ninputs:\n")
            .map(|(_, rest)| rest)
            .expect("action.yml has inputs");
        inputs
            .lines()
            .take_while(|line| line.starts_with(' '))
            .filter_map(|line| line.strip_prefix("  "))
            .filter(|line| !line.starts_with(' '))
            .filter_map(|line| line.strip_suffix(':'))
            .map(String::from)
            .collect()
    }

    #[test]
    fn action_inputs_are_the_plugin_settings() {
        assert_eq!(action_inputs(), SETTINGS);
        let action = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../action.yml"));
        assert!(
            action.contains("\nruns:\n  using: docker\n"),
            "a Docker action"
        );
        assert!(
            action.contains("  args:\n    - plugin\n"),
            "runs fluxctl plugin"
        );
    }

    #[test]
    fn the_readme_documents_every_setting() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
        for setting in SETTINGS {
            let variable = format!("PLUGIN_{}", setting.to_uppercase());
            assert!(readme.contains(&variable), "README.md names {variable}");
        }
    }

    #[test]
    fn the_ssh_key_is_written_to_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let p = prepare_from(|name| match name {
            "PLUGIN_IMAGE" => Some("app:1".into()),
            "PLUGIN_WORKLOAD" => Some("default:deployment/app".into()),
            "PLUGIN_GIT_URL" => Some("ssh://git@example.com/c.git".into()),
            "PLUGIN_SSH_KEY" => Some("-----BEGIN KEY-----\nsecret\n-----END KEY-----".into()),
            _ => None,
        })
        .expect("valid settings");
        let at = p
            .argv
            .iter()
            .position(|a| a == "--git-ssh-key")
            .expect("flag");
        let file = PathBuf::from(&p.argv[at + 1]);
        let mode = std::fs::metadata(&file)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&file).expect("readable");
        assert!(text.ends_with("-----END KEY-----\n"), "{text}");
        assert!(
            !p.argv
                .iter()
                .any(|a| a.to_string_lossy().contains("secret"))
        );
        drop(p);
        assert!(!file.exists(), "removed with the run");
    }
}
