//! TCP relays on loopback for tests. A [`Relay`] stands in front of one
//! address, can be pointed at another, and counts the connections that open
//! with a TLS handshake (what a client tries before it falls back to plain
//! http). A [`ConnectProxy`] is an HTTP `CONNECT` proxy that reaches named
//! hosts at given addresses: a child process given it as `HTTPS_PROXY`
//! speaks TLS to `registry.test:PORT` end to end, the name in its SNI and
//! its certificate check, with no DNS or `/etc/hosts` entry for the name.
//!
//! ```no_run
//! use flux_testkit::relay::Relay;
//! let relay = Relay::start("127.0.0.1:5000".parse().expect("a socket address"));
//! println!("{} saw {} TLS handshakes", relay.addr(), relay.tls_handshakes());
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// Forwards every connection to its target, counting them; stops accepting
/// when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Counts {
    connections: AtomicUsize,
    tls_handshakes: AtomicUsize,
    /// The client side of each connection, to cut them when the target
    /// changes.
    live: Mutex<Vec<TcpStream>>,
}

impl Relay {
    /// A relay on a free loopback port in front of `target`.
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let target = Arc::new(Mutex::new(target));
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let relay = Relay {
            addr,
            target: target.clone(),
            counts: counts.clone(),
            stop: stop.clone(),
        };
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let target = *target.lock().expect("not poisoned");
                let counts = counts.clone();
                thread::spawn(move || relay_connection(client, target, &counts));
            }
        });
        relay
    }

    /// `127.0.0.1:<port>`, where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends the connections made from now on to `target`, and cuts the
    /// open ones (a client's kept-alive connections would still reach the
    /// old target).
    pub fn point_at(&self, target: SocketAddr) {
        *self.target.lock().expect("not poisoned") = target;
        for stream in self.counts.live.lock().expect("not poisoned").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// Connections so far whose first byte opened a TLS handshake.
    pub fn tls_handshakes(&self) -> usize {
        self.counts.tls_handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay_connection(client: TcpStream, target: SocketAddr, counts: &Counts) {
    counts.connections.fetch_add(1, Ordering::SeqCst);
    if let Ok(clone) = client.try_clone() {
        counts.live.lock().expect("not poisoned").push(clone);
    }
    // HTTP and TLS clients speak first, so this waits for their first byte.
    let mut first = [0u8; 1];
    if matches!(client.peek(&mut first), Ok(1)) && first[0] == TLS_HANDSHAKE {
        counts.tls_handshakes.fetch_add(1, Ordering::SeqCst);
    }
    if let Ok(server) = TcpStream::connect(target) {
        pipe(client, server);
    }
}

/// Copies both ways until each side has closed its half.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(mut a_read), Ok(mut b_write)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let forward = thread::spawn(move || {
        let _ = io::copy(&mut a_read, &mut b_write);
        let _ = b_write.shutdown(Shutdown::Write);
    });
    let (mut b_read, mut a_write) = (b, a);
    let _ = io::copy(&mut b_read, &mut a_write);
    let _ = a_write.shutdown(Shutdown::Write);
    let _ = forward.join();
}

/// An HTTP `CONNECT` proxy on a free loopback port that opens tunnels to
/// the `host:port` names it was given, and answers 502 for any other.
#[derive(Debug)]
pub struct ConnectProxy {
    addr: SocketAddr,
    tunnels: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ConnectProxy {
    /// A proxy that reaches each `host:port` at its address.
    pub fn start(routes: &[(&str, SocketAddr)]) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let routes: Arc<HashMap<String, SocketAddr>> = Arc::new(
            routes
                .iter()
                .map(|(name, addr)| (name.to_ascii_lowercase(), *addr))
                .collect(),
        );
        let tunnels = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let proxy = ConnectProxy {
            addr,
            tunnels: tunnels.clone(),
            stop: stop.clone(),
        };
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let routes = routes.clone();
                let tunnels = tunnels.clone();
                thread::spawn(move || tunnel(client, &routes, &tunnels));
            }
        });
        proxy
    }

    /// `http://127.0.0.1:<port>`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tunnels opened so far.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn tunnel(mut client: TcpStream, routes: &HashMap<String, SocketAddr>, tunnels: &AtomicUsize) {
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let target = match (words.next(), words.next()) {
        (Some("CONNECT"), Some(authority)) => routes.get(&authority.to_ascii_lowercase()),
        _ => None,
    };
    let server = target.and_then(|addr| TcpStream::connect(addr).ok());
    let Some(server) = server else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    tunnels.fetch_add(1, Ordering::SeqCst);
    pipe(client, server);
}

/// The request head, read a byte at a time so nothing after it is taken
/// (the client waits for the answer before it starts TLS anyway).
fn read_head(client: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || client.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}
