//! Procedural macros for [`milieu`](https://docs.rs/milieu): declared
//! context, and the types that cross processes.
//!
//! This crate is an implementation detail of `milieu`; depend on `milieu`
//! and use `#[milieu::requires]` and `#[derive(milieu::remote::Baggage)]`.
//! The pipeline of `#[requires]` follows thiserror and
//! tracing-attributes: `args` parses the attribute, `plan` parses and
//! validates the function into a plan, `expand` writes the code. On any
//! mistake the output is the `compile_error!` plus the untouched function,
//! so the user sees one error, not a cascade.

#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

use proc_macro::TokenStream;

mod args;
mod baggage;
mod expand;
mod plan;

/// Declares the context a function needs.
///
/// `#[requires(A, B, ...)]` lists types the function needs in the context;
/// `#[ctx] name: Arc<T>` and `#[ctx] name: &T` parameters are injected
/// from the context (and count as requirements). On entry every
/// requirement is checked; if any is missing, **one** `milieu::Missing`
/// lists them all, with this declaration's site, the call site and a dump
/// of what is present. A function returning `Result<_, E>` with
/// `E: From<milieu::Missing>` returns it; any other function panics with it.
/// An `async fn` is checked when first polled, in the context it runs in.
///
/// Options, after the types:
/// - `on_missing = panic | error`: override the choice above.
/// - `expose = true | false`: whether to emit `NAME_REQUIREMENTS`, a
///   `milieu::Requirements` constant for start-up checks with
///   `milieu::verify`. Default: on for free functions, off for methods
///   (a trait impl cannot take extra items).
///
/// rustdoc shows a "Context" section on the function listing the types.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// struct Db(&'static str);
/// struct Clock;
///
/// #[milieu::requires(Clock)]
/// fn store(item: &str, #[ctx] db: Arc<Db>) -> Result<String, milieu::Missing> {
///     Ok(format!("{item} -> {}", db.0))
/// }
///
/// let _db = milieu::provide(Db("orders"));
/// let missing = store("book").unwrap_err(); // no Clock
/// assert_eq!(missing.type_names(), [std::any::type_name::<Clock>()]);
///
/// let _clock = milieu::provide(Clock);
/// assert_eq!(store("book").unwrap(), "book -> orders");
/// assert_eq!(STORE_REQUIREMENTS.types().len(), 2);
/// ```
#[proc_macro_attribute]
pub fn requires(args: TokenStream, item: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    let result = args::parse(args.into())
        .and_then(|args| plan::plan(args, syn::parse(item)?))
        .map(expand::expand);
    result.unwrap_or_else(|err| fallback(err, original)).into()
}

/// The error, and the function as written (less its `#[ctx]` markers,
/// which mean nothing to rustc) so its other uses still resolve.
fn fallback(err: syn::Error, original: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let error = err.to_compile_error();
    let item = match syn::parse2::<syn::ItemFn>(original.clone()) {
        Ok(mut func) => {
            for arg in &mut func.sig.inputs {
                if let syn::FnArg::Typed(typed) = arg {
                    typed.attrs.retain(|a| !a.path().is_ident("ctx"));
                }
            }
            quote::quote!(#func)
        }
        Err(_) => original,
    };
    quote::quote!(#error #item)
}

/// Derives `milieu::remote::Baggage` for a tuple struct with one field:
/// the value is encoded with the field's `Display` and decoded with its
/// `FromStr` (whose error, prefixed with the key, becomes the
/// `DecodeError`).
///
/// `#[baggage(key = "...")]` names the baggage member; the key must be an
/// RFC 7230 token. Any other shape (named fields, several fields, a unit
/// struct, an enum) is a compile error: implement the trait by hand
/// there. Deriving only makes the type able to cross: a
/// `milieu::remote::Propagation` must also `carry` it.
///
/// # Examples
///
/// ```
/// use milieu::remote::Baggage;
///
/// #[derive(Baggage)]
/// #[baggage(key = "tier")]
/// struct UserTier(u8);
///
/// let mut text = String::new();
/// UserTier(3).encode(&mut text);
/// assert_eq!(text, "3");
/// assert_eq!(UserTier::decode("7").unwrap().0, 7);
/// let err = UserTier::decode("gold").err().unwrap();
/// assert_eq!(err.to_string(), "baggage `tier`: invalid digit found in string");
/// ```
#[proc_macro_derive(Baggage, attributes(baggage))]
pub fn derive_baggage(item: TokenStream) -> TokenStream {
    let result = baggage::parse(item.into()).map(baggage::expand);
    // A derive adds items and leaves the type alone, so the error is the
    // whole output: no cascade follows from a missing impl.
    result.unwrap_or_else(|err| err.to_compile_error()).into()
}
