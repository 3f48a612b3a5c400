//! One reactor per thread, sharing a port with `SO_REUSEPORT`.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use milieu::reactor::{run_on_threads, serve, CoreId, Handle, LineProtocol, SharedPort};

/// What a connection was served by: "core-index reactor-name tenant".
fn whoami(_line: String) -> String {
    let core = CoreId::current().expect("a CoreId in the root context");
    let reactor = Handle::current().expect("the reactor's handle");
    let tenant = milieu::get::<Tenant>().map(|t| t.0).unwrap_or("none");
    format!("{} {} {tenant}", core.index(), reactor.name())
}

struct Tenant(&'static str);

/// One request on a fresh connection; the answer line.
fn ask(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(b"who?\n").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).expect("answer");
    line.trim_end().to_owned()
}

#[test]
fn connections_land_on_more_than_one_thread() {
    let _tenant = milieu::provide(Tenant("acme"));
    let port = SharedPort::bind("127.0.0.1:0").unwrap();
    let addr = port.local_addr();
    let cores = run_on_threads(4, move |handle| {
        handle.listen_shared(&port, || serve(LineProtocol::new(), whoami))?;
        Ok(())
    })
    .unwrap();
    assert_eq!(cores.handles().len(), 4);

    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let answer = ask(addr);
        let mut parts = answer.split(' ');
        let (core, name, tenant) = (parts.next(), parts.next(), parts.next());
        let core: usize = core.unwrap().parse().unwrap();
        assert_eq!(name, Some(format!("reactor-{core}").as_str()));
        assert_eq!(
            tenant,
            Some("acme"),
            "the caller's context is every core's root"
        );
        seen.insert(core);
        if seen.len() > 1 {
            break;
        }
    }
    assert!(seen.len() > 1, "every connection landed on core {seen:?}");
    cores.stop();
    cores.join().unwrap();
}

#[test]
fn a_failing_setup_is_reported_and_the_other_cores_stop() {
    let port = SharedPort::bind("127.0.0.1:0").unwrap();
    let addr = port.local_addr();
    let err = run_on_threads(3, move |handle| {
        let core = CoreId::current().unwrap();
        if core.index() == 1 {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "no"));
        }
        handle.listen_shared(&port, || serve(LineProtocol::new(), whoami))?;
        Ok(())
    })
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("core 1"), "{err}");
    // The cores that did listen were stopped and dropped their sockets.
    let refused = TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn a_panicking_setup_is_an_error() {
    let err = run_on_threads(2, |_| panic!("setup blew up")).unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
}

#[test]
fn dropping_the_cores_stops_their_threads() {
    let cores = run_on_threads(2, |_| Ok(())).unwrap();
    let handles: Vec<Handle> = cores.handles().to_vec();
    drop(cores);
    // Stopped and joined: the reactors are gone, so their I/O is refused.
    for handle in handles {
        let err = handle
            .listen_tcp("127.0.0.1:0", || serve(LineProtocol::new(), whoami))
            .unwrap_err();
        assert!(err.to_string().contains("reactor was dropped"), "{err}");
    }
}

/// A port something listens on already is refused, even when that is
/// another `SharedPort` (its sockets have `SO_REUSEPORT` too, so the kernel
/// would let a second group join and split the connections between two
/// services); once it is closed, the port can be bound again.
#[test]
fn a_shared_port_is_not_shared_with_another_listener() {
    let first = SharedPort::bind("127.0.0.1:0").unwrap();
    let addr = first.local_addr();
    let again = SharedPort::bind(addr).expect_err("a second group on the same port");
    assert_eq!(again.kind(), std::io::ErrorKind::AddrInUse, "{again}");
    assert!(again.to_string().contains(&addr.to_string()), "{again}");
    drop(first);
    drop(SharedPort::bind(addr).expect("free again once the first is closed"));

    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = SharedPort::bind(plain.local_addr().unwrap()).expect_err("a plain listener");
    assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse, "{taken}");
}
