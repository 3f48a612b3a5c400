//! The peer of the `POST /orders` benchmark: the service written the way
//! one usually writes it without milieu. hyper 1.x on a tokio
//! `current_thread` runtime; each request's database work in
//! `spawn_blocking` on one shared rusqlite connection behind a mutex; one
//! transaction per request that inserts the order and its outbox row;
//! SQLite in WAL mode with `synchronous = FULL`, like milieu's backend.
//! The schema is the orders example's (`orders`, `milieu_outbox`).
//!
//! Run with `cargo run --release --example orders_peer -- --addr
//! 127.0.0.1:0 --data DIR`; prints `listening on ADDR` first. See
//! docs/benchmarks.md, "Group commit".

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The body a client posts.
#[derive(Deserialize)]
struct LineItem {
    item: String,
    quantity: u32,
}

/// The order as stored and answered.
#[derive(Serialize)]
struct Order {
    id: i64,
    item: String,
    quantity: u32,
}

/// The notification, stored in the outbox in the order's transaction.
#[derive(Serialize)]
struct OrderPlaced<'a> {
    order: i64,
    item: &'a str,
    quantity: u32,
}

type Db = Arc<Mutex<Connection>>;
type Reply = Response<Full<Bytes>>;

fn open(data: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(data.join("orders.sqlite"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS orders (
             id       INTEGER PRIMARY KEY AUTOINCREMENT,
             item     TEXT NOT NULL,
             quantity INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS milieu_outbox (
             id           INTEGER PRIMARY KEY AUTOINCREMENT,
             kind         TEXT NOT NULL,
             payload      TEXT NOT NULL,
             created_at   INTEGER NOT NULL DEFAULT (unixepoch()),
             delivered_at INTEGER
         );
         CREATE INDEX IF NOT EXISTS milieu_outbox_undelivered
             ON milieu_outbox (id) WHERE delivered_at IS NULL;",
    )?;
    Ok(conn)
}

/// The order and its outbox row, in one transaction (one fsync).
fn place(conn: &mut Connection, line: LineItem) -> rusqlite::Result<Order> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let item = line.item.trim().to_owned();
    tx.prepare_cached("INSERT INTO orders (item, quantity) VALUES (?1, ?2)")?
        .execute((&item, line.quantity))?;
    let id = tx.last_insert_rowid();
    let payload = serde_json::to_string(&OrderPlaced {
        order: id,
        item: &item,
        quantity: line.quantity,
    })
    .expect("an order serializes");
    tx.prepare_cached("INSERT INTO milieu_outbox (kind, payload) VALUES ('order-placed', ?1)")?
        .execute([payload])?;
    tx.commit()?;
    Ok(Order {
        id,
        item,
        quantity: line.quantity,
    })
}

fn json(status: StatusCode, body: String) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

async fn serve(db: Db, request: Request<hyper::body::Incoming>) -> Result<Reply, hyper::Error> {
    if request.method() != Method::POST || request.uri().path() != "/orders" {
        return Ok(json(
            StatusCode::NOT_FOUND,
            r#"{"error":"not found"}"#.into(),
        ));
    }
    let body = match Limited::new(request.into_body(), 64 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(json(StatusCode::BAD_REQUEST, r#"{"error":"body"}"#.into())),
    };
    let line = match serde_json::from_slice::<LineItem>(&body) {
        Ok(line) if !line.item.trim().is_empty() && line.quantity > 0 => line,
        _ => {
            return Ok(json(
                StatusCode::BAD_REQUEST,
                r#"{"error":"bad order"}"#.into(),
            ))
        }
    };
    let placed = tokio::task::spawn_blocking(move || {
        let mut conn = db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        place(&mut conn, line)
    })
    .await;
    Ok(match placed {
        Ok(Ok(order)) => json(
            StatusCode::CREATED,
            serde_json::to_string(&order).expect("an order serializes"),
        ),
        Ok(Err(e)) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": e.to_string() }).to_string(),
        ),
        Err(_) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"panic"}"#.into(),
        ),
    })
}

fn parse() -> Result<(SocketAddr, PathBuf), String> {
    let usage = "usage: orders_peer [--addr HOST:PORT] [--data DIR]";
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 8082));
    let mut data = std::env::temp_dir().join("milieu-orders-peer");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(usage)?;
        match flag.as_str() {
            "--addr" => addr = value.parse().map_err(|e| format!("--addr {value}: {e}"))?,
            "--data" => data = PathBuf::from(value),
            _ => return Err(usage.into()),
        }
    }
    Ok((addr, data))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, data) = parse()?;
    std::fs::create_dir_all(&data)?;
    let db: Db = Arc::new(Mutex::new(open(&data)?));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let db = Arc::clone(&db);
            tokio::task::spawn(async move {
                let service = service_fn(move |request| serve(Arc::clone(&db), request));
                let served = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    eprintln!("connection error: {e}");
                }
            });
        }
    })
}
