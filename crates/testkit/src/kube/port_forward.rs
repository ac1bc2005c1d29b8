//! `pods/{name}/portforward` over a WebSocket, as the API server serves it
//! to kube-rs and client-go: the `v4.channel.k8s.io` subprotocol, where each
//! binary message starts with its channel byte. A forwarded port `i` (in
//! the order of the `ports` query) has data channel `2i` and error channel
//! `2i + 1`; the server opens both by sending the port number as two
//! little-endian bytes on each. Where the real API server reaches the pod
//! through its kubelet, the double connects to the local address a test
//! registered for the pod's port ([`super::ApiServer::forward`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::store::ApiError;
use super::{AuthorizedRequest, Shared, fail, query_pairs};

/// The only subprotocol the double speaks: binary frames with a channel byte.
const PROTOCOL: &str = "v4.channel.k8s.io";

/// The pod ports a test made reachable: `(namespace, pod, port)` to the
/// local address that stands for it.
pub(super) type Forwards = std::collections::HashMap<(String, String, u16), SocketAddr>;

/// Upgrades the request to a WebSocket and relays each asked-for port.
pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
    mut request: Request,
) -> Response {
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if !super::serving::authorized(shared.serving.bearer_token.as_deref(), authorization) {
        return super::fail(&super::ApiError::unauthorized());
    }
    // A port-forward is authorised as `create` on `pods/portforward`, also
    // when it arrives as the WebSocket's GET.
    shared
        .requests
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(AuthorizedRequest {
            verb: "create".into(),
            group: String::new(),
            resource: "pods/portforward".into(),
            namespace: Some(namespace.clone()),
            name: Some(name.clone()),
        });
    let missing = {
        let store = shared.store();
        let rt = store
            .types()
            .into_iter()
            .find(|t| t.kind == "Pod")
            .expect("pods are a built-in type");
        let found = store.object(&rt, Some(&namespace), &name).is_some();
        (!found).then(|| ApiError::not_found(&rt, &name))
    };
    if let Some(error) = missing {
        return fail(&error);
    }
    // The protocol first: SPDY clients name their ports in stream headers, not the query.
    let key = match websocket_key(request.method(), request.headers()) {
        Ok(key) => key,
        Err(error) => return fail(&error),
    };
    let ports = match ports(&query_pairs(request.uri())) {
        Ok(ports) => ports,
        Err(error) => return fail(&error),
    };
    let targets: Vec<(u16, Option<SocketAddr>)> = {
        let forwards = shared
            .forwards
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        ports
            .iter()
            .map(|port| {
                let target = forwards.get(&(namespace.clone(), name.clone(), *port));
                (*port, target.copied())
            })
            .collect()
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        relay(socket, &name, targets).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .header(header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL)
        .body(Body::empty())
        .expect("a valid upgrade response")
}

/// The `ports` query: repeated or comma-separated, as clients send it.
fn ports(query: &[(String, String)]) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for (_, value) in query.iter().filter(|(key, _)| key == "ports") {
        for part in value.split(',').filter(|p| !p.is_empty()) {
            let port = part
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ApiError::bad_request(format!("invalid port {part:?}")))?;
            ports.push(port);
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request(
            "at least one port must be given in the \"ports\" query parameter",
        ));
    }
    Ok(ports)
}

/// The client's `Sec-WebSocket-Key`, when it asks for a WebSocket speaking
/// [`PROTOCOL`]; SPDY and the SPDY-over-WebSocket tunnel of newer kubectl
/// are refused.
fn websocket_key(method: &Method, headers: &HeaderMap) -> Result<String, ApiError> {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if *method != Method::GET || !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::bad_request(format!(
            "the double forwards ports over a WebSocket ({PROTOCOL}) only, not {upgrade:?}"
        )));
    }
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);
    if !offered {
        return Err(ApiError::bad_request(format!(
            "the double speaks the {PROTOCOL} subprotocol only"
        )));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))
}

/// What a port's reader saw on its local connection.
enum Read {
    Bytes(usize, Vec<u8>),
    Closed,
}

/// Opens every port's channels, connects each to its registered address
/// and copies bytes both ways until either side closes.
async fn relay<S>(socket: WebSocketStream<S>, pod: &str, targets: Vec<(u16, Option<SocketAddr>)>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    let (reads, mut read) = mpsc::channel::<Read>(16);
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::with_capacity(targets.len());
    let mut open = 0;
    for (index, (port, target)) in targets.into_iter().enumerate() {
        let data = channel(index, false);
        let error = channel(index, true);
        for opening in [data, error] {
            let mut frame = vec![opening];
            frame.extend_from_slice(&port.to_le_bytes());
            if sink.send(Message::binary(frame)).await.is_err() {
                return;
            }
        }
        let connected = match target {
            Some(address) => TcpStream::connect(address)
                .await
                .map_err(|e| format!("error forwarding port {port} to pod {pod}: {e}")),
            None => Err(format!(
                "error forwarding port {port} to pod {pod}: nothing listens on it"
            )),
        };
        match connected {
            Ok(connection) => {
                let (reader, writer) = connection.into_split();
                tokio::spawn(read_port(index, reader, reads.clone()));
                writers.push(Some(writer));
                open += 1;
            }
            Err(message) => {
                let mut frame = vec![error];
                frame.extend_from_slice(message.as_bytes());
                if sink.send(Message::binary(frame)).await.is_err() {
                    return;
                }
                writers.push(None);
            }
        }
    }
    drop(reads);
    while open > 0 {
        tokio::select! {
            incoming = stream.next() => {
                let Some(Ok(message)) = incoming else { break };
                match message {
                    Message::Binary(bytes) if bytes.len() > 1 => {
                        let channel = usize::from(bytes[0]);
                        // Clients write on data channels only.
                        let writer = writers.get_mut(channel / 2).filter(|_| channel % 2 == 0);
                        if let Some(Some(writer)) = writer
                            && writer.write_all(&bytes[1..]).await.is_err()
                        {
                            writers[channel / 2] = None;
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            Some(seen) = read.recv() => match seen {
                Read::Bytes(index, bytes) => {
                    let mut frame = Vec::with_capacity(bytes.len() + 1);
                    frame.push(channel(index, false));
                    frame.extend_from_slice(&bytes);
                    if sink.send(Message::binary(frame)).await.is_err() {
                        break;
                    }
                }
                Read::Closed => open -= 1,
            },
        }
    }
    for writer in writers.iter_mut().flatten() {
        let _ = writer.shutdown().await;
    }
    let _ = sink.send(Message::Close(None)).await;
}

/// The channel byte of port `index`'s data or error channel.
fn channel(index: usize, error: bool) -> u8 {
    u8::try_from(2 * index + usize::from(error)).unwrap_or(u8::MAX)
}

async fn read_port(
    index: usize,
    mut reader: tokio::net::tcp::OwnedReadHalf,
    reads: mpsc::Sender<Read>,
) {
    let mut buffer = vec![0; 32 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if reads
                    .send(Read::Bytes(index, buffer[..n].to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = reads.send(Read::Closed).await;
}
