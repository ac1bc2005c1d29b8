//! The built `flux-playground` with the built `fluxd` and `fluxctl` (as
//! `cargo test --workspace` builds them; with `-p flux-playground` alone,
//! `cargo build -p fluxd -p fluxctl` first): it comes up, the commands it
//! prints work against it, and SIGTERM leaves no process and no folder.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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

/// Runs a printed command line after sourcing the printed env file.
fn run_printed(source_line: &str, command: &str) -> Output {
    Command::new("bash")
        .args(["-c", &format!("set -e; {source_line}; {command}")])
        .env_remove("FLUX_URL")
        .env_remove("FLUX_TOKEN")
        .output()
        .expect("bash runs")
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
    beside_playground("fluxd");
    beside_playground("fluxctl");
    let temp = tempfile::tempdir().unwrap();
    let mut playground = Command::new(env!("CARGO_BIN_EXE_flux-playground"))
        .env("TMPDIR", temp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let printed = read_instructions(&mut playground);
    let source = printed_line(&printed, "source ");

    let list = printed_line(&printed, "fluxctl list-workloads");
    let listed = run_printed(source, list);
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let front_end = table
        .lines()
        .find(|l| l.starts_with("sock-shop:deployment/front-end "))
        .unwrap_or_else(|| panic!("no front-end row in\n{table}"));
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

    let images = run_printed(source, printed_line(&printed, "fluxctl list-images"));
    let images = String::from_utf8_lossy(&images.stdout);
    assert!(images.contains("|   0.3.13"), "{images}");
    assert!(images.contains("'-> 0.3.12"), "{images}");

    let automate = run_printed(source, printed_line(&printed, "fluxctl automate"));
    assert!(
        automate.status.success(),
        "{}",
        String::from_utf8_lossy(&automate.stderr)
    );

    let push = printed_line(&printed, "/").to_string();
    assert!(
        push.contains(" push weaveworksdemos/front-end:0.3.14"),
        "{push}"
    );
    let pushed = run_printed(source, &push);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let registry = registry_host(source);
    let tags = http_get(&registry, "/v2/weaveworksdemos/front-end/tags/list");
    assert!(tags.contains("\"0.3.14\""), "{tags}");
    // The registry's notification makes fluxd commit the new tag.
    let listing = printed_line(&printed, "fluxctl list-workloads -c front-end");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = run_printed(source, listing);
        if String::from_utf8_lossy(&listed.stdout).contains("/weaveworksdemos/front-end:0.3.14") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "automation did not commit 0.3.14"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let synced = run_printed(source, printed_line(&printed, "fluxctl sync"));
    let synced = String::from_utf8_lossy(&synced.stdout);
    assert!(synced.trim_end().ends_with("Done."), "{synced}");

    let children = children_of(playground.id());
    let names: Vec<String> = children.iter().map(|&pid| command_name(pid)).collect();
    assert!(names.iter().any(|n| n == "fluxd"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("docker-regist")),
        "{names:?}"
    );

    let pid = rustix::process::Pid::from_child(&playground);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = playground.try_wait().unwrap() {
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
    assert!(
        entries(temp.path()).is_empty(),
        "{:?}",
        entries(temp.path())
    );
}
