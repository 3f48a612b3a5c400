//! A line echo server: every line a client sends comes back.
//!
//! ```text
//! cargo run --example echo -- [--addr HOST:PORT] [--threads N]
//! ```
//!
//! `--addr` defaults to 127.0.0.1:7000 (port 0 picks a free port);
//! `--threads` (default 1) runs that many reactors, one per thread, on one
//! port shared with `SO_REUSEPORT`. The first line of stdout is the bound
//! address. Try it with `nc 127.0.0.1 7000`.

use std::io::{self, Write};
use std::process::ExitCode;

use milieu::reactor::{run_on_threads, serve, LineProtocol, Reactor, Serve, SharedPort};

/// The application: one line in, the same line out.
fn echo(line: String) -> String {
    line
}

/// What serves each connection.
fn service() -> Serve<LineProtocol> {
    serve(LineProtocol::new(), echo)
}

struct Options {
    addr: String,
    threads: usize,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        addr: "127.0.0.1:7000".to_owned(),
        threads: 1,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--addr" => options.addr = value("--addr")?,
            "--threads" => {
                let n = value("--threads")?;
                options.threads = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--threads takes a positive number, not {n:?}"))?;
            }
            "-h" | "--help" => {
                return Err("usage: echo [--addr HOST:PORT] [--threads N]".to_owned())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

fn announce(addr: std::net::SocketAddr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{addr}")?;
    out.flush()
}

fn run(options: &Options) -> io::Result<()> {
    if options.threads == 1 {
        // One reactor on this thread.
        let mut reactor = Reactor::new()?;
        let listener = reactor
            .handle()
            .listen_tcp(options.addr.as_str(), service)?;
        announce(listener.local_addr())?;
        return reactor.run();
    }
    // One reactor per thread, all listening on one port.
    let port = SharedPort::bind(options.addr.as_str())?;
    let addr = port.local_addr();
    let cores = run_on_threads(options.threads, move |handle| {
        handle.listen_shared(&port, service)?;
        Ok(())
    })?;
    announce(addr)?;
    cores.join()
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}
