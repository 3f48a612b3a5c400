//! A model test: random sequences of installs, drops (in and out of order),
//! lookups, `with` borrows and snapshots (entered on this thread and on
//! others) against a trivially correct model: a stack of slots, each either
//! a frame of `(type, value, local)` entries or an entered snapshot.

mod common;

use std::collections::BTreeSet;
use std::sync::Once;

use common::catch;
use milieu::dump::HopKind;
use milieu::{Context, Guard};
use proptest::prelude::*;

struct A(u32);
struct B(u32);
struct C(u32);

/// Reads the value of any of the model's types through one borrow.
trait Val {
    fn val(&self) -> u32;
}

impl Val for A {
    fn val(&self) -> u32 {
        self.0
    }
}

impl Val for B {
    fn val(&self) -> u32 {
        self.0
    }
}

impl Val for C {
    fn val(&self) -> u32 {
        self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    A,
    B,
    C,
}

const TYPES: [Ty; 3] = [Ty::A, Ty::B, Ty::C];

impl Ty {
    fn type_name(self) -> &'static str {
        match self {
            Ty::A => std::any::type_name::<A>(),
            Ty::B => std::any::type_name::<B>(),
            Ty::C => std::any::type_name::<C>(),
        }
    }
}

/// What an op asks to install; the value is assigned when it runs, unique
/// in the case, so a lookup that finds the wrong entry of the right type
/// is caught.
#[derive(Clone, Copy, Debug)]
struct Spec {
    ty: Ty,
    local: bool,
}

#[derive(Clone, Copy, Debug)]
struct Install {
    ty: Ty,
    value: u32,
    local: bool,
}

/// One model frame: the entries of one install, in order.
type Frame = Vec<Install>;

/// A context as the model sees it: frames bottom first. Local entries in
/// frames below `cut` were left out when a snapshot was entered (they are
/// never visible); `hops` is how many hops the chain records.
#[derive(Clone, Debug, Default)]
struct Model {
    frames: Vec<Frame>,
    cut: usize,
    hops: usize,
}

impl Model {
    /// What a lookup of `ty` finds; `carried_only` models a snapshot.
    fn predict(&self, ty: Ty, carried_only: bool) -> Option<u32> {
        self.frames
            .iter()
            .enumerate()
            .rev()
            .flat_map(|(at, f)| f.iter().rev().map(move |e| (at, e)))
            .find(|(at, e)| e.ty == ty && !(e.local && (carried_only || *at < self.cut)))
            .map(|(_, e)| e.value)
    }

    fn visible_names(&self, carried_only: bool) -> BTreeSet<&'static str> {
        TYPES
            .iter()
            .filter(|&&ty| self.predict(ty, carried_only).is_some())
            .map(|ty| ty.type_name())
            .collect()
    }

    /// Entries in every installed frame of the chain (visible, shadowed or
    /// left behind).
    fn entries(&self) -> usize {
        self.frames.iter().map(Vec::len).sum()
    }

    /// The model of `Context::current()` taken in this context.
    fn snapshot(&self) -> Model {
        Model {
            frames: self.frames.clone(),
            cut: self.frames.len(),
            hops: self.hops,
        }
    }

    /// The model of `ctx.hop(..)` (a snapshot with no frame at all stays
    /// empty: there is nothing to record a hop on).
    fn hopped(&self) -> Model {
        let mut hopped = self.clone();
        if !hopped.frames.is_empty() {
            hopped.hops += 1;
        }
        hopped
    }

    fn with_frame(&self, frame: Frame) -> Model {
        let mut model = self.clone();
        model.frames.push(frame);
        model
    }
}

/// One active install on the test thread.
#[derive(Clone, Debug)]
enum Slot {
    Install(Frame),
    /// `Context::enter` of a snapshot with this model.
    Enter(Model),
}

/// The current context of a stack of slots.
fn view<'a>(slots: impl IntoIterator<Item = &'a Slot>) -> Model {
    let mut model = Model::default();
    for slot in slots {
        match slot {
            Slot::Install(frame) => model.frames.push(frame.clone()),
            Slot::Enter(snapshot) => model = snapshot.clone(),
        }
    }
    model
}

#[derive(Clone, Debug)]
enum Op {
    /// `provide` / `provide_local` of one entry.
    Provide(Spec),
    /// One `scope()` frame with two entries (possibly of the same type).
    ProvidePair(Spec, Spec),
    /// Drop the most recent guard (no-op when there is none).
    Drop,
    /// Drop the guard `1 + n % (live - 1)` places below the newest: out of
    /// order. milieu removes it and every install above, then panics.
    DropOutOfOrder(usize),
    /// Drop a guard an earlier out-of-order drop already removed: quiet.
    DropRemoved(usize),
    Get(Ty),
    With(Ty),
    /// `with` whose closure installs, checks and removes an entry, and
    /// maybe drops a guard of the outer stack (`n`-th from the top),
    /// while the borrowed value must stay correct.
    WithNested(Ty, Spec, Option<usize>),
    /// `Context::current()`, kept for later ops or dropped at once.
    Snapshot {
        keep: bool,
    },
    /// Run stored snapshot `n % len` here, install on top, snapshot that.
    RunSnapshot(usize, Spec),
    /// Enter stored snapshot `n % len` here until a later drop.
    EnterSnapshot(usize),
    /// Send stored snapshot `n % len` (through a thread hop or not) to
    /// another thread; enter it there, install on top, snapshot that and
    /// bring the snapshot back.
    OnThread(usize, bool, Vec<Spec>),
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

/// Installs one entry, with `provide` / `provide_local` as users write it.
fn provide(i: Install) -> Guard {
    match (i.ty, i.local) {
        (Ty::A, false) => milieu::provide(A(i.value)),
        (Ty::B, false) => milieu::provide(B(i.value)),
        (Ty::C, false) => milieu::provide(C(i.value)),
        (Ty::A, true) => milieu::provide_local(A(i.value)),
        (Ty::B, true) => milieu::provide_local(B(i.value)),
        (Ty::C, true) => milieu::provide_local(C(i.value)),
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

/// `milieu::with` for the model type `ty`, handing `f` the borrow.
fn with_val<R>(ty: Ty, f: impl FnOnce(&dyn Val) -> R) -> Option<R> {
    match ty {
        Ty::A => milieu::with(|v: &A| f(v)).ok(),
        Ty::B => milieu::with(|v: &B| f(v)).ok(),
        Ty::C => milieu::with(|v: &C| f(v)).ok(),
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

fn snapshot_get(ctx: &Context, ty: Ty) -> Option<u32> {
    match ty {
        Ty::A => ctx.get::<A>().ok().map(|v| v.0),
        Ty::B => ctx.get::<B>().ok().map(|v| v.0),
        Ty::C => ctx.get::<C>().ok().map(|v| v.0),
    }
}

fn visible_names(dump: &milieu::dump::Dump) -> BTreeSet<&'static str> {
    dump.visible().map(|e| e.type_name).collect()
}

/// Checks every lookup of the current context, and its dump, against `model`.
fn check_current(model: &Model, when: &str) -> Result<(), TestCaseError> {
    for ty in TYPES {
        let want = model.predict(ty, false);
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
    prop_assert!(!dump.snapshot);
    prop_assert_eq!(
        dump.visible().count(),
        model.visible_names(false).len(),
        "visible entries in dump {}:\n{}",
        when,
        dump
    );
    prop_assert_eq!(
        visible_names(&dump),
        model.visible_names(false),
        "visible types in dump {}:\n{}",
        when,
        dump
    );
    prop_assert_eq!(
        dump.entries().count(),
        model.entries(),
        "entries in dump {}:\n{}",
        when,
        dump
    );
    prop_assert_eq!(
        dump.hops().count(),
        model.hops,
        "hops in dump {}:\n{}",
        when,
        dump
    );
    Ok(())
}

/// Checks a snapshot's lookups and dump against `model` (carried entries only).
fn check_snapshot(ctx: &Context, model: &Model, when: &str) -> Result<(), TestCaseError> {
    for ty in TYPES {
        let want = model.predict(ty, true);
        prop_assert_eq!(
            snapshot_get(ctx, ty),
            want,
            "Context::get::<{:?}> {}",
            ty,
            when
        );
        prop_assert_eq!(
            snapshot_contains(ctx, ty),
            want.is_some(),
            "Context::contains::<{:?}> {}",
            ty,
            when
        );
    }
    let names = model.visible_names(true);
    prop_assert_eq!(ctx.is_empty(), names.is_empty(), "is_empty {}", when);
    let dump = ctx.dump();
    prop_assert!(dump.snapshot);
    prop_assert_eq!(
        dump.visible().count(),
        names.len(),
        "visible entries in snapshot dump {}:\n{}",
        when,
        dump
    );
    prop_assert_eq!(
        visible_names(&dump),
        names,
        "visible types in snapshot dump {}:\n{}",
        when,
        dump
    );
    prop_assert_eq!(
        dump.entries().count(),
        model.entries(),
        "entries in snapshot dump {}:\n{}",
        when,
        dump
    );
    prop_assert_eq!(
        dump.hops().count(),
        model.hops,
        "hops in snapshot dump {}:\n{}",
        when,
        dump
    );
    Ok(())
}

/// The test thread's side of a case: live guards with their model slots,
/// guards an out-of-order drop already removed, and stored snapshots.
#[derive(Default)]
struct Run {
    slots: Vec<(Slot, Guard)>,
    removed: Vec<Guard>,
    /// Each snapshot with the model of what it carries.
    snapshots: Vec<(Context, Model)>,
    /// Source of unique values.
    next_value: u32,
}

impl Drop for Run {
    /// Guards dropped newest first, also when a case fails early; the
    /// removed ones are quiet whenever they go.
    fn drop(&mut self) {
        while let Some((_, guard)) = self.slots.pop() {
            drop(guard);
        }
        self.removed.clear();
    }
}

impl Run {
    fn value(&mut self) -> u32 {
        self.next_value += 1;
        self.next_value
    }

    fn install(&mut self, spec: Spec) -> Install {
        Install {
            ty: spec.ty,
            value: self.value(),
            local: spec.local,
        }
    }

    fn view(&self) -> Model {
        view(self.slots.iter().map(|(slot, _)| slot))
    }

    /// Drops the guard `k` places below the newest (`k == 0`: the newest).
    fn drop_at(&mut self, k: usize, when: &str) -> Result<(), TestCaseError> {
        let Some(at) = self.slots.len().checked_sub(1 + k) else {
            return Ok(());
        };
        let above: Vec<Guard> = self.slots.drain(at + 1..).map(|(_, g)| g).collect();
        let (_, guard) = self.slots.pop().expect("at < len");
        let dropped = catch(|| drop(guard));
        if above.is_empty() {
            prop_assert!(
                dropped.is_ok(),
                "in-order drop panicked {}: {:?}",
                when,
                dropped
            );
        } else {
            match dropped {
                Ok(()) => prop_assert!(false, "out-of-order drop did not panic {}", when),
                Err(message) => prop_assert!(
                    message.contains("out of order"),
                    "unexpected panic {}: {}",
                    when,
                    message
                ),
            }
        }
        // The repair removed every install above: their guards are spent.
        self.removed.extend(above);
        Ok(())
    }

    fn stored(&self, n: usize) -> Option<(Context, Model)> {
        (!self.snapshots.is_empty()).then(|| self.snapshots[n % self.snapshots.len()].clone())
    }

    fn step(&mut self, op: &Op, when: &str) -> Result<(), TestCaseError> {
        match op {
            Op::Provide(spec) => {
                let i = self.install(*spec);
                self.slots.push((Slot::Install(vec![i]), provide(i)));
            }
            Op::ProvidePair(a, b) => {
                let (a, b) = (self.install(*a), self.install(*b));
                let guard = install(install(milieu::scope(), a), b).enter();
                self.slots.push((Slot::Install(vec![a, b]), guard));
            }
            Op::Drop => self.drop_at(0, when)?,
            Op::DropOutOfOrder(n) => {
                if self.slots.len() >= 2 {
                    self.drop_at(1 + n % (self.slots.len() - 1), when)?;
                }
            }
            Op::DropRemoved(n) => {
                if !self.removed.is_empty() {
                    let guard = self.removed.remove(n % self.removed.len());
                    let dropped = catch(|| drop(guard));
                    prop_assert!(
                        dropped.is_ok(),
                        "dropping a removed guard panicked {}: {:?}",
                        when,
                        dropped
                    );
                }
            }
            Op::Get(ty) => prop_assert_eq!(get(*ty), self.view().predict(*ty, false), "{}", when),
            Op::With(ty) => {
                prop_assert_eq!(with(*ty), self.view().predict(*ty, false), "{}", when)
            }
            Op::WithNested(ty, spec, drop_outer) => {
                let model = self.view();
                let want = model.predict(*ty, false);
                let inner = self.install(*spec);
                let outcome = with_val(*ty, |v| -> Result<(), TestCaseError> {
                    prop_assert_eq!(Some(v.val()), want, "borrowed {}", when);
                    let guard = provide(inner);
                    check_current(
                        &model.with_frame(vec![inner]),
                        &format!("inside with, nested {when}"),
                    )?;
                    prop_assert_eq!(Some(v.val()), want, "borrowed, nested {}", when);
                    drop(guard);
                    check_current(&model, &format!("inside with, after nested {when}"))?;
                    if let Some(k) = drop_outer {
                        if !self.slots.is_empty() {
                            self.drop_at(k % self.slots.len(), when)?;
                            check_current(
                                &self.view(),
                                &format!("inside with, after an outer drop {when}"),
                            )?;
                        }
                    }
                    prop_assert_eq!(Some(v.val()), want, "borrowed, at the end {}", when);
                    Ok(())
                });
                match outcome {
                    Some(checked) => checked?,
                    None => prop_assert_eq!(want, None, "with found nothing {}", when),
                }
            }
            Op::Snapshot { keep } => {
                let ctx = Context::current();
                let model = self.view().snapshot();
                check_snapshot(&ctx, &model, when)?;
                if *keep {
                    self.snapshots.push((ctx, model));
                }
            }
            Op::RunSnapshot(n, spec) => {
                let Some((ctx, model)) = self.stored(*n) else {
                    return Ok(());
                };
                check_snapshot(&ctx, &model, when)?;
                let top = self.install(*spec);
                let inner = ctx.run(|| -> Result<(Context, Model), TestCaseError> {
                    check_current(&model, &format!("inside run {when}"))?;
                    // Installing on top of an entered snapshot works as usual.
                    let guard = provide(top);
                    let nested = model.with_frame(vec![top]);
                    check_current(&nested, &format!("inside run, nested {when}"))?;
                    let inner = (Context::current(), nested.snapshot());
                    check_snapshot(&inner.0, &inner.1, &format!("inside run {when}"))?;
                    drop(guard);
                    check_current(&model, &format!("inside run, after nested {when}"))?;
                    check_snapshot(&inner.0, &inner.1, &format!("after its drop {when}"))?;
                    Ok(inner)
                })?;
                self.snapshots.push(inner);
            }
            Op::EnterSnapshot(n) => {
                let Some((ctx, model)) = self.stored(*n) else {
                    return Ok(());
                };
                check_snapshot(&ctx, &model, when)?;
                self.slots.push((Slot::Enter(model), ctx.enter()));
            }
            Op::OnThread(n, hop, specs) => {
                let Some((ctx, model)) = self.stored(*n) else {
                    return Ok(());
                };
                let (ctx, model) = if *hop {
                    (ctx.hop(HopKind::Thread), model.hopped())
                } else {
                    (ctx, model)
                };
                let installs: Vec<Install> = specs.iter().map(|s| self.install(*s)).collect();
                let joined = std::thread::scope(|s| {
                    s.spawn(|| on_other_thread(ctx, model, &installs, when))
                        .join()
                });
                let inner = match joined {
                    Ok(result) => result?,
                    Err(payload) => std::panic::resume_unwind(payload),
                };
                check_snapshot(&inner.0, &inner.1, &format!("back from the thread {when}"))?;
                self.snapshots.push(inner);
            }
        }
        Ok(())
    }
}

/// Another thread's side of [`Op::OnThread`]. Takes the snapshot by value
/// so this thread may drop the last reference to it.
fn on_other_thread(
    ctx: Context,
    model: Model,
    installs: &[Install],
    when: &str,
) -> Result<(Context, Model), TestCaseError> {
    let when = format!("on another thread, {when}");
    prop_assert!(
        milieu::dump().frames.is_empty(),
        "a std thread starts empty"
    );
    check_snapshot(&ctx, &model, &when)?;
    let entered = ctx.enter();
    let mut current = model.clone();
    check_current(&current, &format!("entered, {when}"))?;
    let mut guards = Vec::new();
    for &i in installs {
        guards.push(provide(i));
        current = current.with_frame(vec![i]);
        check_current(&current, &format!("installed on top, {when}"))?;
    }
    let inner = (Context::current(), current.snapshot());
    check_snapshot(&inner.0, &inner.1, &when)?;
    while let Some(guard) = guards.pop() {
        drop(guard);
        current.frames.pop();
        check_current(&current, &format!("dropping, {when}"))?;
    }
    drop(entered);
    drop(ctx);
    prop_assert!(milieu::dump().frames.is_empty(), "left empty {}", when);
    check_snapshot(&inner.0, &inner.1, &format!("after the drops, {when}"))?;
    Ok(inner)
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (ty_strategy(), proptest::bool::weighted(0.25)).prop_map(|(ty, local)| Spec { ty, local })
}

fn ty_strategy() -> impl Strategy<Value = Ty> {
    prop_oneof![Just(Ty::A), Just(Ty::B), Just(Ty::C)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => spec_strategy().prop_map(Op::Provide),
        1 => (spec_strategy(), spec_strategy()).prop_map(|(a, b)| Op::ProvidePair(a, b)),
        3 => Just(Op::Drop),
        1 => any::<usize>().prop_map(Op::DropOutOfOrder),
        1 => any::<usize>().prop_map(Op::DropRemoved),
        1 => ty_strategy().prop_map(Op::Get),
        1 => ty_strategy().prop_map(Op::With),
        1 => (ty_strategy(), spec_strategy(), proptest::option::of(0usize..4))
            .prop_map(|(ty, spec, k)| Op::WithNested(ty, spec, k)),
        2 => any::<bool>().prop_map(|keep| Op::Snapshot { keep }),
        1 => (any::<usize>(), spec_strategy()).prop_map(|(n, s)| Op::RunSnapshot(n, s)),
        1 => any::<usize>().prop_map(Op::EnterSnapshot),
        1 => (any::<usize>(), any::<bool>(), proptest::collection::vec(spec_strategy(), 0..3))
            .prop_map(|(n, hop, specs)| Op::OnThread(n, hop, specs)),
    ]
}

/// The out-of-order drops this test makes on purpose panic; keep their
/// messages off stderr (every other panic is still printed).
fn quiet_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.contains("guard dropped out of order") {
                default(info);
            }
        }));
    });
}

fn run_ops(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut run = Run::default();
    for (step, op) in ops.iter().enumerate() {
        let when = format!("after step {step} ({op:?})");
        run.step(op, &when)?;
        check_current(&run.view(), &when)?;
    }

    // Every stored snapshot still answers as when it was taken.
    let snapshots = std::mem::take(&mut run.snapshots);
    drop(run);
    check_current(&Model::default(), "after dropping every guard")?;
    prop_assert!(milieu::dump().frames.is_empty());
    for (ctx, model) in &snapshots {
        check_snapshot(ctx, model, "at the end")?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lookups_match_a_stack_model(ops in proptest::collection::vec(op_strategy(), 0..60)) {
        quiet_expected_panics();
        // Each case starts from (and must leave) an empty context.
        prop_assert!(milieu::dump().frames.is_empty());
        run_ops(&ops)?;
    }
}

proptest! {
    // Fewer, longer cases: deep stacks, many snapshots of snapshots.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn long_runs_match_a_stack_model(ops in proptest::collection::vec(op_strategy(), 100..250)) {
        quiet_expected_panics();
        prop_assert!(milieu::dump().frames.is_empty());
        run_ops(&ops)?;
    }
}
