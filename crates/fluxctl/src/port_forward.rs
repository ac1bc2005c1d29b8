//! Finding fluxd in a cluster when no `--url` is given: its pod is looked
//! up by labels in one namespace, and a loopback port is forwarded to the
//! pod's API port through the API server, as `kubectl port-forward` does.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::net::{TcpListener, TcpStream};

/// The namespace looked in when neither `--k8s-fwd-ns` nor
/// `FLUX_FORWARD_NAMESPACE` names one: `fluxctl install`'s default too.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The labels looked for when `--k8s-fwd-labels` is not given: `install`
/// puts `app=flux` on fluxd's pod, as Flux v1's manifests did.
pub const DEFAULT_LABELS: &str = "app=flux";

/// Looked for after the labels, as v1's fluxctl did: the `name` label of
/// the pods of v1's and older manifests, and of `install`'s.
pub const FALLBACK_SELECTOR: &str = "name in (flux,fluxd,weave-flux-agent)";

/// fluxd's API port when the pod does not declare a port named `http`.
const API_PORT: u16 = 3030;

/// Where to look for fluxd.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The kubeconfig context; the current one when `None`.
    pub context: Option<String>,
    /// The namespace of fluxd's pod.
    pub namespace: String,
    /// The label selector of fluxd's pod, tried before [`FALLBACK_SELECTOR`].
    pub labels: String,
}

/// Why fluxd could not be reached through the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The kubeconfig could not be read or has no usable context.
    #[error("reading the kubeconfig to find fluxd: {0}; pass fluxd's API with --url (or FLUX_URL)")]
    Kubeconfig(String),
    /// The API server did not answer.
    #[error("cannot reach the Kubernetes API server at {server}: {cause}")]
    Unreachable {
        /// The API server's URL from the kubeconfig.
        server: String,
        /// The innermost cause.
        cause: String,
    },
    /// The API server answered the pod listing with an error.
    #[error("listing pods in namespace {namespace:?}: {message}")]
    Listing {
        /// The namespace looked in.
        namespace: String,
        /// The API server's message.
        message: String,
    },
    /// No pod has the labels.
    #[error(
        "no fluxd pod with labels {labels} (or {FALLBACK_SELECTOR}) in namespace {namespace:?}; \
         if fluxd runs in another namespace pass --k8s-fwd-ns (or FLUX_FORWARD_NAMESPACE), \
         if its pod has other labels pass --k8s-fwd-labels, or pass fluxd's API with --url"
    )]
    NoPod {
        /// The selector tried first.
        labels: String,
        /// The namespace looked in.
        namespace: String,
    },
    /// Pods were found, none of them running.
    #[error("fluxd's pod {pod} in namespace {namespace:?} is {phase}, not Running")]
    NotRunning {
        /// The first pod found.
        pod: String,
        /// The namespace looked in.
        namespace: String,
        /// Its phase (`Pending`, `Failed`, ...).
        phase: String,
    },
    /// The API server refused or broke the port-forward.
    #[error("port-forwarding to pod {pod} port {port} in namespace {namespace:?}: {message}")]
    Forwarding {
        /// The pod.
        pod: String,
        /// The pod's port.
        port: u16,
        /// The namespace.
        namespace: String,
        /// What went wrong.
        message: String,
    },
    /// No loopback port could be listened on.
    #[error("listening on a loopback port for the port-forward: {0}")]
    Listen(#[source] std::io::Error),
}

/// A port-forward to fluxd's pod, serving on a loopback address for as
/// long as the runtime runs.
#[derive(Debug)]
pub struct Forward {
    /// The loopback address that leads to the pod's API port.
    pub local: SocketAddr,
    /// The API token fluxd keeps in Secret `flux-api` beside its pod (what
    /// `fluxctl install` sets up), when the kubeconfig's user may read it.
    pub token: Option<String>,
}

impl Forward {
    /// The daemon's API as seen through the forward.
    pub fn url(&self) -> String {
        format!("http://{}", self.local)
    }
}

/// Finds fluxd's running pod and forwards a loopback port to its API port.
/// The first WebSocket is opened before returning, so that a refused
/// port-forward is told now rather than as a broken HTTP connection.
pub async fn start(lookup: &Lookup) -> Result<Forward, ForwardError> {
    let config = kubeconfig(lookup.context.as_deref()).await?;
    start_with(config, lookup).await
}

/// [`start`] with the cluster's configuration already read.
async fn start_with(config: kube::Config, lookup: &Lookup) -> Result<Forward, ForwardError> {
    let server = config.cluster_url.to_string();
    let client =
        kube::Client::try_from(config).map_err(|e| ForwardError::Kubeconfig(e.to_string()))?;
    let token = kept_token(client.clone(), &lookup.namespace).await;
    let pods: Api<Pod> = Api::namespaced(client, &lookup.namespace);
    let pod = find_pod(&pods, lookup, &server).await?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let port = api_port(&pod);
    let forwarding = |message: String| ForwardError::Forwarding {
        pod: name.clone(),
        port,
        namespace: lookup.namespace.clone(),
        message,
    };
    let first = pods
        .portforward(&name, &[port])
        .await
        .map_err(|e| forwarding(describe(&e)))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(ForwardError::Listen)?;
    let local = listener.local_addr().map_err(ForwardError::Listen)?;
    tokio::spawn(serve(listener, pods, name, port, first));
    Ok(Forward { local, token })
}

/// The token under `api-token` in Secret `flux-api` of `namespace`; none when
/// there is no such Secret or it may not be read (then `--token` is needed
/// for what changes something, as without a cluster).
async fn kept_token(client: kube::Client, namespace: &str) -> Option<String> {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, namespace);
    let secret = secrets.get_opt(crate::install::API_SECRET).await.ok()??;
    let bytes = secret.data?.remove("api-token")?.0;
    let token = String::from_utf8(bytes).ok()?.trim().to_string();
    (!token.is_empty()).then_some(token)
}

async fn kubeconfig(context: Option<&str>) -> Result<kube::Config, ForwardError> {
    let loaded = match context {
        Some(context) => {
            let options = kube::config::KubeConfigOptions {
                context: Some(context.to_string()),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| e.to_string())
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string()),
    };
    loaded.map_err(ForwardError::Kubeconfig)
}

/// The first running pod matching the labels, else the fallback selector.
async fn find_pod(pods: &Api<Pod>, lookup: &Lookup, server: &str) -> Result<Pod, ForwardError> {
    let mut not_running = None;
    for selector in [lookup.labels.as_str(), FALLBACK_SELECTOR] {
        let listed = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| listing_error(e, &lookup.namespace, server))?;
        let (running, others): (Vec<Pod>, Vec<Pod>) =
            listed.items.into_iter().partition(is_running);
        if let Some(pod) = running.into_iter().next() {
            return Ok(pod);
        }
        not_running = not_running.or(others.into_iter().next());
    }
    Err(match not_running {
        Some(pod) => ForwardError::NotRunning {
            pod: pod.metadata.name.unwrap_or_default(),
            namespace: lookup.namespace.clone(),
            phase: pod
                .status
                .and_then(|s| s.phase)
                .unwrap_or_else(|| "without a phase".into()),
        },
        None => ForwardError::NoPod {
            labels: lookup.labels.clone(),
            namespace: lookup.namespace.clone(),
        },
    })
}

/// Running and not being deleted: a terminating pod's fluxd is stopping.
fn is_running(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    phase == Some("Running") && pod.metadata.deletion_timestamp.is_none()
}

/// The container port named `http` (what `install` declares), else 3030.
fn api_port(pod: &Pod) -> u16 {
    pod.spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .flat_map(|container| container.ports.iter().flatten())
        .find(|port| port.name.as_deref() == Some("http"))
        .and_then(|port| u16::try_from(port.container_port).ok())
        .unwrap_or(API_PORT)
}

fn listing_error(error: kube::Error, namespace: &str, server: &str) -> ForwardError {
    match error {
        kube::Error::Api(status) => ForwardError::Listing {
            namespace: namespace.to_string(),
            message: status.message,
        },
        other => ForwardError::Unreachable {
            server: server.to_string(),
            cause: innermost(&other),
        },
    }
}

fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => innermost(other),
    }
}

/// The root cause: the layers above it repeat the request.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// Accepts connections on the loopback port, each over a WebSocket of its
/// own (the first one already open), as `kubectl port-forward` opens a
/// stream per connection.
async fn serve(
    listener: TcpListener,
    pods: Api<Pod>,
    pod: String,
    port: u16,
    first: kube::api::Portforwarder,
) {
    let mut ready = Some(first);
    loop {
        let Ok((connection, _)) = listener.accept().await else {
            // Out of descriptors, or a connection reset before it was
            // taken: the next one may do, but not in a busy loop.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let forwarder = match ready.take() {
            Some(forwarder) => forwarder,
            None => match pods.portforward(&pod, &[port]).await {
                Ok(forwarder) => forwarder,
                Err(error) => {
                    eprintln!(
                        "fluxctl: port-forwarding to pod {pod} port {port}: {}",
                        describe(&error)
                    );
                    continue;
                }
            },
        };
        tokio::spawn(bridge(connection, forwarder, pod.clone(), port));
    }
}

/// Copies bytes both ways between a local connection and the pod's port;
/// an error the API server sends on the port's error channel is told.
async fn bridge(
    mut connection: TcpStream,
    mut forwarder: kube::api::Portforwarder,
    pod: String,
    port: u16,
) {
    let Some(mut upstream) = forwarder.take_stream(port) else {
        return;
    };
    let errors = forwarder.take_error(port);
    let copied = tokio::io::copy_bidirectional(&mut connection, &mut upstream);
    let failed = async {
        match errors {
            Some(errors) => errors.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = copied => {}
        Some(message) = failed => {
            eprintln!("fluxctl: port-forwarding to pod {pod} port {port}: {message}");
        }
    }
    drop(upstream);
    let _ = forwarder.join().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::PostParams;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server that echoes what it reads, standing for fluxd.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut reader, mut writer) = connection.split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                });
            }
        });
        address
    }

    /// What the echo sends back; a connection left unforwarded fails the
    /// test after a minute instead of hanging it.
    async fn exchange(connection: &mut TcpStream, text: &[u8]) -> Vec<u8> {
        connection.write_all(text).await.expect("written");
        let mut answer = vec![0; text.len()];
        let read = connection.read_exact(&mut answer);
        tokio::time::timeout(std::time::Duration::from_secs(60), read)
            .await
            .expect("an answer within a minute")
            .expect("echoed");
        answer
    }

    #[tokio::test]
    async fn each_local_connection_gets_a_port_forward_of_its_own() {
        let cluster = flux_testkit::kube::ApiServer::start();
        let config = kube::Config::new(cluster.url().parse().expect("the double's URL"));
        let client = kube::Client::try_from(config.clone()).expect("a client");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "flux-0", "labels": {"app": "flux"}},
            "spec": {"containers": [{"name": "flux", "image": "fluxd",
                "ports": [{"name": "http", "containerPort": 3030}]}]},
        }))
        .expect("a pod");
        Api::<Pod>::namespaced(client, "default")
            .create(&PostParams::default(), &pod)
            .await
            .expect("the pod is created");
        let running = serde_json::json!({"phase": "Running"});
        assert!(cluster.set_status("Pod", Some("default"), "flux-0", running));
        cluster.forward("default", "flux-0", 3030, echo().await);
        let lookup = Lookup {
            context: None,
            namespace: DEFAULT_NAMESPACE.into(),
            labels: DEFAULT_LABELS.into(),
        };

        let forward = start_with(config, &lookup).await.expect("a forward");
        let mut first = TcpStream::connect(forward.local).await.expect("connected");
        let mut second = TcpStream::connect(forward.local).await.expect("connected");

        // Both open at once, each answered on its own stream.
        assert_eq!(exchange(&mut second, b"second").await, b"second");
        assert_eq!(exchange(&mut first, b"first").await, b"first");
        let forwards = cluster
            .requests()
            .into_iter()
            .filter(|r| r.resource == "pods/portforward")
            .count();
        assert_eq!(forwards, 2);
    }
}
