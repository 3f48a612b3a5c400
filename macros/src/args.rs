//! Parsing the attribute's arguments: `#[requires(Db, Clock, on_missing = panic)]`.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Ident, Token, Type};

/// What the attribute says.
pub(crate) struct Args {
    /// The listed types, in order, without duplicates.
    pub(crate) types: Vec<Type>,
    pub(crate) on_missing: Option<OnMissing>,
    /// Whether to emit the `NAME_REQUIREMENTS` constant; `None` = decide
    /// from the function's shape.
    pub(crate) expose: Option<(bool, proc_macro2::Span)>,
}

/// What happens when a requirement is not met on entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnMissing {
    /// Panic with the report.
    Panic,
    /// `return Err(From::from(missing))`.
    Error,
}

enum Arg {
    Type(Box<Type>),
    OnMissing(OnMissing),
    Expose(syn::LitBool),
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Ident) && input.peek2(Token![=]) {
            let name: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            return match name.to_string().as_str() {
                "on_missing" => {
                    let value: Ident = input.parse()?;
                    match value.to_string().as_str() {
                        "panic" => Ok(Arg::OnMissing(OnMissing::Panic)),
                        "error" => Ok(Arg::OnMissing(OnMissing::Error)),
                        _ => Err(syn::Error::new(
                            value.span(),
                            "`on_missing` is `panic` or `error`",
                        )),
                    }
                }
                "expose" => Ok(Arg::Expose(input.parse()?)),
                other => Err(syn::Error::new(
                    name.span(),
                    format!(
                        "unknown option `{other}`: `#[requires]` takes types, then \
                         `on_missing = panic | error` and `expose = true | false`"
                    ),
                )),
            };
        }
        let fork = input.fork();
        match fork.parse::<Type>() {
            Ok(_) => Ok(Arg::Type(Box::new(input.parse()?))),
            Err(_) => Err(input.error(
                "expected a type: context entries are keyed by type, e.g. `#[requires(Db, Clock)]`",
            )),
        }
    }
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Args> {
    let list = Punctuated::<Arg, Token![,]>::parse_terminated.parse2(tokens)?;
    let mut args = Args {
        types: Vec::new(),
        on_missing: None,
        expose: None,
    };
    let mut seen: Vec<String> = Vec::new();
    for arg in list {
        match arg {
            Arg::Type(ty) => {
                let key = type_key(&ty);
                if seen.contains(&key) {
                    return Err(syn::Error::new_spanned(
                        &ty,
                        format!("`{key}` is listed twice in `#[requires]`"),
                    ));
                }
                seen.push(key);
                args.types.push(*ty);
            }
            Arg::OnMissing(mode) => args.on_missing = Some(mode),
            Arg::Expose(lit) => args.expose = Some((lit.value, lit.span)),
        }
    }
    Ok(args)
}

/// A type's tokens as one comparable string (`Db`, `db::Pool<T>`).
pub(crate) fn type_key(ty: &Type) -> String {
    quote::quote!(#ty).to_string().replace(' ', "")
}
