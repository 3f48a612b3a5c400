//! A model test: random sequences of installs, drops, lookups and snapshots
//! against a trivially correct model (a stack of frames of `(type, value)`).

mod common;

use milieu::{Context, Guard};
use proptest::prelude::*;

struct A(u32);
struct B(u32);
struct C(u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    A,
    B,
    C,
}

const TYPES: [Ty; 3] = [Ty::A, Ty::B, Ty::C];

#[derive(Clone, Copy, Debug)]
struct Install {
    ty: Ty,
    value: u32,
    local: bool,
}

#[derive(Clone, Debug)]
enum Op {
    /// `provide` / `provide_local` of one entry.
    Provide(Install),
    /// One `scope()` frame with two entries (possibly of the same type).
    ProvidePair(Install, Install),
    /// Drop the most recent guard (no-op when there is none).
    Drop,
    Get(Ty),
    With(Ty),
    Snapshot,
    /// Run the stored snapshot `n % len`, checking lookups inside it.
    RunSnapshot(usize),
}

/// One model frame: the entries of one install, in order.
type Frame = Vec<Install>;

/// What a lookup of `ty` finds in `frames`; `carried_only` models a snapshot.
fn predict(frames: &[Frame], ty: Ty, carried_only: bool) -> Option<u32> {
    frames
        .iter()
        .rev()
        .flat_map(|f| f.iter().rev())
        .find(|e| e.ty == ty && !(carried_only && e.local))
        .map(|e| e.value)
}

fn predicted_visible(frames: &[Frame], carried_only: bool) -> usize {
    TYPES
        .iter()
        .filter(|&&ty| predict(frames, ty, carried_only).is_some())
        .count()
}

fn install(scope: milieu::Scope, i: Install) -> milieu::Scope {
    match (i.ty, i.local) {
        (Ty::A, false) => scope.with(A(i.value)),
        (Ty::B, false) => scope.with(B(i.value)),
        (Ty::C, false) => scope.with(C(i.value)),
        (Ty::A, true) => scope.with_local(A(i.value)),
        (Ty::B, true) => scope.with_local(B(i.value)),
        (Ty::C, true) => scope.with_local(C(i.value)),
    }
}

fn get(ty: Ty) -> Option<u32> {
    match ty {
        Ty::A => milieu::get::<A>().ok().map(|v| v.0),
        Ty::B => milieu::get::<B>().ok().map(|v| v.0),
        Ty::C => milieu::get::<C>().ok().map(|v| v.0),
    }
}

fn with(ty: Ty) -> Option<u32> {
    match ty {
        Ty::A => milieu::with(|v: &A| v.0).ok(),
        Ty::B => milieu::with(|v: &B| v.0).ok(),
        Ty::C => milieu::with(|v: &C| v.0).ok(),
    }
}

fn contains(ty: Ty) -> bool {
    match ty {
        Ty::A => milieu::contains::<A>(),
        Ty::B => milieu::contains::<B>(),
        Ty::C => milieu::contains::<C>(),
    }
}

fn snapshot_contains(ctx: &Context, ty: Ty) -> bool {
    match ty {
        Ty::A => ctx.contains::<A>(),
        Ty::B => ctx.contains::<B>(),
        Ty::C => ctx.contains::<C>(),
    }
}

/// Guards dropped newest first, also when a case fails early.
#[derive(Default)]
struct GuardStack(Vec<Guard>);

impl Drop for GuardStack {
    fn drop(&mut self) {
        while let Some(guard) = self.0.pop() {
            drop(guard);
        }
    }
}

fn snapshot_get(ctx: &Context, ty: Ty) -> Option<u32> {
    match ty {
        Ty::A => ctx.get::<A>().ok().map(|v| v.0),
        Ty::B => ctx.get::<B>().ok().map(|v| v.0),
        Ty::C => ctx.get::<C>().ok().map(|v| v.0),
    }
}

/// Checks every lookup of the current context against `frames`.
fn check_current(frames: &[Frame], carried_only: bool, when: &str) -> Result<(), TestCaseError> {
    for ty in TYPES {
        let want = predict(frames, ty, carried_only);
        prop_assert_eq!(get(ty), want, "get::<{:?}> {}", ty, when);
        prop_assert_eq!(with(ty), want, "with::<{:?}> {}", ty, when);
        prop_assert_eq!(
            contains(ty),
            want.is_some(),
            "contains::<{:?}> {}",
            ty,
            when
        );
    }
    let dump = milieu::dump();
    prop_assert_eq!(
        dump.visible().count(),
        predicted_visible(frames, carried_only),
        "visible entries in dump {}:\n{}",
        when,
        dump
    );
    Ok(())
}

fn install_strategy() -> impl Strategy<Value = Install> {
    (
        prop_oneof![Just(Ty::A), Just(Ty::B), Just(Ty::C)],
        0u32..1000,
        proptest::bool::weighted(0.25),
    )
        .prop_map(|(ty, value, local)| Install { ty, value, local })
}

fn ty_strategy() -> impl Strategy<Value = Ty> {
    prop_oneof![Just(Ty::A), Just(Ty::B), Just(Ty::C)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => install_strategy().prop_map(Op::Provide),
        1 => (install_strategy(), install_strategy()).prop_map(|(a, b)| Op::ProvidePair(a, b)),
        3 => Just(Op::Drop),
        2 => ty_strategy().prop_map(Op::Get),
        1 => ty_strategy().prop_map(Op::With),
        1 => Just(Op::Snapshot),
        2 => any::<usize>().prop_map(Op::RunSnapshot),
    ]
}

fn run_ops(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut guards = GuardStack::default();
    // Each snapshot with the model frames it was taken from.
    let mut snapshots: Vec<(Context, Vec<Frame>)> = Vec::new();

    for (step, op) in ops.iter().enumerate() {
        let when = format!("after step {step} ({op:?})");
        match op {
            Op::Provide(i) => {
                guards.0.push(install(milieu::scope(), *i).enter());
                frames.push(vec![*i]);
            }
            Op::ProvidePair(a, b) => {
                guards
                    .0
                    .push(install(install(milieu::scope(), *a), *b).enter());
                frames.push(vec![*a, *b]);
            }
            Op::Drop => {
                drop(guards.0.pop());
                frames.pop();
            }
            Op::Get(ty) => prop_assert_eq!(get(*ty), predict(&frames, *ty, false), "{}", when),
            Op::With(ty) => prop_assert_eq!(with(*ty), predict(&frames, *ty, false), "{}", when),
            Op::Snapshot => snapshots.push((Context::current(), frames.clone())),
            Op::RunSnapshot(n) => {
                if snapshots.is_empty() {
                    continue;
                }
                let (ctx, model) = &snapshots[n % snapshots.len()];
                for ty in TYPES {
                    prop_assert_eq!(snapshot_get(ctx, ty), predict(model, ty, true), "{}", when);
                    prop_assert_eq!(
                        snapshot_contains(ctx, ty),
                        predict(model, ty, true).is_some(),
                        "{}",
                        when
                    );
                }
                ctx.run(|| -> Result<(), TestCaseError> {
                    check_current(model, true, &format!("inside run {when}"))?;
                    // Installing on top of an entered snapshot works as usual.
                    let top = Install {
                        ty: Ty::B,
                        value: 5000,
                        local: false,
                    };
                    let guard = install(milieu::scope(), top).enter();
                    let mut nested: Vec<Frame> = model.clone();
                    nested.push(vec![top]);
                    check_current(&nested, true, &format!("inside run, nested {when}"))?;
                    drop(guard);
                    check_current(model, true, &format!("inside run, after nested {when}"))
                })?;
            }
        }
        check_current(&frames, false, &when)?;
    }

    drop(guards);
    frames.clear();
    check_current(&frames, false, "after dropping every guard")?;
    prop_assert!(milieu::dump().frames.is_empty());
    Ok(())
}

proptest! {
    #[test]
    fn lookups_match_a_stack_model(ops in proptest::collection::vec(op_strategy(), 0..60)) {
        // Each case starts from (and must leave) an empty context.
        prop_assert!(milieu::dump().frames.is_empty());
        run_ops(&ops)?;
    }
}
