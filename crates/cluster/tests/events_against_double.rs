//! Events recorded by fluxd, read back the way people read them: kubectl
//! against the API server double.

use flux_cluster::{Connection, EventRecord, EventType, Recorded, Recorder, Regarding};
use flux_testkit::kube::ApiServer;

const FRONT_END: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: front-end
  namespace: default
spec:
  # The double does not default replicas as the real server does, and
  # kubectl describe reads them.
  replicas: 1
  selector:
    matchLabels: {app: front-end}
  template:
    metadata:
      labels: {app: front-end}
    spec:
      containers:
      - name: front-end
        image: weaveworksdemos/front-end:0.3.12
";

fn kubectl(server: &ApiServer, args: &[&str]) -> String {
    let out = server.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(server: &ApiServer, manifest: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, manifest).expect("the manifest is writable");
    let file = file.display().to_string();
    kubectl(server, &["apply", "--server-side", "-f", &file]);
}

async fn recorder(server: &ApiServer) -> Recorder {
    let client = Connection {
        kubeconfig: Some(server.kubeconfig()),
        context: None,
    }
    .client()
    .await
    .expect("a client for the double");
    Recorder::new(client, "fluxd", "fluxd-7c9f-x2l4q")
}

fn released() -> EventRecord {
    EventRecord {
        type_: EventType::Normal,
        reason: "Released".into(),
        message: "front-end: weaveworksdemos/front-end:0.3.12 -> 0.3.13 (commit 1a2b3c4)".into(),
    }
}

fn front_end() -> Regarding {
    Regarding::new("apps/v1", "Deployment", Some("default"), "front-end")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_event_shows_in_kubectl_describe_and_get_events() {
    let server = ApiServer::start();
    apply(&server, FRONT_END);
    let recorder = recorder(&server).await;

    let recorded = recorder.record(Some(&front_end()), &released()).await;

    assert_eq!(recorded.expect("the event is written"), Recorded::Created);
    let describe = kubectl(&server, &["describe", "deploy/front-end"]);
    assert!(describe.contains("Released"), "{describe}");
    assert!(
        describe.contains("weaveworksdemos/front-end:0.3.12 -> 0.3.13"),
        "{describe}"
    );
    let events = kubectl(
        &server,
        &[
            "get",
            "events",
            "-o",
            "custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,SOURCE:.source.component",
        ],
    );
    assert!(events.contains("Normal"), "{events}");
    assert!(events.contains("Released"), "{events}");
    assert!(events.contains("front-end"), "{events}");
    assert!(events.contains("fluxd"), "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_again_is_counted_not_repeated() {
    let server = ApiServer::start();
    apply(&server, FRONT_END);
    let recorder = recorder(&server).await;
    let failed = EventRecord {
        type_: EventType::Warning,
        reason: "SyncFailed".into(),
        message: "Deployment.apps \"front-end\" is invalid: spec.replicas: must be >= 0".into(),
    };

    for _ in 0..3 {
        recorder
            .record(Some(&front_end()), &failed)
            .await
            .expect("the event is written");
    }

    let counts = kubectl(
        &server,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=SyncFailed",
            "-o",
            "jsonpath={range .items[*]}{.count}{\"\\n\"}{end}",
        ],
    );
    assert_eq!(counts.trim(), "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_on_one_object_is_cut_at_the_rate_limit() {
    let server = ApiServer::start();
    apply(&server, FRONT_END);
    let recorder = recorder(&server).await;

    let mut limited = 0;
    for n in 0..30 {
        let event = EventRecord {
            message: format!("attempt {n}"),
            ..released()
        };
        let recorded = recorder.record(Some(&front_end()), &event).await;
        if recorded.expect("the API server answers") == Recorded::RateLimited {
            limited += 1;
        }
    }

    assert_eq!(limited, 5);
    let names = kubectl(&server, &["get", "events", "-o", "name"]);
    assert_eq!(names.lines().count(), 25, "{names}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_without_an_object_goes_on_fluxds_pod() {
    let server = ApiServer::start();
    let recorder = recorder(&server).await.with_fallback(Regarding::new(
        "v1",
        "Pod",
        Some("flux"),
        "fluxd-7c9f-x2l4q",
    ));
    let parse_error = EventRecord {
        type_: EventType::Warning,
        reason: "ParseFailed".into(),
        message: "deploy/front-end.yaml:7: mapping values are not allowed here".into(),
    };
    apply(
        &server,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux\n",
    );

    let recorded = recorder.record(None, &parse_error).await;

    assert_eq!(recorded.expect("the event is written"), Recorded::Created);
    let events = kubectl(
        &server,
        &[
            "get",
            "events",
            "-n",
            "flux",
            "--field-selector",
            "involvedObject.kind=Pod,involvedObject.name=fluxd-7c9f-x2l4q",
            "-o",
            "jsonpath={.items[0].message}",
        ],
    );
    assert_eq!(
        events,
        "deploy/front-end.yaml:7: mapping values are not allowed here"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_k8s_io_serves_the_same_events() {
    let server = ApiServer::start();
    apply(&server, FRONT_END);
    let recorder = recorder(&server).await;
    recorder
        .record(Some(&front_end()), &released())
        .await
        .expect("the event is written");

    let notes = kubectl(
        &server,
        &[
            "get",
            "events.v1.events.k8s.io",
            "--field-selector",
            "regarding.name=front-end",
            "-o",
            "jsonpath={.items[0].apiVersion} {.items[0].regarding.kind} {.items[0].reportingController} {.items[0].note}",
        ],
    );
    assert_eq!(
        notes,
        "events.k8s.io/v1 Deployment fluxd front-end: weaveworksdemos/front-end:0.3.12 -> 0.3.13 (commit 1a2b3c4)"
    );
}
