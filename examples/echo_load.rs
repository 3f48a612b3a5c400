//! A load client for line echo servers: the one client binary that
//! `benches/compare_echo.sh` runs against both `echo` (milieu) and
//! `tokio_echo`.
//!
//! ```text
//! cargo run --release --example echo_load -- --addr HOST:PORT
//!     [--connections 50] [--depth 16] [--line 64] [--warmup 2] [--duration 10]
//!     [--threads 1]
//! ```
//!
//! Opens `--connections` TCP connections to a loopback address and keeps
//! `--depth` lines of `--line` bytes (the last one `\n`) in flight on each:
//! every echoed line is checked byte for byte against what was sent (each
//! line carries its connection and sequence number) and answered with a new
//! one. Lines echoed during `--duration` seconds, after `--warmup` seconds,
//! are counted. The connections are served by `--threads` threads with
//! non-blocking sockets (mio), spread round-robin. Prints a summary and a
//! last line `RESULT lines_per_sec=<f> lines=<n> secs=<f> total=<n>`
//! (`total` counts the warm-up too); exits non-zero
//! on a mismatch, a closed connection, or 5 s without any echo.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

#[derive(Clone)]
struct Options {
    addr: SocketAddr,
    connections: usize,
    depth: usize,
    line: usize,
    warmup: Duration,
    duration: Duration,
    threads: usize,
}

const USAGE: &str = "usage: echo_load --addr HOST:PORT [--connections N] [--depth N] \
                     [--line BYTES] [--warmup SECS] [--duration SECS] [--threads N]";

/// Without a single echo for this long, the run fails instead of hanging.
const STALL: Duration = Duration::from_secs(5);

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut addr = None;
    let mut options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
        connections: 50,
        depth: 16,
        line: 64,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(10),
        threads: 1,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let mut count = |name: &str, min: usize, max: usize| -> Result<usize, String> {
            let v = value(name)?;
            v.parse()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or(format!("{name} takes a number in {min}..={max}, not {v:?}"))
        };
        match arg.as_str() {
            "--addr" => {
                let v = value("--addr")?;
                let resolved = v
                    .to_socket_addrs()
                    .map_err(|e| format!("--addr {v}: {e}"))?
                    .next()
                    .ok_or(format!("--addr {v}: no address"))?;
                addr = Some(resolved);
            }
            "--connections" => options.connections = count("--connections", 1, 10_000)?,
            "--depth" => options.depth = count("--depth", 1, 1024)?,
            "--line" => options.line = count("--line", 24, 4096)?,
            "--warmup" => options.warmup = Duration::from_secs(count("--warmup", 0, 600)? as u64),
            "--duration" => {
                options.duration = Duration::from_secs(count("--duration", 1, 600)? as u64)
            }
            "--threads" => options.threads = count("--threads", 1, 64)?,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    options.addr = addr.ok_or(USAGE)?;
    if !options.addr.ip().is_loopback() {
        return Err(format!(
            "{}: only loopback addresses are load-tested",
            options.addr
        ));
    }
    Ok(options)
}

/// Line `seq` of connection `id`: `line - 1` bytes of text, then `\n`. The
/// same bytes every time for the same `(id, seq)`, and distinct between
/// lines, so an echo out of order or from another connection is caught.
fn fill_line(out: &mut [u8], id: usize, seq: u64) {
    let (text, end) = out.split_at_mut(out.len() - 1);
    end[0] = b'\n';
    // "iiiii ssssssssssssssss " then letters.
    write_decimal(&mut text[..5], id as u64);
    text[5] = b' ';
    write_decimal(&mut text[6..22], seq);
    text[22] = b' ';
    for (i, b) in text[23..].iter_mut().enumerate() {
        *b = b'a' + ((i as u64 + seq) % 26) as u8;
    }
}

/// `n` as zero-padded decimal filling `out` (its low digits if too long).
fn write_decimal(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Checks one echoed line against line `*received` of connection `id`.
fn check(expected: &mut [u8], id: usize, received: &mut u64, got: &[u8]) -> io::Result<()> {
    fill_line(expected, id, *received);
    if got != expected {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!(
                "connection {id}, line {}: expected {:?}, got {:?}",
                *received,
                String::from_utf8_lossy(expected),
                String::from_utf8_lossy(got)
            ),
        ));
    }
    *received += 1;
    Ok(())
}

struct Conn {
    id: usize,
    stream: TcpStream,
    /// Next sequence number to send, and to expect back.
    sent: u64,
    received: u64,
    /// Bytes read but not yet a whole line.
    input: Vec<u8>,
    /// Bytes not yet written.
    output: Vec<u8>,
    writable_interest: bool,
    expected: Vec<u8>,
}

impl Conn {
    fn queue(&mut self, lines: usize, line: usize) {
        for _ in 0..lines {
            let start = self.output.len();
            self.output.resize(start + line, 0);
            fill_line(&mut self.output[start..], self.id, self.sent);
            self.sent += 1;
        }
    }

    /// Writes queued output until done or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.output.len() {
            match self.stream.write(&self.output[written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.output.drain(..written);
        Ok(())
    }

    /// Reads until `WouldBlock`, checks every whole line; returns how many.
    fn read(&mut self, line: usize, buf: &mut [u8]) -> io::Result<usize> {
        let mut lines = 0;
        loop {
            match self.stream.read(buf) {
                Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "server closed")),
                Ok(n) => {
                    let mut data = &buf[..n];
                    // Complete a partial line first.
                    if !self.input.is_empty() {
                        let take = (line - self.input.len()).min(data.len());
                        self.input.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        if self.input.len() == line {
                            check(&mut self.expected, self.id, &mut self.received, &self.input)?;
                            self.input.clear();
                            lines += 1;
                        }
                    }
                    while data.len() >= line {
                        let (got, rest) = data.split_at(line);
                        check(&mut self.expected, self.id, &mut self.received, got)?;
                        lines += 1;
                        data = rest;
                    }
                    self.input.extend_from_slice(data);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(lines),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// What one thread counted.
#[derive(Default)]
struct Counts {
    /// Lines echoed inside the measurement window.
    measured: u64,
    /// All lines echoed.
    total: u64,
}

/// Drives the connections `ids` until `end`.
fn drive(
    options: &Options,
    ids: Vec<usize>,
    measure_from: Instant,
    end: Instant,
) -> io::Result<Counts> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(ids.len());
    for (index, id) in ids.into_iter().enumerate() {
        let std_stream = StdTcpStream::connect(options.addr)?;
        std_stream.set_nodelay(true)?;
        std_stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry()
            .register(&mut stream, Token(index), Interest::READABLE)?;
        conns.push(Conn {
            id,
            stream,
            sent: 0,
            received: 0,
            input: Vec::with_capacity(options.line),
            output: Vec::with_capacity(options.line * options.depth),
            writable_interest: false,
            expected: vec![0; options.line],
        });
    }
    for conn in &mut conns {
        conn.queue(options.depth, options.line);
        conn.flush()?;
    }

    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut counts = Counts::default();
    let mut last_echo = Instant::now();
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(counts);
        }
        if now.duration_since(last_echo) > STALL {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!("no echo for {STALL:?}"),
            ));
        }
        poll.poll(
            &mut events,
            Some((end - now).min(Duration::from_millis(100))),
        )?;
        let now = Instant::now();
        for event in &events {
            let conn = &mut conns[event.token().0];
            let lines = if event.is_readable() || event.is_read_closed() {
                conn.read(options.line, &mut buf)?
            } else {
                0
            };
            if lines > 0 {
                last_echo = now;
                counts.total += lines as u64;
                if now >= measure_from && now < end {
                    counts.measured += lines as u64;
                }
                conn.queue(lines, options.line);
            }
            conn.flush()?;
            let want_writable = !conn.output.is_empty();
            if want_writable != conn.writable_interest {
                let interest = if want_writable {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                poll.registry()
                    .reregister(&mut conn.stream, event.token(), interest)?;
                conn.writable_interest = want_writable;
            }
        }
    }
}

fn run(options: &Options) -> io::Result<Counts> {
    let start = Instant::now();
    let measure_from = start + options.warmup;
    let end = measure_from + options.duration;
    let threads = options.threads.min(options.connections);
    let mut groups = vec![Vec::new(); threads];
    for id in 0..options.connections {
        groups[id % threads].push(id);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = groups
            .into_iter()
            .map(|ids| scope.spawn(move || drive(options, ids, measure_from, end)))
            .collect();
        let mut sum = Counts::default();
        for worker in workers {
            let counts = worker
                .join()
                .map_err(|_| io::Error::other("a load thread panicked"))??;
            sum.measured += counts.measured;
            sum.total += counts.total;
        }
        Ok(sum)
    })
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
        Ok(counts) => {
            let secs = options.duration.as_secs_f64();
            let rate = counts.measured as f64 / secs;
            println!(
                "{} connections x {} lines of {} bytes in flight, {} client thread(s), \
                 {:?} warm-up: {} lines echoed in {secs:.1} s ({} in all), all verified",
                options.connections,
                options.depth,
                options.line,
                options.threads,
                options.warmup,
                counts.measured,
                counts.total,
            );
            println!(
                "RESULT lines_per_sec={rate:.0} lines={} secs={secs:.3} total={}",
                counts.measured, counts.total
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo_load: {e}");
            ExitCode::FAILURE
        }
    }
}
