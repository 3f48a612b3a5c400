//! One context operation in a loop, for counting its instructions with
//! callgrind (`bash benches/context_instructions.sh`, the figures of
//! docs/design.md, "How it was chosen"). Not a tutorial: see `tour.rs`.
//!
//! Usage: `context_ops OPERATION N`, OPERATION one of
//! - `with`: `milieu::with` borrowing an installed value;
//! - `tokio`: tokio's `task_local!` borrow, the peer of `with`;
//! - `provide`: `milieu::provide` and the guard's drop, empty context;
//! - `snapshot`: `provide`, `Context::current()`, then both dropped;
//! - `poll`: one poll of a pending future wrapped by `in_current_context`
//!   (one entry installed);
//! - `none`: nothing (the run whose count the script subtracts).

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};

use milieu::FutureExt;

struct Hit(u64);

tokio::task_local! {
    static TASK_HIT: Arc<Hit>;
}

// Out of line, so each call is one lookup, as in a caller's code.
#[inline(never)]
fn one_with() -> Result<u64, milieu::Missing> {
    milieu::with(|hit: &Hit| hit.0)
}

#[inline(never)]
fn one_task_local() -> u64 {
    TASK_HIT.with(|hit| hit.0)
}

struct Pending;

impl Future for Pending {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<()> {
        Poll::Pending
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let operation = args.next().unwrap_or_default();
    let Some(n) = args.next().and_then(|n| n.parse::<u64>().ok()) else {
        eprintln!("usage: context_ops with|tokio|provide|snapshot|poll|none N");
        return ExitCode::FAILURE;
    };
    let mut sum = 0;
    match operation.as_str() {
        "with" => {
            let _hit = milieu::provide(Hit(7));
            for _ in 0..n {
                sum += black_box(one_with()).is_ok() as u64;
            }
        }
        "tokio" => TASK_HIT.sync_scope(Arc::new(Hit(7)), || {
            for _ in 0..n {
                sum += black_box(one_task_local());
            }
        }),
        "provide" => {
            for _ in 0..n {
                drop(black_box(milieu::provide(Hit(1))));
            }
        }
        "snapshot" => {
            for _ in 0..n {
                let guard = milieu::provide(Hit(1));
                drop(black_box(milieu::Context::current()));
                drop(guard);
            }
        }
        "poll" => {
            // A context of one entry, captured by the wrapper.
            let _hit = milieu::provide(Hit(7));
            let mut future = Box::pin(Pending.in_current_context());
            let mut cx = TaskContext::from_waker(Waker::noop());
            for _ in 0..n {
                let _ = black_box(future.as_mut().poll(&mut cx));
            }
        }
        "none" => {}
        other => {
            eprintln!("unknown operation {other:?}");
            return ExitCode::FAILURE;
        }
    }
    println!("{sum}");
    ExitCode::SUCCESS
}
