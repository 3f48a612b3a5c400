//! Procedural macros for [`milieu`](https://docs.rs/milieu).
//!
//! This crate is an implementation detail of `milieu`; depend on `milieu`
//! and use the macros through its re-exports. The declared-context macros
//! (`#[requires]`, injected `#[ctx]` parameters) land here next.

#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
