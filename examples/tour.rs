//! A tour of milieu: install entries from two functions, shadow one, carry
//! the context into a thread and a task, print the dump, then provoke a
//! `Missing` and print it.
//!
//! Run with `cargo run --release --example tour`.

use std::rc::Rc;

use milieu::FutureExt;

/// The service's database handle (a stand-in: the tour needs no database).
#[derive(Debug)]
struct Db {
    path: &'static str,
}

/// Which customer a request belongs to.
#[derive(Debug)]
struct Tenant(&'static str);

/// Per-request scratch space: not `Send`, so it is installed as local.
struct Scratch(#[allow(dead_code)] Rc<Vec<u8>>);

/// A clock nobody installed: the lookup that fails at the end.
struct Clock;

mod legacy {
    /// Same name as the clock the code asks for, from another module: the
    /// `Missing` report lists it as a near miss.
    pub struct Clock;
}

/// Service start-up: installs what lives as long as the service.
fn start_service() -> milieu::Guard {
    milieu::scope()
        .with_debug(Db {
            path: "orders.sqlite",
        })
        .because("one pool per service")
        .with_debug(Tenant("default"))
        .with(legacy::Clock)
        .enter()
}

/// Request handling: shadows the tenant, adds local scratch space.
fn handle_request() {
    let _request = milieu::scope()
        .with_debug(Tenant("acme"))
        .because("tenant of this request")
        .with_local(Scratch(Rc::new(Vec::new())))
        .enter();

    // A thread spawned through milieu carries the context (not the local scratch).
    let from_thread = milieu::thread::Builder::new()
        .name("report-writer")
        .spawn(|| {
            let tenant = milieu::get::<Tenant>().expect("tenant is inherited").0;
            // A task inside that thread: a second hop.
            let task = async { milieu::dump() }.in_current_context();
            (tenant, futures::executor::block_on(task))
        })
        .expect("spawn thread")
        .join()
        .expect("thread finished");

    let db = milieu::get::<Db>().expect("installed at start-up");
    println!(
        "database: {}; tenant seen by the thread: {}\n",
        db.path, from_thread.0
    );
    println!(
        "dump taken inside a task inside the thread:\n{}",
        from_thread.1
    );
    println!("dump taken in the request handler:\n{}", milieu::dump());

    match milieu::get::<Clock>() {
        Ok(_) => unreachable!("nobody installed a Clock"),
        Err(missing) => println!("looking up a Clock fails with:\n{missing}"),
    }
}

fn main() {
    let _service = start_service();
    handle_request();
}
