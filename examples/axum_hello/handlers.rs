//! The handlers of examples/axum_hello: the same bytes with and without a
//! use of the request's context. Also used by benches/tower_layer.rs.

use milieu::tower::RequestInfo;

pub const BODY: &str = "hello from milieu\n";

pub async fn hello() -> &'static str {
    BODY
}

pub async fn hello_in_context() -> &'static str {
    // One lookup, so the layer's entry is used, not only installed.
    let found = milieu::with(|_: &RequestInfo| ()).is_ok();
    assert!(found, "the layer installs the request's RequestInfo");
    BODY
}

pub async fn hello_with_trace() -> &'static str {
    let found = milieu::with(|_: &RequestInfo| ()).is_ok()
        && milieu::with(|_: &milieu::remote::TraceContext| ()).is_ok();
    assert!(
        found,
        "the layer installs the request's RequestInfo and trace"
    );
    BODY
}
