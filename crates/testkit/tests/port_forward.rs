//! The double's `pods/{name}/portforward` frame by frame, as a WebSocket
//! client speaking `v4.channel.k8s.io` sees it: each port's data and error
//! channels opened with the port in two little-endian bytes, bytes relayed
//! to the address the test registered, errors on the error channel.

use std::io::Write as _;
use std::process::Stdio;

use flux_testkit::kube::{ApiServer, AuthorizedRequest};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn create_pod(server: &ApiServer, name: &str) {
    let mut child = server
        .kubectl()
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl runs");
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: a\n    image: a\n"
    );
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(manifest.as_bytes())
        .expect("kubectl reads the manifest");
    assert!(child.wait().expect("kubectl finishes").success());
}

/// A loopback server that echoes what it reads, standing for a pod's port.
async fn echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0; 1024];
                while let Ok(n) = connection.read(&mut buffer).await {
                    if n == 0 || connection.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

async fn open(server: &ApiServer, pod: &str, ports: &str) -> Result<Socket, Error> {
    let url = format!(
        "{}/api/v1/namespaces/default/pods/{pod}/portforward?ports={ports}",
        server.url().replacen("http", "ws", 1)
    );
    let mut request = url.into_client_request().expect("a WebSocket request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io, v4.channel.k8s.io"
            .parse()
            .expect("a header"),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(
        response.headers()["Sec-WebSocket-Protocol"],
        "v4.channel.k8s.io"
    );
    Ok(socket)
}

async fn next_binary(socket: &mut Socket) -> Vec<u8> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => return bytes.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_forwarded_port_opens_its_channels_and_relays_bytes_both_ways() {
    let server = ApiServer::start();
    create_pod(&server, "web");
    server.forward("default", "web", 3030, echo().await);

    let mut socket = open(&server, "web", "3030").await.expect("the upgrade");

    // 3030 is 0x0bd6: low byte first.
    assert_eq!(next_binary(&mut socket).await, [0, 0xd6, 0x0b]);
    assert_eq!(next_binary(&mut socket).await, [1, 0xd6, 0x0b]);
    socket
        .send(Message::binary(b"\0hello".to_vec()))
        .await
        .expect("sent");
    assert_eq!(next_binary(&mut socket).await, b"\0hello");
    assert!(server.requests().contains(&AuthorizedRequest {
        verb: "create".into(),
        group: String::new(),
        resource: "pods/portforward".into(),
        namespace: Some("default".into()),
        name: Some("web".into()),
    }));
}

#[tokio::test]
async fn a_second_port_gets_the_next_pair_of_channels() {
    let server = ApiServer::start();
    create_pod(&server, "web");
    server.forward("default", "web", 80, echo().await);
    server.forward("default", "web", 443, echo().await);

    let mut socket = open(&server, "web", "80,443").await.expect("the upgrade");

    let mut openings = Vec::new();
    for _ in 0..4 {
        openings.push(next_binary(&mut socket).await);
    }
    assert_eq!(
        openings,
        [
            vec![0, 80, 0],
            vec![1, 80, 0],
            vec![2, 0xbb, 1],
            vec![3, 0xbb, 1]
        ]
    );
    socket
        .send(Message::binary(b"\x02second".to_vec()))
        .await
        .expect("sent");
    assert_eq!(next_binary(&mut socket).await, b"\x02second");
}

#[tokio::test]
async fn a_port_nothing_listens_on_is_told_on_its_error_channel() {
    let server = ApiServer::start();
    create_pod(&server, "web");

    let mut socket = open(&server, "web", "9").await.expect("the upgrade");

    assert_eq!(next_binary(&mut socket).await, [0, 9, 0]);
    assert_eq!(next_binary(&mut socket).await, [1, 9, 0]);
    let error = next_binary(&mut socket).await;
    assert_eq!(error[0], 1);
    assert_eq!(
        String::from_utf8_lossy(&error[1..]),
        "error forwarding port 9 to pod web: nothing listens on it"
    );
}

#[tokio::test]
async fn a_missing_pod_is_not_found_and_no_upgrade_happens() {
    let server = ApiServer::start();

    let refused = open(&server, "gone", "3030").await;

    match refused {
        Err(Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected a 404, got {other:?}"),
    }
}

#[test]
fn kubectl_port_forward_is_refused_as_the_double_speaks_no_spdy() {
    let server = ApiServer::start();
    create_pod(&server, "web");
    // kubectl forwards to running pods only.
    assert!(server.set_status(
        "Pod",
        Some("default"),
        "web",
        serde_json::json!({"phase": "Running"})
    ));

    let out = server
        .kubectl()
        .args(["port-forward", "pod/web", "0:3030"])
        .output()
        .expect("kubectl runs");

    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("error upgrading connection") && text.contains("v4.channel.k8s.io"),
        "{text}"
    );
}
