//! The orders example (both roles) as a process: started on ephemeral
//! loopback ports, its SQLite file in a temp dir, talked to with a
//! minimal blocking HTTP/1.1 client. Every read is bounded in time.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use super::examples::build_examples;

/// Anything longer is a hang.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The example's executable, built once per test process (see
/// [`build_examples`]).
pub fn example_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build_examples(&["orders"])
                .remove("orders")
                .expect("cargo built no `orders` example")
        })
        .clone()
}

/// The example as a running process; killed when dropped.
pub struct Server {
    child: Child,
    /// The public listener's address.
    pub addr: SocketAddr,
    /// The admin listener's address, when started with `--admin-addr`.
    pub admin: Option<SocketAddr>,
    _data: tempfile::TempDir,
    /// The orders database (role orders).
    pub db: PathBuf,
}

impl Server {
    /// The orders role, its database in a temp dir, with `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        Server::orders_from(&example_binary(), extra)
    }

    /// [`Server::start`] with this build of the example.
    pub fn orders_from(binary: &Path, extra: &[&str]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut args: Vec<OsString> = vec!["--data".into(), data.path().into()];
        args.extend(extra.iter().map(OsString::from));
        Server::spawn(binary, args, data)
    }

    /// The stock role (`--role stock`) with `extra` flags.
    pub fn start_stock(extra: &[&str]) -> Server {
        Server::stock_from(&example_binary(), extra)
    }

    /// [`Server::start_stock`] with this build of the example.
    pub fn stock_from(binary: &Path, extra: &[&str]) -> Server {
        let mut args: Vec<OsString> = vec!["--role".into(), "stock".into()];
        args.extend(extra.iter().map(OsString::from));
        // No database: the directory only keeps `db` a path nobody uses.
        Server::spawn(binary, args, tempfile::tempdir().unwrap())
    }

    /// Starts the example with `args`, on an ephemeral loopback port, and
    /// waits for the address lines it prints.
    fn spawn(binary: &Path, args: Vec<OsString>, data: tempfile::TempDir) -> Server {
        let with_admin = args.iter().any(|a| a == "--admin-addr");
        let mut child = Command::new(binary)
            .args(["--addr", "127.0.0.1:0"])
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads stdout to its end, so that the service never writes into a
        // closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let address_after = |prefix: &str| -> SocketAddr {
            let line = rx
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("the service printed no `{prefix}ADDR` line"));
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected `{prefix}ADDR`, got {line:?}"))
                .parse()
                .unwrap()
        };
        let addr = address_after("listening on ");
        let admin = with_admin.then(|| address_after("admin listening on "));
        let db = data.path().join("orders.sqlite");
        Server {
            child,
            addr,
            admin,
            _data: data,
            db,
        }
    }

    /// Started with an admin listener on an ephemeral loopback port.
    pub fn start_with_admin(extra: &[&str]) -> Server {
        let mut args = vec!["--admin-addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    /// The admin listener's address; the server must have one.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("started without --admin-addr")
    }

    /// One request to the admin listener on a fresh connection.
    pub fn admin_request(&self, raw: &str) -> Response {
        let mut stream = TcpStream::connect(self.admin_addr()).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        read_response(&mut stream).expect("a response")
    }

    pub fn admin_get(&self, path: &str) -> Response {
        self.admin_request(&get_request(path))
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream
    }

    /// One request on a fresh connection.
    pub fn request(&self, raw: &str) -> Response {
        let mut stream = self.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        read_response(&mut stream).expect("a response")
    }

    pub fn get(&self, path: &str) -> Response {
        self.request(&get_request(path))
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        self.request(&format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }

    /// A second client served while something else is going on.
    pub fn assert_still_serving(&self) {
        assert_eq!(
            self.get("/").status,
            200,
            "the server stopped serving others"
        );
    }

    /// SIGTERM, then the exit status (bounded).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on a connection closed after the response.
fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
}

/// A response as read off the socket.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Reads one response with a `Content-Length` body; `None` at end of
/// stream before a status line.
pub fn read_response(stream: &mut TcpStream) -> Option<Response> {
    let mut response = read_response_head(stream)?;
    let length: usize = response
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    response.body = vec![0; length];
    stream.read_exact(&mut response.body).unwrap();
    Some(response)
}

/// Reads status line and header fields only, as for a response to `HEAD`
/// (its `Content-Length` is the length of the body it goes without).
pub fn read_response_head(stream: &mut TcpStream) -> Option<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => head.push(byte[0]),
            // A socket with a read timeout is not restarted after a signal
            // handler ran (signal(7)), whatever the handler's flags.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading a response head: {e}"),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Some(Response {
        status,
        headers,
        body: Vec::new(),
    })
}

/// True if the server ends the stream (after anything still in flight).
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).is_ok()
}
