//! `#[requires]` at run time: one report for everything missing, the
//! `Result` and panic paths, `async fn` checked at first poll in the
//! context it runs in, methods, generics, injected parameters, and the
//! start-up verification report.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use milieu::{FutureExt, Missing};

#[derive(Debug)]
struct Db(&'static str);
struct Clock(u64);
struct Logger;

#[derive(Debug)]
enum AppError {
    Missing(Missing),
}

impl From<Missing> for AppError {
    fn from(missing: Missing) -> Self {
        AppError::Missing(missing)
    }
}

const DECLARED_LINE: u32 = line!() + 1;
#[milieu::requires(Db, Clock, Logger)]
fn needs_three() -> Result<&'static str, AppError> {
    Ok("ran")
}

#[milieu::requires(Db)]
fn panics_without_db() -> u32 {
    7
}

#[milieu::requires(Clock)]
fn injected(order: u32, #[ctx] db: Arc<Db>, #[ctx] clock: &Clock) -> Result<String, AppError> {
    Ok(format!("{order} in {} at {}", db.0, clock.0))
}

#[milieu::requires(Db)]
async fn async_handler(#[ctx] clock: &Clock) -> Result<u64, AppError> {
    std::future::ready(()).await;
    Ok(clock.0)
}

struct Repo<T>(T);

#[milieu::requires(Repo<T>)]
fn generic<T: Clone + Send + Sync + 'static>(#[ctx] repo: &Repo<T>) -> T {
    repo.0.clone()
}

struct Service;

impl Service {
    #[milieu::requires(Db)]
    fn method(&self, #[ctx] clock: Arc<Clock>) -> u64 {
        clock.0
    }
}

fn missing_of<T: std::fmt::Debug>(result: Result<T, AppError>) -> Missing {
    match result {
        Err(AppError::Missing(missing)) => missing,
        Ok(value) => panic!("expected a Missing report, got Ok({value:?})"),
    }
}

#[test]
fn every_missing_type_is_listed_in_one_report() {
    let _db = milieu::provide(Db("orders"));
    let call_line = line!() + 1;
    let missing = missing_of(needs_three());
    let names: Vec<_> = missing.type_names().to_vec();
    assert_eq!(
        names,
        [
            std::any::type_name::<Clock>(),
            std::any::type_name::<Logger>()
        ]
    );

    let declared = missing.declared().expect("report names the declaration");
    assert!(
        declared.function.ends_with("declared::needs_three"),
        "{}",
        declared.function
    );
    assert_eq!(
        (declared.site.file, declared.site.line),
        (file!(), DECLARED_LINE)
    );
    let site = missing.site().expect("a sync fn knows its caller");
    assert_eq!((site.file, site.line), (file!(), call_line));

    let text = missing.to_string();
    assert!(text.contains("requires 2 entries missing"), "{text}");
    assert!(
        text.contains(&format!("declared at {}:{DECLARED_LINE}", file!())),
        "{text}"
    );
    assert!(
        text.contains(&format!("called from {}:{call_line}", file!())),
        "{text}"
    );
    // The dump of what is present, with the Db's install site.
    assert!(text.contains(std::any::type_name::<Db>()), "{text}");
}

#[test]
fn result_functions_run_when_everything_is_present() {
    let _g = milieu::scope()
        .with(Db("orders"))
        .with(Clock(1))
        .with(Logger)
        .enter();
    assert_eq!(needs_three().unwrap(), "ran");
}

#[test]
fn functions_without_result_panic_with_the_report() {
    let call_line = line!() + 1;
    let panic = catch_unwind(|| panics_without_db()).expect_err("must panic without a Db");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(message.contains("requires 1 entry missing"), "{message}");
    assert!(message.contains(std::any::type_name::<Db>()), "{message}");
    assert!(
        message.contains(&format!("called from {}:{call_line}", file!())),
        "{message}"
    );

    let _db = milieu::provide(Db("orders"));
    assert_eq!(panics_without_db(), 7);
}

#[test]
fn injected_parameters_are_fetched_and_not_passed_by_callers() {
    let _db = milieu::provide(Db("orders"));
    let _clock = milieu::provide(Clock(42));
    assert_eq!(injected(3).unwrap(), "3 in orders at 42");
}

#[test]
fn injected_parameters_count_as_requirements() {
    let _clock = milieu::provide(Clock(42));
    let missing = missing_of(injected(3));
    assert_eq!(missing.type_names(), [std::any::type_name::<Db>()]);
}

#[milieu::requires]
fn strong_count_during_call(probe: &Arc<Clock>, #[ctx] clock: &Clock) -> usize {
    let _ = clock.0;
    Arc::strong_count(probe)
}

#[test]
fn borrowed_injection_does_not_clone_the_arc() {
    let clock = Arc::new(Clock(5));
    let _clock = milieu::provide_arc(Arc::clone(&clock));
    // Ours and the context's: 2. A clone for the `&Clock` would make it 3.
    assert_eq!(strong_count_during_call(&clock), 2);
}

#[test]
fn async_fn_is_checked_at_first_poll_in_the_context_it_runs_in() {
    // Created where nothing is installed: no check yet.
    let future = async_handler();
    // Polled inside a context that has both entries: passes.
    let ctx = milieu::scope()
        .with(Db("orders"))
        .with(Clock(9))
        .run(milieu::Context::current);
    let value = futures::executor::block_on(future.in_context(ctx)).unwrap();
    assert_eq!(value, 9);

    // Created inside a full context but polled in an empty one: fails, and
    // the report lists both.
    let future = milieu::scope()
        .with(Db("orders"))
        .with(Clock(9))
        .run(async_handler);
    let missing = missing_of(futures::executor::block_on(future));
    assert_eq!(
        missing.type_names(),
        [std::any::type_name::<Db>(), std::any::type_name::<Clock>()]
    );
    assert!(
        missing.site().is_none(),
        "an async fn's caller is not known"
    );
    assert!(missing.to_string().contains("first polled"));
}

#[test]
fn generic_functions_and_methods() {
    let _repo = milieu::provide(Repo(String::from("row")));
    assert_eq!(generic::<String>(), "row");
    let missing = catch_unwind(|| generic::<u8>()).expect_err("no Repo<u8>");
    let message = missing.downcast_ref::<String>().unwrap();
    assert!(
        message.contains(std::any::type_name::<Repo<u8>>()),
        "{message}"
    );

    let _db = milieu::provide(Db("orders"));
    let _clock = milieu::provide(Clock(3));
    assert_eq!(Service.method(), 3);
}

#[test]
fn a_panic_in_the_body_keeps_its_own_location() {
    #[milieu::requires]
    fn explode(#[ctx] db: &Db) {
        let empty: Option<u8> = std::hint::black_box(None);
        let _ = db;
        empty.expect("boom"); // this line, not the caller's, must be reported
    }
    let body_line = line!() - 2;
    let _db = milieu::provide(Db("orders"));
    let location = Arc::new(std::sync::Mutex::new(None));
    let seen = Arc::clone(&location);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        *seen.lock().unwrap() = info.location().map(|l| l.line());
    }));
    let result = catch_unwind(AssertUnwindSafe(explode));
    std::panic::set_hook(previous);
    assert!(result.is_err());
    assert_eq!(*location.lock().unwrap(), Some(body_line));
}

#[test]
fn verify_reports_every_handler_that_cannot_run() {
    let root = milieu::scope()
        .with(Db("orders"))
        .run(milieu::Context::current);
    let report = milieu::verify(
        &root,
        &[
            NEEDS_THREE_REQUIREMENTS,
            PANICS_WITHOUT_DB_REQUIREMENTS,
            INJECTED_REQUIREMENTS,
        ],
    )
    .expect_err("Clock and Logger are missing");
    let failing: Vec<_> = report
        .failures()
        .iter()
        .map(|(r, _)| r.function())
        .collect();
    assert_eq!(failing.len(), 2, "{failing:?}");
    assert!(failing[0].ends_with("needs_three") && failing[1].ends_with("injected"));
    assert_eq!(
        report.failures()[0].1,
        [
            std::any::type_name::<Clock>(),
            std::any::type_name::<Logger>()
        ]
    );
    let text = report.to_string();
    assert!(
        text.contains("2 of 3 declared function(s) cannot run"),
        "{text}"
    );
    assert!(
        text.contains(&format!("declared at {}:{DECLARED_LINE}", file!())),
        "{text}"
    );

    let full = milieu::scope()
        .with(Db("orders"))
        .with(Clock(1))
        .with(Logger)
        .run(milieu::Context::current);
    assert!(milieu::verify(&full, &[NEEDS_THREE_REQUIREMENTS, INJECTED_REQUIREMENTS]).is_ok());
}
