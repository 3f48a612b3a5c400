//! An HTTP server on a reactor thread of its own, and loopback clients
//! for the attacks of `tests/http_hostile.rs` and `tests/http_budget.rs`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use milieu::http::{self, HttpLimits, HttpProtocol, Request, Response};
use milieu::reactor::{Handle, Handler, Reactor, Serve, ServerBudget};

use super::SOCKET_DEADLINE;

/// `http::serve_with(limits, handler)` listening on a loopback port, run
/// by a reactor on its own thread until dropped.
pub struct HttpServer {
    pub addr: SocketAddr,
    /// The budget `serve_with` attached: its counts show what the server
    /// holds.
    pub budget: ServerBudget,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start<H, K>(limits: HttpLimits, handler: H) -> HttpServer
    where
        H: Handler<Request, Response, K>,
    {
        HttpServer::serve(http::serve_with(limits, handler))
    }

    /// Serves `app` (from `http::serve` or `http::serve_with`, which
    /// attach a budget).
    pub fn serve(app: Serve<HttpProtocol>) -> HttpServer {
        let budget = app
            .budget()
            .cloned()
            .expect("http::serve attaches a budget");
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut reactor = Reactor::new().expect("reactor");
            let handle = reactor.handle();
            let listener = handle
                .listen_tcp("127.0.0.1:0", move || app.clone())
                .expect("listen");
            tx.send((listener.local_addr(), handle)).unwrap();
            reactor.run().expect("reactor run");
        });
        let (addr, handle) = rx.recv().expect("server started");
        HttpServer {
            addr,
            budget,
            handle,
            thread: Some(thread),
        }
    }

    /// Waits until the server holds `n` connections or fewer; false if it
    /// still holds more after `limit`.
    pub fn wait_for_connections_at_most(&self, n: usize, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.budget.connections() <= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.budget.connections() <= n
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A loopback client whose receive buffer is `rcvbuf` bytes (the kernel
/// doubles it), so that a server's output backs up in its own buffers
/// soon when the client does not read.
pub fn small_window_client(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(SOCKET_DEADLINE)).unwrap();
    stream.set_write_timeout(Some(SOCKET_DEADLINE)).unwrap();
    stream
}

/// Writes `bytes` on a thread of its own (the server may stop reading, so
/// the write may block until it closes); the result says how it ended.
pub fn write_in_background(stream: &TcpStream, bytes: Vec<u8>) -> JoinHandle<io::Result<()>> {
    let mut stream = stream.try_clone().expect("clone the socket");
    std::thread::spawn(move || stream.write_all(&bytes))
}

/// Reads until end of stream or an error: the bytes, and the error if
/// the stream did not end cleanly (a reset).
pub fn read_all(stream: &mut TcpStream) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut buf = [0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (out, Some(e)),
        }
    }
}

/// The status codes of the responses in `bytes`, in order.
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect()
}
