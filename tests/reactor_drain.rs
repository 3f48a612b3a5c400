//! A graceful stop (`Handle::drain`, `Cores::drain`) on real sockets:
//! every request the server received is answered, in flight or read and
//! not yet handled or still arriving, idle connections close, new ones
//! are refused, and the reactor stops once the last connection is gone.

#![cfg(feature = "http")]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use milieu::http::{self, Request, Response};
use milieu::reactor::{run_on_threads, Handle, Reactor, SharedPort};

/// `/slow` answers after 300 ms, anything else at once.
async fn handler(request: Request) -> Response {
    if request.path() == "/slow" {
        let reactor = Handle::current().expect("in the reactor's context");
        reactor.sleep(Duration::from_millis(300)).await;
    }
    Response::text(200, format!("{} done", request.path()))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// Reads until the server closes (or 10 s pass): everything it sent.
fn read_to_close(stream: &mut TcpStream) -> io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Reads until `answer` holds `count` responses (the tests' bodies all
/// end in "done").
fn read_responses(stream: &mut TcpStream, count: usize) -> io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut answer = String::new();
    let mut buffer = [0; 4096];
    while answer.matches(" done").count() < count {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        answer.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    Ok(answer)
}

/// A reactor serving `handler` on loopback, run on a thread of its own;
/// the thread returns `run`'s result once the reactor stops.
fn serving() -> (Handle, SocketAddr, std::thread::JoinHandle<io::Result<()>>) {
    let (sender, receiver) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut reactor = Reactor::new()?;
        let app = http::serve(handler);
        let listener = reactor
            .handle()
            .listen_tcp("127.0.0.1:0", move || app.clone())?;
        sender
            .send((reactor.handle(), listener.local_addr()))
            .unwrap();
        reactor.run()
    });
    let (handle, addr) = receiver.recv().unwrap();
    (handle, addr, thread)
}

#[test]
fn draining_answers_everything_received_then_closes_and_stops() -> io::Result<()> {
    let (handle, addr, thread) = serving();

    // In flight when the drain begins, with a second request pipelined
    // behind it: read, not yet answered.
    let mut pipelined = TcpStream::connect(addr)?;
    pipelined.write_all(format!("{}{}", get("/slow"), get("/after")).as_bytes())?;
    // Idle: answered once, kept alive.
    let mut idle = TcpStream::connect(addr)?;
    idle.write_all(get("/first").as_bytes())?;
    assert!(read_responses(&mut idle, 1)?.contains("/first done"));
    // Half a request so far; the rest comes after the drain began.
    let mut partial = TcpStream::connect(addr)?;
    partial.write_all(b"GET /partial HTTP/1.1\r\nHo")?;
    std::thread::sleep(Duration::from_millis(50));
    // A request the server has most likely not read yet, nor accepted its
    // connection: sent just before the drain.
    let mut unread = TcpStream::connect(addr)?;
    unread.write_all(get("/unread").as_bytes())?;
    let began = Instant::now();
    handle.drain();

    // The idle connection is closed at once, with nothing more sent.
    assert_eq!(read_to_close(&mut idle)?, "");
    drop(idle);
    // New connections are refused: the listener is closed.
    std::thread::sleep(Duration::from_millis(50));
    let refused = TcpStream::connect(addr).and_then(|mut late| {
        late.write_all(get("/late").as_bytes())?;
        read_to_close(&mut late)
    });
    assert!(
        refused.as_deref().map_or(true, str::is_empty),
        "a connection after the drain began was served: {refused:?}"
    );
    // The request completed after the drain began is answered.
    partial.write_all(b"st: test\r\n\r\n")?;
    let answer = read_to_close(&mut partial)?;
    assert!(
        answer.contains("200 OK") && answer.contains("/partial done"),
        "{answer}"
    );
    // The last response says the connection closes after it, so that a
    // client sends its next request on a new connection.
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    drop(partial);
    let answer = read_to_close(&mut unread)?;
    // (Its `Connection: close` depends on whether it was answered before
    // the drain began.)
    assert!(answer.contains("/unread done"), "{answer}");
    drop(unread);
    // Both pipelined requests are answered, in order, then the close;
    // only the last response says so.
    let answer = read_to_close(&mut pipelined)?;
    let slow = answer.find("/slow done").expect(&answer);
    let after = answer.find("/after done").expect(&answer);
    assert!(slow < after, "{answer}");
    let close = answer.find("Connection: close\r\n").expect(&answer);
    assert!(slow < close && close < after, "{answer}");
    assert_eq!(answer.matches("Connection: close").count(), 1, "{answer}");
    drop(pipelined);

    // No connection left: the reactor stopped by itself.
    thread.join().expect("the reactor thread")?;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    Ok(())
}

#[test]
fn a_reactor_with_no_connections_stops_at_once() -> io::Result<()> {
    let (handle, addr, thread) = serving();
    handle.drain();
    thread.join().expect("the reactor thread")?;
    assert!(TcpStream::connect(addr).is_err(), "still listening");
    Ok(())
}

#[test]
fn cores_drain_every_reactor_and_finish() -> io::Result<()> {
    let port = SharedPort::bind("127.0.0.1:0")?;
    let addr = port.local_addr();
    let cores = run_on_threads(2, move |handle| {
        let app = http::serve(handler);
        handle.listen_shared(&port, move || app.clone())?;
        Ok(())
    })?;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut client = TcpStream::connect(addr)?;
        client.write_all(get("/slow").as_bytes())?;
        clients.push(client);
    }
    std::thread::sleep(Duration::from_millis(50));
    cores.drain();
    assert!(!cores.is_finished(), "requests are in flight");
    for client in &mut clients {
        let answer = read_to_close(client)?;
        assert!(answer.contains("/slow done"), "{answer}");
    }
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cores.is_finished() {
        assert!(Instant::now() < deadline, "the reactors did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    cores.join()
}
