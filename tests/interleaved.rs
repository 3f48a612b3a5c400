//! 100 000 interleaved tasks on two worker threads: every task always sees
//! its own request id, never another's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use milieu::ScopeExt;

struct RequestId(usize);
struct Service;

const TASKS: usize = 100_000;
const YIELDS: usize = 3;

#[test]
fn one_hundred_thousand_tasks_see_only_their_own_context() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let ok = Arc::new(AtomicUsize::new(0));
    let crosstalk = Arc::new(AtomicUsize::new(0));

    let _service = milieu::provide(Service);
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let (ok, crosstalk) = (Arc::clone(&ok), Arc::clone(&crosstalk));
            let task = milieu::scope().with(RequestId(i)).wrap(async move {
                let mine = || {
                    milieu::get::<RequestId>().is_ok_and(|r| r.0 == i)
                        && milieu::with(|r: &RequestId| r.0 == i).unwrap_or(false)
                        && milieu::contains::<Service>()
                };
                let mut clean = mine();
                for _ in 0..YIELDS {
                    tokio::task::yield_now().await;
                    clean &= mine();
                }
                if clean {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    crosstalk.fetch_add(1, Ordering::Relaxed);
                }
            });
            rt.spawn(task)
        })
        .collect();
    rt.block_on(async {
        for handle in handles {
            handle.await.expect("task completed");
        }
    });
    // The workers' own context is empty once the tasks are done.
    let leaked = rt.block_on(async {
        let mut leaked = 0;
        for _ in 0..64 {
            let dirty = tokio::spawn(async { !milieu::dump().frames.is_empty() })
                .await
                .unwrap();
            leaked += usize::from(dirty);
        }
        leaked
    });

    assert_eq!(
        crosstalk.load(Ordering::SeqCst),
        0,
        "tasks saw another task's context"
    );
    assert_eq!(ok.load(Ordering::SeqCst), TASKS);
    assert_eq!(leaked, 0, "a worker thread kept a task's context");
}
