//! Context across processes over real loopback sockets: a request enters
//! service A with a `traceparent` and baggage, A's handler calls service B
//! through `milieu::http::Client`, and B sees A's trace, the carried
//! entries, the process hop and (when both sides opt in) where in A each
//! entry was installed. Both services are milieu servers on reactors of
//! their own threads, as two processes would be (the orders example test
//! runs them as two real processes).

mod common;

use common::server::HttpServer;
use common::SOCKET_DEADLINE;
use milieu::dump::ProcessHop;
use milieu::http::{Client, Request, Response, Server};
use milieu::reactor::Reactor;
use milieu::remote::{Baggage, ForwardedBaggage, Propagation, TraceContext};

#[derive(Baggage, Debug)]
#[baggage(key = "tenant")]
struct Tenant(String);

#[derive(Baggage, Debug)]
#[baggage(key = "tier")]
struct Tier(u8);

fn client(propagation: Propagation) -> Client {
    Client::builder()
        .connect_timeout(SOCKET_DEADLINE)
        .read_timeout(SOCKET_DEADLINE)
        .write_timeout(SOCKET_DEADLINE)
        .propagation(propagation)
        .build()
}

/// Service B: answers with what its context holds, one fact per line.
fn service_b(install_sites: bool) -> HttpServer {
    service_b_carrying(
        Propagation::new()
            .carry::<Tenant>()
            .with_install_sites(install_sites),
    )
}

/// [`service_b`] with this `Propagation`.
fn service_b_carrying(propagation: Propagation) -> HttpServer {
    HttpServer::serve(Server::new().propagation(propagation).serve(|_: Request| {
        let trace = milieu::get::<TraceContext>().expect("always installed");
        let mut lines = vec![
            format!("trace {}", trace.trace_id()),
            format!(
                "parent {}",
                trace.parent_id().map(|p| p.to_string()).unwrap_or_default()
            ),
            format!(
                "tenant {}",
                milieu::get::<Tenant>()
                    .map(|t| t.0.clone())
                    .unwrap_or_default()
            ),
        ];
        if let Ok(hop) = milieu::get::<ProcessHop>() {
            lines.push(format!("hop {hop}"));
        }
        if let Ok(forwarded) = milieu::get::<ForwardedBaggage>() {
            for member in forwarded.members() {
                lines.push(format!("forwarded {}", member.encoded()));
            }
        }
        lines.push(milieu::dump().to_string());
        Response::text(200, lines.join("\n"))
    }))
}

/// Service A: calls B's `/` with `client` and answers with B's answer,
/// after a line with its own trace context.
fn service_a(b: &HttpServer, client: Client, tier: bool) -> HttpServer {
    let url = format!("http://{}/", b.addr);
    let propagation = Propagation::new().carry::<Tenant>().carry::<Tier>();
    HttpServer::serve(
        Server::new()
            .propagation(propagation)
            .serve(move |_: Request| {
                let client = client.clone();
                let url = url.clone();
                async move {
                    let own = milieu::get::<TraceContext>().expect("installed");
                    // The client takes the context when the request is sent.
                    let request = {
                        let _tier = tier.then(|| milieu::provide(Tier(3)));
                        client.get(&url).send()
                    };
                    let answer = match request.await {
                        Ok(answer) => answer.text().unwrap_or_default().to_owned(),
                        Err(error) => return Response::text(502, error.to_string()),
                    };
                    // Polled again after the call: the request's context is back.
                    let after = milieu::get::<TraceContext>().expect("installed on every poll");
                    assert_eq!(after.span_id(), own.span_id());
                    Response::text(
                        200,
                        format!(
                            "a-trace {}\na-span {}\n{answer}",
                            own.trace_id(),
                            own.span_id()
                        ),
                    )
                }
            }),
    )
}

/// `GET /` on `addr` with these extra header lines; the answer's body.
fn call(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> String {
    let mut reactor = Reactor::new().unwrap();
    let client = Client::builder()
        .propagation(None)
        .read_timeout(SOCKET_DEADLINE)
        .build();
    let mut request = client.get(&format!("http://{addr}/"));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let answer = reactor
        .run_until(async move { request.await })
        .unwrap()
        .expect("answered");
    assert_eq!(answer.status(), 200, "{}", answer.text().unwrap_or(""));
    answer.text().unwrap().to_owned()
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"))
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_trace_and_its_baggage_cross_two_services() {
    let b = service_b(false);
    let a = service_a(
        &b,
        client(Propagation::new().carry::<Tenant>().carry::<Tier>()),
        false,
    );
    let text = call(
        a.addr,
        &[
            ("traceparent", TRACEPARENT),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("baggage", "tenant=acme,region=eu-west;p=1,bad key=x"),
        ],
    );
    // One trace through both services.
    assert_eq!(line(&text, "a-trace "), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line(&text, "trace "), "4bf92f3577b34da6a3ce929d0e0e4736");
    // B's parent is the span A's client made for the call, a child of A's
    // request span, which is a child of the caller's.
    let b_parent = line(&text, "parent ");
    assert_ne!(b_parent, "00f067aa0ba902b7");
    assert_ne!(b_parent, line(&text, "a-span "));
    // The carried entry arrived, the unknown member was passed on as sent,
    // the malformed one was dropped at A.
    assert_eq!(line(&text, "tenant "), "acme");
    assert_eq!(line(&text, "forwarded "), "region=eu-west;p=1");
    assert!(!text.contains("bad key"), "{text}");
    // B recorded the hop from A.
    let hop = line(&text, "hop ");
    assert!(hop.starts_with("process hop from 127.0.0.1:"), "{hop}");
    assert!(
        hop.contains("traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{hop}"
    );
}

#[test]
fn install_sites_cross_only_when_both_sides_opt_in() {
    for (client_sends, server_reads) in [(true, true), (true, false), (false, true)] {
        let b = service_b_carrying(
            Propagation::new()
                .carry::<Tenant>()
                .carry::<Tier>()
                .with_install_sites(server_reads),
        );
        let a = service_a(
            &b,
            client(
                Propagation::new()
                    .carry::<Tenant>()
                    .carry::<Tier>()
                    .with_service_name("a")
                    .with_install_sites(client_sends),
            ),
            true,
        );
        let text = call(a.addr, &[("baggage", "tenant=acme")]);
        let hop = line(&text, "hop ");
        assert!(hop.contains("(service a"), "{hop}");
        // A installed Tier itself (in `service_a`): its site in this file
        // is what A tells B. Tenant arrived at A from our caller, which
        // sent no site, so A sends none for it.
        let shows_site = text.contains(&format!("installed at {}:", file!()))
            && text.contains(" in service a, carried by process hop from 127.0.0.1:");
        assert_eq!(
            text.matches(" in service a, carried by").count(),
            usize::from(client_sends && server_reads),
            "only Tier has a site:\n{text}"
        );
        assert_eq!(
            shows_site,
            client_sends && server_reads,
            "client sends {client_sends}, server reads {server_reads}:\n{text}"
        );
    }
}

#[test]
fn a_type_not_carried_never_leaves_the_process() {
    let b = service_b(false);
    // A installs Tier(3) but its client does not carry Tier.
    let a = service_a(&b, client(Propagation::new().carry::<Tenant>()), true);
    let text = call(a.addr, &[("baggage", "tenant=acme")]);
    assert!(!text.contains("tier"), "{text}");
    // With the client carrying it, it does (B forwards it as unknown).
    let a = service_a(
        &b,
        client(Propagation::new().carry::<Tenant>().carry::<Tier>()),
        true,
    );
    let text = call(a.addr, &[("baggage", "tenant=acme")]);
    assert_eq!(line(&text, "forwarded "), "tier=3");
}

#[test]
fn bad_context_from_a_caller_restarts_the_trace_and_is_never_an_error() {
    let b = service_b(false);
    for traceparent in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "garbage",
        "",
    ] {
        let text = call(
            b.addr,
            &[
                ("traceparent", traceparent),
                ("baggage", &"x=1,".repeat(1_500)),
            ],
        );
        let trace = line(&text, "trace ");
        assert_ne!(trace, "00000000000000000000000000000000");
        assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line(&text, "parent "), "", "a new trace has no parent");
    }
}

#[test]
fn requests_without_context_get_a_new_trace_each_and_no_hop() {
    let b = service_b(false);
    let first = call(b.addr, &[]);
    let second = call(b.addr, &[]);
    assert_ne!(line(&first, "trace "), line(&second, "trace "));
    assert!(!first.contains("\nhop "), "{first}");
}

#[test]
fn a_client_outside_any_request_starts_a_trace_per_request() {
    let b = service_b(false);
    let client = client(Propagation::new());
    let url = format!("http://{}/", b.addr);
    let mut reactor = Reactor::new().unwrap();
    let (one, two) = reactor
        .run_until(async move {
            let one = client.get(&url).await.unwrap();
            let two = client.get(&url).await.unwrap();
            (
                one.text().unwrap().to_owned(),
                two.text().unwrap().to_owned(),
            )
        })
        .unwrap();
    // A new trace each time, each continued by B (it has a parent).
    assert_ne!(line(&one, "trace "), line(&two, "trace "));
    assert_ne!(line(&one, "parent "), "");
}

#[test]
fn head_requests_get_the_callers_context_too() {
    let server = HttpServer::serve(Server::new().serve(|request: Request| {
        let trace = milieu::get::<TraceContext>().expect("installed");
        match request.method() {
            "GET" => {
                Response::text(200, "page").with_header("trace-id", trace.trace_id().to_string())
            }
            _ => Response::status(405).with_header("Allow", "GET"),
        }
    }));
    let mut reactor = Reactor::new().unwrap();
    let client = Client::builder().propagation(None).build();
    let request = client
        .head(&format!("http://{}/", server.addr))
        .header("traceparent", TRACEPARENT);
    let answer = reactor
        .run_until(async move { request.await })
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Answered as GET, in the caller's trace.
    assert_eq!(
        answer.header("trace-id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[test]
fn a_client_replaces_whatever_the_request_carried_under_the_w3c_names() {
    let b = service_b(true);
    let client = client(Propagation::new().carry::<Tenant>());
    let request = client
        .get(&format!("http://{}/", b.addr))
        .header("traceparent", TRACEPARENT)
        .header("tracestate", "stale=1")
        .header("baggage", "stale=1")
        .header(
            "milieu-origin",
            "service=elsewhere,site.tenant=x%20y.rs:1:1",
        );
    let mut reactor = Reactor::new().unwrap();
    let text = reactor
        .run_until(async move { request.await })
        .unwrap()
        .unwrap()
        .text()
        .unwrap()
        .to_owned();
    // A new trace of this client's context, nothing of the stale fields.
    assert_ne!(line(&text, "trace "), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(!text.contains("stale"), "{text}");
    assert!(!text.contains("elsewhere"), "{text}");
    assert!(!text.contains("x y.rs"), "{text}");
}

#[test]
fn a_member_that_is_not_utf8_is_dropped_and_its_neighbours_survive() {
    use std::io::{Read, Write};
    let b = service_b(false);
    let mut stream = std::net::TcpStream::connect(b.addr).unwrap();
    stream.set_read_timeout(Some(SOCKET_DEADLINE)).unwrap();
    let mut request = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nbaggage: tenant=acme,bad=\xff\xfe,region=eu\r\n\r\n".to_vec();
    stream.write_all(&request).unwrap();
    request.clear();
    stream.read_to_end(&mut request).unwrap();
    let text = String::from_utf8_lossy(&request);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert_eq!(line(&text, "tenant "), "acme");
    assert_eq!(line(&text, "forwarded "), "region=eu");
    assert!(
        text.contains("declined: [DeclinedMember { key: \"bad\""),
        "{text}"
    );
}

#[test]
fn an_edge_service_can_refuse_to_pass_on_its_callers_baggage() {
    for forwarding in [true, false] {
        let propagation = Propagation::new()
            .carry::<Tenant>()
            .with_forwarding(forwarding);
        let outbound = propagation.clone();
        let edge = HttpServer::serve(Server::new().propagation(propagation).serve(
            move |_: Request| {
                // What a call made from this request would carry.
                let mut baggage = String::new();
                outbound.inject(&mut |name, value| {
                    if name == "baggage" {
                        baggage = value.to_owned();
                    }
                });
                Response::text(200, baggage)
            },
        ));
        let text = call(edge.addr, &[("baggage", "tenant=acme,region=eu")]);
        let expected = if forwarding {
            "tenant=acme,region=eu"
        } else {
            "tenant=acme"
        };
        assert_eq!(text, expected, "forwarding {forwarding}");
    }
}

/// A handler still waiting when its server stops is dropped inside its
/// request's context: what it held across `.await` sees the request and
/// the caller's trace as it goes, as its polls did.
#[test]
fn a_handler_dropped_unfinished_at_the_stop_is_dropped_in_its_request() {
    use common::SeenOnDrop;
    use std::io::Write;
    use std::sync::mpsc;
    use std::sync::Mutex;

    let (dropped, seen) = mpsc::channel();
    let (started, has_started) = mpsc::channel();
    // The handler is `Fn + Sync`: the senders wait in mutexes.
    let (dropped, started) = (Mutex::new(dropped), Mutex::new(started));
    let server = HttpServer::serve(Server::new().serve(move |_: Request| {
        let held = SeenOnDrop(dropped.lock().unwrap().clone());
        started.lock().unwrap().send(()).unwrap();
        async move {
            let _held = held;
            std::future::pending::<Response>().await
        }
    }));
    let mut stream = common::connect(server.addr);
    write!(
        stream,
        "GET /waits HTTP/1.1\r\nHost: t\r\ntraceparent: \
         00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
    )
    .unwrap();
    has_started
        .recv_timeout(SOCKET_DEADLINE)
        .expect("the handler runs");
    // Stops the reactor and joins its thread: the waiting handler is
    // dropped with the reactor's tasks.
    drop(server);
    let (path, trace) = seen.recv_timeout(SOCKET_DEADLINE).expect("dropped");
    assert_eq!(path.as_deref(), Some("/waits"));
    assert_eq!(trace.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
}
