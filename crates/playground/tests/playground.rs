//! The built `flux-playground` with the built `fluxd` and `fluxctl` (as
//! `cargo test --workspace` builds them; with `-p flux-playground` alone,
//! `cargo build -p fluxd -p fluxctl` first): it comes up on its simulated
//! cluster, the commands it prints work against it (a release rolls out,
//! automation ends with the new tag running, kubectl reads the cluster), a
//! current kubeconfig context is offered but not used, and SIGTERM leaves
//! no process and no folder.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use flux_testkit::kube::ApiServer;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn beside_playground(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_flux-playground")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p {name}`",
        path.display()
    );
    path
}

/// The printed lines up to the `source <env file>` line.
fn read_instructions(child: &mut Child) -> Vec<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut printed = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no instructions printed; got {printed:#?}"));
        let done = line.contains("Ctrl-C");
        printed.push(line);
        if done {
            return printed;
        }
    }
}

/// Runs a printed command line after sourcing the printed env file, in a
/// HOME of its own (kubectl keeps a cache there).
fn run_printed(source_line: &str, command: &str) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new("bash")
        .args(["-c", &format!("set -e; {source_line}; {command}")])
        .env_remove("FLUX_URL")
        .env_remove("FLUX_TOKEN")
        .env("HOME", home.path())
        .output()
        .expect("bash runs")
}

/// Runs a printed command that must succeed; its standard output and error.
fn run_ok(source_line: &str, command: &str) -> (String, String) {
    let output = run_printed(source_line, command);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{command} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// A started playground, stopped with SIGTERM if a failed assertion drops it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let pid = rustix::process::Pid::from_child(&self.0);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let _ = self.0.wait();
        }
    }
}

/// The playground, started with `args` and `KUBECONFIG` (when given) and
/// a HOME without a kubeconfig, and the lines it printed.
fn start(temp: &Path, args: &[&str], kubeconfig: Option<&Path>) -> (Running, Vec<String>) {
    beside_playground("fluxd");
    beside_playground("fluxctl");
    let mut command = Command::new(env!("CARGO_BIN_EXE_flux-playground"));
    command
        .args(args)
        .env("TMPDIR", temp)
        .env("HOME", temp.join("home"))
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    let mut playground = Running(command.spawn().unwrap());
    let printed = read_instructions(&mut playground.0);
    (playground, printed)
}

/// SIGTERM: the playground stops cleanly, its children are gone and its
/// temporary folder `temp` is left empty.
fn stop(mut playground: Running, temp: &Path) {
    let children = children_of(playground.0.id());
    let pid = rustix::process::Pid::from_child(&playground.0);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = playground.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the playground did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    for child in children {
        assert!(
            !Path::new(&format!("/proc/{child}")).exists(),
            "process {child} is still there"
        );
    }
    assert!(entries(temp).is_empty(), "{:?}", entries(temp));
}

/// Waits until `command`'s output satisfies `done`; its last output.
fn wait_for(source: &str, command: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (stdout, _) = run_ok(source, command);
        if done(&stdout) {
            return stdout;
        }
        assert!(Instant::now() < deadline, "{what}; last:\n{stdout}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The row of `workload` in a `list-workloads` table.
fn row<'t>(table: &'t str, workload: &str) -> &'t str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("{workload} ")))
        .unwrap_or_else(|| panic!("no {workload} row in\n{table}"))
}

fn printed_line<'a>(printed: &'a [String], start: &str) -> &'a str {
    printed
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no printed line starts with {start:?}: {printed:#?}"))
}

/// Every process whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may hold spaces; the fields after its `)` don't.
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let parent = after.split_whitespace().nth(1);
        if parent == Some(&pid.to_string()) {
            children.push(entry.file_name().to_string_lossy().parse().expect("a pid"));
        }
    }
    children
}

fn command_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The registry the env file names, `localhost:<port>`.
fn registry_host(source_line: &str) -> String {
    let env_file = source_line.trim_start_matches("source ").trim();
    let env = std::fs::read_to_string(env_file).expect("the env file exists");
    env.split_whitespace()
        .find_map(|word| word.strip_prefix("FLUX_PLAYGROUND_REGISTRY="))
        .expect("the env file names the registry")
        .to_string()
}

/// The body of a plain HTTP/1.0 GET.
fn http_get(host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let port = host.rsplit(':').next().expect("host:port");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port.parse().expect("a port")))
        .expect("the registry listens");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("the folder is readable")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn the_printed_commands_work_and_sigterm_leaves_nothing_behind() {
    let temp = tempfile::tempdir().unwrap();
    // The user's current context: a cluster that answers, to be offered only.
    let current = ApiServer::start();
    let (playground, printed) = start(temp.path(), &[], Some(&current.kubeconfig()));
    let banner = printed.join("\n");
    assert!(
        banner.contains("simulated: the API is real Kubernetes wire protocol, no pods run"),
        "{banner}"
    );
    assert!(
        banner.contains(&format!(
            "The current kubeconfig context double ({}) answers: `--use-current-context`",
            current.url()
        )),
        "{banner}"
    );
    let source = printed_line(&printed, "source ");

    let list = printed_line(&printed, "fluxctl list-workloads");
    let (table, _) = run_ok(source, list);
    let front_end = row(&table, "sock-shop:deployment/front-end");
    assert!(
        front_end.contains("localhost:") && front_end.contains("/weaveworksdemos/front-end:0.3.12"),
        "{front_end}"
    );
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("sock-shop:"))
            .count(),
        14,
        "{table}"
    );
    // The first sync applied the repo, and the simulated controller rolled it out.
    wait_for(source, list, "not every workload became ready", |table| {
        table
            .lines()
            .filter(|l| l.starts_with("sock-shop:"))
            .all(|l| l.split_whitespace().nth(3) == Some("ready"))
    });

    let (images, _) = run_ok(source, printed_line(&printed, "fluxctl list-images"));
    assert!(images.contains("|   0.3.13"), "{images}");
    assert!(images.contains("'-> 0.3.12"), "{images}");

    let release = printed_line(&printed, "fluxctl release");
    assert!(release.ends_with(" --watch"), "{release}");
    let (released, watched) = run_ok(source, release);
    assert!(released.contains("Commit applied:"), "{released}");
    assert!(
        released.contains("updating") || released.contains("ready"),
        "{released}"
    );
    assert!(
        watched.trim_end().ends_with("All workloads ready."),
        "{released}\n{watched}"
    );
    let (table, _) = run_ok(source, list);
    let front_end = row(&table, "sock-shop:deployment/front-end");
    assert!(
        front_end.contains("/weaveworksdemos/front-end:0.3.13")
            && front_end.split_whitespace().nth(3) == Some("ready"),
        "{front_end}"
    );

    run_ok(source, printed_line(&printed, "fluxctl automate"));
    let push = printed_line(&printed, "/").to_string();
    assert!(
        push.contains(" push weaveworksdemos/front-end:0.3.14"),
        "{push}"
    );
    run_ok(source, &push);
    let registry = registry_host(source);
    let tags = http_get(&registry, "/v2/weaveworksdemos/front-end/tags/list");
    assert!(tags.contains("\"0.3.14\""), "{tags}");

    // The registry's notification makes fluxd commit the new tag, and the
    // sync applies it: the simulated cluster ends up running it.
    let kubectl = printed_line(&printed, "kubectl --kubeconfig ");
    assert!(kubectl.ends_with(" get deploy -n sock-shop"), "{kubectl}");
    let running = format!(
        "{kubectl} front-end -o jsonpath='{{.spec.template.spec.containers[0].image}} \
         {{.metadata.generation}} {{.status.observedGeneration}} {{.status.updatedReplicas}} \
         {{.status.readyReplicas}} {{.status.replicas}}'"
    );
    wait_for(
        source,
        &running,
        "front-end did not end up running 0.3.14",
        |out| {
            let fields: Vec<&str> = out.split_whitespace().collect();
            fields
                .first()
                .is_some_and(|i| i.ends_with("/weaveworksdemos/front-end:0.3.14"))
                && fields.get(1) == fields.get(2)
                && fields[3..] == ["1", "1", "1"]
        },
    );
    wait_for(
        source,
        printed_line(&printed, "fluxctl list-workloads -c front-end"),
        "list-workloads did not show 0.3.14 ready",
        |table| {
            table.lines().any(|l| {
                l.contains("/weaveworksdemos/front-end:0.3.14")
                    && l.split_whitespace().nth(3) == Some("ready")
            })
        },
    );

    let (synced, _) = run_ok(source, printed_line(&printed, "fluxctl sync"));
    let revision = synced
        .lines()
        .find_map(|l| l.strip_prefix("Revision of main to apply is "))
        .unwrap_or_else(|| panic!("no revision named in\n{synced}"));
    assert!(
        synced.contains(&format!("Waiting for {revision} to be applied ...")),
        "{synced}"
    );
    assert!(synced.trim_end().ends_with("Done."), "{synced}");

    let (deployments, _) = run_ok(source, kubectl);
    let front_end: Vec<&str> = deployments
        .lines()
        .find(|l| l.starts_with("front-end "))
        .unwrap_or_else(|| panic!("no front-end row in\n{deployments}"))
        .split_whitespace()
        .collect();
    // NAME READY UP-TO-DATE AVAILABLE AGE
    assert_eq!(
        front_end[..4],
        ["front-end", "1/1", "1", "1"],
        "{deployments}"
    );
    assert_eq!(
        deployments
            .lines()
            .filter(|l| !l.starts_with("NAME"))
            .count(),
        14,
        "{deployments}"
    );

    let names: Vec<String> = children_of(playground.0.id())
        .into_iter()
        .map(command_name)
        .collect();
    assert!(names.iter().any(|n| n == "fluxd"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("docker-regist")),
        "{names:?}"
    );
    stop(playground, temp.path());
    assert_eq!(
        current.total_writes(),
        0,
        "the current context was offered, not used"
    );
}

#[test]
fn use_current_context_applies_to_that_cluster() {
    let temp = tempfile::tempdir().unwrap();
    let current = ApiServer::start();
    let (playground, printed) = start(
        temp.path(),
        &["--use-current-context"],
        Some(&current.kubeconfig()),
    );
    let banner = printed.join("\n");
    assert!(!banner.contains("simulated"), "{banner}");
    assert!(!banner.contains("kubectl --kubeconfig"), "{banner}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while current
        .object("Deployment", Some("sock-shop"), "front-end")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "fluxd applied nothing to the current context"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(playground, temp.path());
}

#[test]
fn without_a_cluster_nothing_is_applied_and_nothing_is_watched() {
    let temp = tempfile::tempdir().unwrap();
    let (playground, printed) = start(temp.path(), &["--cluster=none"], None);
    let banner = printed.join("\n");
    assert!(
        banner.contains("with no cluster (--cluster=none"),
        "{banner}"
    );
    assert!(!banner.contains("kubectl"), "{banner}");
    let release = printed_line(&printed, "fluxctl release");
    assert!(!release.contains("--watch"), "{release}");
    let source = printed_line(&printed, "source ");
    let (_, said) = run_ok(source, release);
    assert!(said.contains("nothing applies"), "{said}");
    stop(playground, temp.path());
}

#[test]
fn use_current_context_without_a_kubeconfig_says_where_it_looked() {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flux-playground"))
        .arg("--use-current-context")
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("KUBECONFIG is not set and ~/.kube/config does not exist")
            && said.contains("--kubeconfig FILE"),
        "{said}"
    );
}
