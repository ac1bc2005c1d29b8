//! The double's simulated controller: workloads applied with kubectl roll
//! out, and a spec change rolls out again to a new ReplicaSet, in the status
//! fields `kubectl get` (its table's columns) and fluxd read.

use std::process::Output;
use std::time::{Duration, Instant};

use flux_testkit::kube::{ApiServer, Controller};
use serde_json::Value;

fn run(server: &ApiServer, args: &[&str]) -> Output {
    let output = server.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Whether the Deployment's status says its current spec is fully rolled
/// out, as the deployment controller reports it.
fn rolled_out(deployment: &Value) -> bool {
    let status = &deployment["status"];
    let desired = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    let progressed = status["conditions"].as_array().is_some_and(|conditions| {
        conditions
            .iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable")
    });
    status["observedGeneration"] == deployment["metadata"]["generation"]
        && status["replicas"].as_u64() == Some(desired)
        && status["updatedReplicas"].as_u64() == Some(desired)
        && status["readyReplicas"].as_u64() == Some(desired)
        && status["availableReplicas"].as_u64() == Some(desired)
        && progressed
}

fn wait_until_rolled_out(server: &ApiServer, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let deployment = server
            .object("Deployment", Some("sock-shop"), name)
            .expect("the deployment exists");
        if rolled_out(&deployment) {
            return deployment;
        }
        assert!(
            Instant::now() < deadline,
            "not rolled out: {:#}",
            deployment["status"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn progress_message(deployment: &Value) -> String {
    deployment["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn applied_workloads_roll_out_and_a_spec_change_rolls_out_again() {
    let server = ApiServer::start();
    let _controller = Controller::start(&server);
    let sock_shop = flux_testkit::sock_shop_manifests().display().to_string();
    run(&server, &["apply", "--server-side", "-f", &sock_shop]);

    let first = wait_until_rolled_out(&server, "front-end");
    assert_eq!(first["metadata"]["generation"], 1);
    let listed = run(&server, &["get", "deploy", "-n", "sock-shop", "-o", "json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("kubectl printed JSON");
    let items = listed["items"].as_array().expect("a list");
    assert_eq!(items.len(), 14);
    for item in items {
        let name = item["metadata"]["name"].as_str().expect("a name");
        wait_until_rolled_out(&server, name);
    }

    let table = run(&server, &["get", "deploy", "-n", "sock-shop", "-o", "wide"]);
    let table = String::from_utf8_lossy(&table.stdout);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{table}"
    );
    let front_end: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("front-end "))
        .unwrap_or_else(|| panic!("no front-end row in\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(front_end[..4], ["front-end", "1/1", "1", "1"], "{table}");
    assert_eq!(front_end[6], "weaveworksdemos/front-end:0.3.12", "{table}");

    run(
        &server,
        &[
            "set",
            "image",
            "-n",
            "sock-shop",
            "deployment/front-end",
            "front-end=weaveworksdemos/front-end:0.3.13",
        ],
    );
    let second = wait_until_rolled_out(&server, "front-end");
    assert_eq!(second["metadata"]["generation"], 2);
    assert_ne!(
        progress_message(&first),
        progress_message(&second),
        "a new spec is a new ReplicaSet"
    );
    assert!(
        progress_message(&second).ends_with("has successfully progressed."),
        "{}",
        progress_message(&second)
    );
}
