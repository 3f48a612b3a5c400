//! Routing by table, for every listener of both roles: a [`Resource`] per
//! path lists the handler of each method, and the same table gives the
//! `Allow` header of every 405, so the two cannot disagree.

use milieu::http::Response;

/// How a [`Resource`] matches a path.
#[derive(Debug)]
pub enum PathPattern {
    /// This path only.
    Exact(&'static str),
    /// Every path that starts with this (the rest is the handler's to
    /// read, e.g. the id in `/orders/{id}`).
    Prefix(&'static str),
}

impl PathPattern {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => path == *exact,
            PathPattern::Prefix(prefix) => path.starts_with(prefix),
        }
    }
}

/// A path and the handler of each method it supports (`H`: the role's
/// enum of handlers).
///
/// `HEAD` is never listed: wherever `GET` is, `HEAD` runs the `GET`
/// handler (RFC 9110 §9.1: a server MUST support `HEAD`), and the
/// protocol sends the response's header fields, `Content-Length`
/// included, without its body.
#[derive(Debug)]
pub struct Resource<H: 'static> {
    pub path: PathPattern,
    pub methods: &'static [(&'static str, H)],
}

impl<H: 'static> Resource<H> {
    /// The value of `Allow`: the listed methods, with `HEAD` after `GET`.
    fn allow(&self) -> String {
        let mut methods = Vec::new();
        for &(method, _) in self.methods {
            methods.push(method);
            if method == "GET" {
                methods.push("HEAD");
            }
        }
        methods.join(", ")
    }
}

/// The methods HTTP defines (RFC 9110 §9 and `PATCH`, RFC 5789). Any other
/// method gets 501: this server implements it for no resource (RFC 9110
/// §15.6.2). Methods are case-sensitive, so `get` is not `GET`.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// What to do with a request, decided from borrowed method and path
/// before the request moves into its handler.
#[derive(Debug)]
pub enum Route<H> {
    /// Path and method matched (`HEAD` matches `GET`).
    Handle(H),
    /// The path exists, not with this method: 405 with `Allow`.
    MethodNotAllowed {
        allow: String,
    },
    /// A method this server implements nowhere: 501.
    UnknownMethod,
    NotFound,
}

impl<H: Copy + 'static> Route<H> {
    /// Finds the route of `method` and `path` in `resources`.
    pub fn of<'r>(
        resources: impl IntoIterator<Item = &'r Resource<H>>,
        method: &str,
        path: &str,
    ) -> Route<H> {
        if !KNOWN_METHODS.contains(&method) {
            return Route::UnknownMethod;
        }
        let Some(resource) = resources.into_iter().find(|r| r.path.matches(path)) else {
            return Route::NotFound;
        };
        let wanted = if method == "HEAD" { "GET" } else { method };
        match resource.methods.iter().find(|(m, _)| *m == wanted) {
            Some(&(_, handler)) => Route::Handle(handler),
            None => Route::MethodNotAllowed {
                allow: resource.allow(),
            },
        }
    }

    /// The handler to run, or the response that refuses the request: 405
    /// with `Allow`, 501 or 404.
    pub fn handler(self) -> Result<H, Response> {
        match self {
            Route::Handle(handler) => Ok(handler),
            Route::MethodNotAllowed { allow } => {
                Err(json_error(405, "method not allowed").with_header("allow", allow))
            }
            Route::UnknownMethod => Err(json_error(501, "method not implemented")),
            Route::NotFound => Err(json_error(404, "no such route")),
        }
    }
}

/// A JSON error response: `{"error": message}`.
pub fn json_error(status: u16, message: &str) -> Response {
    Response::json(status, &serde_json::json!({ "error": message }))
}
