//! `#[requires]` with two injected entries vs the same function doing two
//! manual `with` lookups. Goal: <= 1.1x.
//!
//! Run: `cargo bench --bench declared`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

struct Db(u64);
struct Clock(u64);

#[milieu::requires]
fn declared(order: u64, #[ctx] db: &Db, #[ctx] clock: &Clock) -> u64 {
    order + db.0 + clock.0
}

fn manual(order: u64) -> Result<u64, milieu::Missing> {
    milieu::with(|db: &Db| milieu::with(|clock: &Clock| order + db.0 + clock.0))?
}

fn bench(c: &mut Criterion) {
    let _g = milieu::scope().with(Db(1)).with(Clock(2)).enter();
    let mut group = c.benchmark_group("requires_two_injected");
    group.bench_function("manual_two_with", |b| {
        b.iter(|| manual(black_box(3)).expect("both installed"))
    });
    group.bench_function("requires_macro", |b| b.iter(|| declared(black_box(3))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
