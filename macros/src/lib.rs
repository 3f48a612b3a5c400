//! Procedural macros for [`milieu`](https://docs.rs/milieu): declared
//! context.
//!
//! This crate is an implementation detail of `milieu`; depend on `milieu`
//! and use `#[milieu::requires]`. The pipeline follows thiserror and
//! tracing-attributes: [`args`] parses the attribute, [`plan`] parses and
//! validates the function into a plan, [`expand`] writes the code. On any
//! mistake the output is the `compile_error!` plus the untouched function,
//! so the user sees one error, not a cascade.

#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

use proc_macro::TokenStream;

mod args;
mod expand;
mod plan;

/// Declares the context a function needs; see `milieu::requires`.
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
