//! Holds many idle keep-alive HTTP connections open: the client of the
//! idle-connection memory measurement (benches/idle_rss.sh).
//!
//! ```text
//! cargo run --release --example http_idle -- --addr ADDR [--connections N] [--hold-secs S]
//! ```
//!
//! Opens N connections (default 10,000), sends `GET /` on each and reads
//! the response (so each is a served keep-alive connection, not a bare
//! socket), prints `holding N`, then keeps them open for S seconds
//! (default 10) and exits. Needs `ulimit -n` above N.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

struct Args {
    addr: SocketAddr,
    connections: usize,
    hold: Duration,
}

fn parse() -> Result<Args, String> {
    let mut addr = None;
    let mut connections = 10_000;
    let mut hold = Duration::from_secs(10);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => addr = Some(value.parse().map_err(|e| format!("--addr {value}: {e}"))?),
            "--connections" => {
                connections = value.parse().map_err(|e| format!("--connections: {e}"))?
            }
            "--hold-secs" => {
                hold = Duration::from_secs(value.parse().map_err(|e| format!("--hold-secs: {e}"))?)
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Args {
        addr: addr.ok_or("--addr is required")?,
        connections,
        hold,
    })
}

/// Reads one response head and its `Content-Length` body.
fn read_response(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let mut held = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let mut stream =
            TcpStream::connect(args.addr).map_err(|e| format!("connection {i}: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")?;
        read_response(&mut stream).map_err(|e| format!("connection {i}: {e}"))?;
        held.push(stream);
    }
    println!("holding {}", held.len());
    std::thread::sleep(args.hold);
    Ok(())
}
