//! Registry hosts that do not answer, for the fault shapes a real registry
//! does not take on request: a host that accepts connections and never
//! replies ([`HangingHost`]: a registry process that hangs, a proxy that
//! holds requests, a firewall that lets the handshake through), and a port
//! where nothing listens ([`refusing_host`]: a registry that is down).
//!
//! ```no_run
//! let hanging = flux_testkit::unreachable::HangingHost::start();
//! println!("{}", hanging.image("team/app")); // 127.0.0.1:<port>/team/app
//! println!("{} requests waiting", hanging.open());
//! ```

use std::io::Read as _;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A loopback port that accepts TCP connections, reads what it is sent and
/// never writes a byte back; its connections are closed when it is dropped.
pub struct HangingHost {
    addr: SocketAddr,
    state: Arc<Connections>,
}

#[derive(Default)]
struct Connections {
    accepted: AtomicUsize,
    open: AtomicUsize,
    stopping: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
}

impl HangingHost {
    /// Listens on a free loopback port.
    pub fn start() -> HangingHost {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(Connections::default());
        let accepting = state.clone();
        std::thread::spawn(move || accept(&listener, &accepting));
        HangingHost { addr, state }
    }

    /// `127.0.0.1:<port>`, the host part of image names.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `127.0.0.1:<port>/<repository>`.
    pub fn image(&self, repository: &str) -> String {
        format!("{}/{repository}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections the client has not closed yet: requests still waiting.
    pub fn open(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }
}

fn accept(listener: &TcpListener, state: &Arc<Connections>) {
    for stream in listener.incoming() {
        if state.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        state.accepted.fetch_add(1, Ordering::SeqCst);
        state.open.fetch_add(1, Ordering::SeqCst);
        if let Ok(kept) = stream.try_clone() {
            state
                .streams
                .lock()
                .expect("never poisoned: no panics under the lock")
                .push(kept);
        }
        let reading = state.clone();
        std::thread::spawn(move || {
            drain(stream);
            reading.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Reads until the peer closes (or the host is dropped).
fn drain(mut stream: TcpStream) {
    let mut buffer = [0u8; 4096];
    while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
}

impl Drop for HangingHost {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        let streams = self
            .state
            .streams
            .lock()
            .expect("never poisoned: no panics under the lock");
        for stream in streams.iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wakes the accepting thread so it sees it should stop.
        let _ = TcpStream::connect(self.addr);
    }
}

/// `127.0.0.1:<port>` where nothing listens: connections are refused. The
/// port was free a moment ago; another process could take it, which tests
/// on loopback accept (as [`crate::git::free_port`] does).
pub fn refusing_host() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("bound address")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::time::{Duration, Instant};

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_hanging_host_keeps_requests_open_and_never_answers() {
        let host = HangingHost::start();
        let mut client = TcpStream::connect(host.host()).expect("the handshake succeeds");
        client
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("the request is taken");
        wait_until("the connection to be accepted", || host.open() == 1);
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("a read timeout");
        let mut buffer = [0u8; 16];
        let read = client.read(&mut buffer);
        assert!(
            read.as_ref().is_err_and(|e| matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )),
            "no answer: {read:?}"
        );
        drop(client);
        wait_until("the closed connection to be counted", || host.open() == 0);
        assert_eq!(host.accepted(), 1);
    }

    #[test]
    fn a_refusing_host_refuses() {
        let addr = refusing_host();
        let error = TcpStream::connect(addr).expect_err("nothing listens");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
