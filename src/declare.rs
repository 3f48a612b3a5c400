//! Declared context: what `#[requires]` functions need, checked on entry,
//! documented by rustdoc and verifiable at start-up.
//!
//! The attribute itself lives in the `milieu-macros` crate; this module is
//! the run-time half it expands to.

use std::any::TypeId;
use std::borrow::Cow;
use std::fmt;

use crate::context::{contains_id, Context, Declared, Dump, Missing, Site};

/// One type a function requires from the context.
///
/// Built by `#[requires]`; [`Requirement::of`] builds one by hand.
#[derive(Clone, Copy)]
pub struct Requirement {
    type_name: fn() -> &'static str,
    type_id: fn() -> TypeId,
}

impl Requirement {
    /// The requirement of a `T` in the context.
    pub fn of<T: ?Sized + 'static>() -> Requirement {
        Requirement {
            type_name: std::any::type_name::<T>,
            type_id: TypeId::of::<T>,
        }
    }

    /// For the macro: usable in `const` and `static` items, where
    /// `TypeId::of` cannot be called yet but can be named.
    #[doc(hidden)]
    pub const fn from_fns(type_name: fn() -> &'static str, type_id: fn() -> TypeId) -> Self {
        Requirement { type_name, type_id }
    }

    /// The required type's name.
    pub fn type_name(&self) -> &'static str {
        (self.type_name)()
    }

    /// The required type's id.
    pub fn type_id(&self) -> TypeId {
        (self.type_id)()
    }
}

impl fmt::Debug for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Requirement({})", self.type_name())
    }
}

/// Everything one annotated function requires, with where it says so.
///
/// `#[requires]` on a free, non-generic function `handle` emits, next to
/// it and with its visibility, the constant `HANDLE_REQUIREMENTS` of this
/// type. On a method (a `self` receiver, or `Self` in the signature) it
/// emits nothing unless asked with `#[requires(..., expose = true)]`, which
/// adds `HANDLE_REQUIREMENTS` as an associated constant of the impl block
/// (not possible in a trait impl, which takes no extra items). A generic
/// function gets none: the constant could not name its type parameters.
/// Pass them to [`verify`] at start-up.
#[derive(Clone, Copy, Debug)]
pub struct Requirements {
    function: &'static str,
    site: Site,
    types: &'static [Requirement],
}

impl Requirements {
    /// For the macro.
    #[doc(hidden)]
    pub const fn new(
        function: &'static str,
        file: &'static str,
        line: u32,
        column: u32,
        types: &'static [Requirement],
    ) -> Self {
        Requirements {
            function,
            site: Site { file, line, column },
            types,
        }
    }

    /// The annotated function, with its module path.
    pub fn function(&self) -> &'static str {
        self.function
    }

    /// Where the requirement is declared.
    pub fn site(&self) -> Site {
        self.site
    }

    /// The required types.
    pub fn types(&self) -> &'static [Requirement] {
        self.types
    }

    /// The required types missing from `ctx`.
    pub fn missing_in(&self, ctx: &Context) -> Vec<&'static str> {
        self.types
            .iter()
            .filter(|r| !ctx.contains_id(r.type_id()))
            .map(Requirement::type_name)
            .collect()
    }
}

/// Checks at start-up that `ctx` satisfies every declared requirement,
/// before a service starts serving.
///
/// # Errors
///
/// A [`VerifyReport`] naming each function that could not run in `ctx`,
/// what it misses, where it declared it, and what `ctx` does hold.
///
/// # Examples
///
/// ```
/// use milieu::{Requirement, Requirements};
/// struct Db;
/// struct Clock;
///
/// static HANDLER: Requirements = Requirements::new(
///     "orders::handle", file!(), line!(), column!(),
///     &[Requirement::from_fns(std::any::type_name::<Db>, std::any::TypeId::of::<Db>),
///       Requirement::from_fns(std::any::type_name::<Clock>, std::any::TypeId::of::<Clock>)],
/// );
///
/// let root = milieu::scope().with(Db).run(milieu::Context::current);
/// let report = milieu::verify(&root, &[HANDLER]).unwrap_err();
/// assert!(report.to_string().contains("orders::handle"));
/// assert_eq!(report.failures()[0].1, vec![std::any::type_name::<Clock>()]);
/// ```
pub fn verify(ctx: &Context, functions: &[Requirements]) -> Result<(), VerifyReport> {
    let failures: Vec<_> = functions
        .iter()
        .filter_map(|r| {
            let missing = r.missing_in(ctx);
            (!missing.is_empty()).then_some((*r, missing))
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(VerifyReport {
            checked: functions.len(),
            failures,
            present: ctx.dump(),
        })
    }
}

/// What [`verify`] found missing.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    checked: usize,
    failures: Vec<(Requirements, Vec<&'static str>)>,
    present: Dump,
}

impl VerifyReport {
    /// Each function that cannot run, with the types it misses.
    pub fn failures(&self) -> &[(Requirements, Vec<&'static str>)] {
        &self.failures
    }

    /// What the verified context holds.
    pub fn present(&self) -> &Dump {
        &self.present
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "milieu: {} of {} declared function(s) cannot run in this context:",
            self.failures.len(),
            self.checked
        )?;
        for (req, missing) in &self.failures {
            let list = missing
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                f,
                "  `{}` (declared at {}) needs {list}",
                req.function, req.site
            )?;
        }
        write!(f, "  present: ")?;
        for (i, line) in self.present.to_string().lines().enumerate() {
            if i > 0 {
                write!(f, "\n  ")?;
            }
            write!(f, "{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for VerifyReport {}

/// One route of a service, for [`verify_routes`]: a name to report it
/// by (`GET /orders`) and the declared requirements of the functions a
/// request to it runs (the handler's `NAME_REQUIREMENTS` constant and
/// those of what it calls, as far as they are known).
///
/// # Examples
///
/// ```
/// # use milieu::{Requirement, Requirements};
/// # struct Db;
/// # static LIST_ORDERS_REQUIREMENTS: Requirements = Requirements::new(
/// #     "orders::list_orders", file!(), line!(), column!(),
/// #     &[Requirement::from_fns(std::any::type_name::<Db>, std::any::TypeId::of::<Db>)]);
/// let route = milieu::Route::new("GET /orders").runs(LIST_ORDERS_REQUIREMENTS);
/// assert_eq!(route.name(), "GET /orders");
/// ```
#[derive(Clone, Debug)]
pub struct Route {
    name: Cow<'static, str>,
    functions: Vec<Requirements>,
}

impl Route {
    /// A route named `name`, with no requirements yet.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Route {
        Route {
            name: name.into(),
            functions: Vec::new(),
        }
    }

    /// A request to this route runs a function declaring `requirements`.
    pub fn runs(mut self, requirements: Requirements) -> Route {
        self.functions.push(requirements);
        self
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The requirements of the functions it runs.
    pub fn functions(&self) -> &[Requirements] {
        &self.functions
    }
}

/// Checks at start-up, route by route, that a request's context will hold
/// what each route's functions declare: the service's `root` context plus
/// the types the server installs for every request (`per_request`, from
/// [`http::Server::installs`](crate::http) or
/// `milieu::tower::ContextLayer::installs`).
///
/// [`verify`] can only check one context; a handler that needs the
/// request's own entries (its `RequestInfo`, its trace) would always fail
/// there, and a check of the root context alone cannot say which routes
/// would fail. This one answers per route, before the first request.
///
/// # Errors
///
/// A [`RoutesReport`] naming each route that would fail, its function,
/// the missing types, where they were declared, what the root context
/// holds and what every request adds.
///
/// # Examples
///
/// ```
/// use milieu::{Requirement, Requirements, Route};
/// struct Db;
/// struct RequestId;
/// struct Clock;
///
/// static LIST: Requirements = Requirements::new(
///     "orders::list", file!(), line!(), column!(),
///     &[Requirement::from_fns(std::any::type_name::<Db>, std::any::TypeId::of::<Db>),
///       Requirement::from_fns(std::any::type_name::<RequestId>, std::any::TypeId::of::<RequestId>)],
/// );
/// static STATS: Requirements = Requirements::new(
///     "orders::stats", file!(), line!(), column!(),
///     &[Requirement::from_fns(std::any::type_name::<Clock>, std::any::TypeId::of::<Clock>)],
/// );
///
/// let root = milieu::scope().with(Db).run(milieu::Context::current);
/// let per_request = [Requirement::of::<RequestId>()];
/// let routes = [Route::new("GET /orders").runs(LIST), Route::new("GET /stats").runs(STATS)];
/// let report = milieu::verify_routes(&root, &per_request, &routes).unwrap_err();
/// // `GET /orders` has all it needs: `Db` from the root, `RequestId` per request.
/// assert_eq!(report.failures().len(), 1);
/// assert_eq!(report.failures()[0].route, "GET /stats");
/// assert_eq!(report.failures()[0].missing, vec![std::any::type_name::<Clock>()]);
/// ```
pub fn verify_routes(
    root: &Context,
    per_request: &[Requirement],
    routes: &[Route],
) -> Result<(), RoutesReport> {
    let mut failures = Vec::new();
    for route in routes {
        for function in &route.functions {
            let missing: Vec<&'static str> = function
                .types
                .iter()
                .filter(|r| {
                    let id = r.type_id();
                    !root.contains_id(id) && !per_request.iter().any(|p| p.type_id() == id)
                })
                .map(Requirement::type_name)
                .collect();
            if !missing.is_empty() {
                failures.push(RouteFailure {
                    route: route.name.to_string(),
                    function: *function,
                    missing,
                });
            }
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(RoutesReport {
        checked: routes.len(),
        failures,
        per_request: per_request.iter().map(Requirement::type_name).collect(),
        present: Box::new(root.dump()),
    })
}

/// One function of one route that [`verify_routes`] found lacking.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RouteFailure {
    /// The route's name.
    pub route: String,
    /// The function's declaration.
    pub function: Requirements,
    /// The types neither the root context nor the server provides.
    pub missing: Vec<&'static str>,
}

/// What [`verify_routes`] found missing, route by route.
#[derive(Clone, Debug)]
pub struct RoutesReport {
    checked: usize,
    failures: Vec<RouteFailure>,
    per_request: Vec<&'static str>,
    // Boxed: the report is an `Err` that start-up code moves around.
    present: Box<Dump>,
}

impl RoutesReport {
    /// Each route's function that would fail, with what it misses, in the
    /// order of the routes.
    pub fn failures(&self) -> &[RouteFailure] {
        &self.failures
    }

    /// The routes that would fail, each once.
    pub fn routes(&self) -> Vec<&str> {
        let mut routes: Vec<&str> = Vec::new();
        for failure in &self.failures {
            if routes.last() != Some(&failure.route.as_str()) {
                routes.push(&failure.route);
            }
        }
        routes
    }

    /// What the root context holds.
    pub fn present(&self) -> &Dump {
        &self.present
    }
}

impl fmt::Display for RoutesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "milieu: {} of {} route(s) would fail for want of context:",
            self.routes().len(),
            self.checked
        )?;
        for failure in &self.failures {
            let list = failure
                .missing
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                f,
                "  {}: `{}` (declared at {}) needs {list}",
                failure.route, failure.function.function, failure.function.site
            )?;
        }
        let per_request = self
            .per_request
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if per_request.is_empty() {
            writeln!(f, "  installed per request: nothing")?;
        } else {
            writeln!(f, "  installed per request: {per_request}")?;
        }
        write!(f, "  root context: ")?;
        for (i, line) in self.present.to_string().lines().enumerate() {
            if i > 0 {
                write!(f, "\n  ")?;
            }
            write!(f, "{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RoutesReport {}

/// What the `#[requires]` expansion calls. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub use std::any::{type_name, TypeId};
    pub use std::panic::Location;
    pub use std::sync::Arc;

    /// Whether every listed type is visible now.
    #[inline]
    pub fn all_present(types: &[Requirement]) -> bool {
        types.iter().all(|r| contains_id(r.type_id()))
    }

    /// The one report for everything `types` misses right now.
    #[cold]
    pub fn missing(
        function: &'static str,
        declared: (&'static str, u32, u32),
        types: &[Requirement],
        call_site: Option<&'static Location<'static>>,
    ) -> Missing {
        let missing: Vec<_> = types
            .iter()
            .filter(|r| !contains_id(r.type_id()))
            .map(Requirement::type_name)
            .collect();
        let (file, line, column) = declared;
        let declared = Declared {
            function,
            site: Site { file, line, column },
        };
        Missing::for_requirement(missing, declared, call_site)
    }

    /// The panic path for functions that do not return a `Result`.
    #[cold]
    #[track_caller]
    pub fn fail(missing: Missing) -> ! {
        panic!("{missing}")
    }
}
