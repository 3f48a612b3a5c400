//! The line echo server of `examples/echo.rs`, written with tokio: the peer
//! that `benches/compare_echo.sh` measures milieu against.
//!
//! ```text
//! cargo run --example tokio_echo -- [--addr HOST:PORT]
//! ```
//!
//! One `current_thread` runtime, one task per connection. Each connection
//! reads lines with `read_until` from a `BufReader` and writes them to a
//! `BufWriter`, flushing once no complete line is left buffered: pipelined
//! lines that arrive together go back in one write, as milieu's reactor
//! batches its writes per tick. `TCP_NODELAY` is set on accepted sockets, as
//! milieu does. The first line of stdout is the bound address.

use std::io::{self, ErrorKind, Write};
use std::process::ExitCode;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

fn parse(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut addr = "127.0.0.1:7000".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs a value")?,
            "-h" | "--help" => return Err("usage: tokio_echo [--addr HOST:PORT]".to_owned()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(addr)
}

/// Echoes every line of one connection until the peer ends its stream.
async fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, write) = stream.split();
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        writer.write_all(&line).await?;
        // Flush before `read_until` would wait for more input.
        if !reader.buffer().contains(&b'\n') {
            writer.flush().await?;
        }
    }
    writer.flush().await
}

async fn run(addr: &str) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", listener.local_addr()?)?;
        out.flush()?;
    }
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            match echo(stream).await {
                // A load client may close with echoes still in flight.
                Err(e)
                    if !matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
                {
                    eprintln!("tokio_echo: connection: {e}");
                }
                _ => {}
            }
        });
    }
}

fn main() -> ExitCode {
    let addr = match parse(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .and_then(|runtime| runtime.block_on(run(&addr)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_echo: {e}");
            ExitCode::FAILURE
        }
    }
}
