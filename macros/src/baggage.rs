//! `#[derive(Baggage)]`: `parse` reads the item and its
//! `#[baggage(key = "...")]` into a [`Plan`] (validating the shape and
//! the key), `expand` writes the `milieu::remote::Baggage` impl.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Generics, Ident, LitStr, Type};

/// What the derive writes an impl for, validated.
pub(crate) struct Plan {
    ident: Ident,
    generics: Generics,
    /// The type of the one field.
    field: Type,
    key: LitStr,
}

const SHAPE: &str = "`#[derive(Baggage)]` needs a tuple struct with exactly one field, like \
    `struct Tenant(String);`: the value is encoded with the field's `Display` and decoded \
    with its `FromStr`. For any other shape, implement `milieu::remote::Baggage` by hand";

const MISSING_KEY: &str = "`#[derive(Baggage)]` needs the baggage member's key: add \
    `#[baggage(key = \"...\")]`, e.g. `#[baggage(key = \"tenant\")]`";

pub(crate) fn parse(input: TokenStream) -> syn::Result<Plan> {
    let input: DeriveInput = syn::parse2(input)?;
    let field = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => fields.unnamed[0].ty.clone(),
            Fields::Unnamed(fields) => return Err(syn::Error::new(fields.span(), SHAPE)),
            Fields::Named(fields) => return Err(syn::Error::new(fields.span(), SHAPE)),
            Fields::Unit => return Err(syn::Error::new(input.ident.span(), SHAPE)),
        },
        Data::Enum(data) => return Err(syn::Error::new(data.enum_token.span(), SHAPE)),
        Data::Union(data) => return Err(syn::Error::new(data.union_token.span(), SHAPE)),
    };
    let key = key(&input)?;
    Ok(Plan {
        ident: input.ident,
        generics: input.generics,
        field,
        key,
    })
}

/// The key of the one `#[baggage(key = "...")]`, checked to be a token.
fn key(input: &DeriveInput) -> syn::Result<LitStr> {
    let mut key: Option<LitStr> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("baggage")) {
        attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident("key") {
                return Err(meta.error(
                    "unknown option: `#[baggage]` takes only `key = \"...\"`, the baggage member's key",
                ));
            }
            let value: LitStr = meta.value()?.parse()?;
            if key.is_some() {
                return Err(syn::Error::new(value.span(), "the baggage key is given twice"));
            }
            key = Some(value);
            Ok(())
        })?;
    }
    let key = key.ok_or_else(|| syn::Error::new(input.ident.span(), MISSING_KEY))?;
    if !is_token(&key.value()) {
        return Err(syn::Error::new(
            key.span(),
            format!(
                "the baggage key {:?} is not an RFC 7230 token: use one or more of \
                 A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~",
                key.value()
            ),
        ));
    }
    Ok(key)
}

/// `token = 1*tchar` (RFC 7230 §3.2.6); `milieu::remote` checks the same
/// at run time for hand-written impls.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(crate) fn expand(plan: Plan) -> TokenStream {
    let Plan {
        ident,
        generics,
        field,
        key,
    } = plan;
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();
    let mut predicates: Vec<TokenStream> = where_clause
        .map(|w| w.predicates.iter().map(|p| quote!(#p)).collect())
        .unwrap_or_default();
    // Spanned at the field, so a field type without `Display` or `FromStr`
    // is reported there.
    predicates.push(quote_spanned! {field.span()=>
        #field: ::core::fmt::Display + ::core::str::FromStr
    });
    predicates.push(quote_spanned! {field.span()=>
        <#field as ::core::str::FromStr>::Err: ::core::fmt::Display
    });
    quote! {
        impl #impl_generics ::milieu::remote::Baggage for #ident #type_generics
        where
            #(#predicates,)*
        {
            const KEY: &'static str = #key;

            fn encode(&self, out: &mut ::std::string::String) {
                // Writing to a `String` does not fail.
                let _ = ::core::fmt::Write::write_fmt(out, ::core::format_args!("{}", self.0));
            }

            fn decode(
                value: &::core::primitive::str,
            ) -> ::core::result::Result<Self, ::milieu::remote::DecodeError> {
                match <#field as ::core::str::FromStr>::from_str(value) {
                    ::core::result::Result::Ok(field) => ::core::result::Result::Ok(Self(field)),
                    ::core::result::Result::Err(err) => ::core::result::Result::Err(
                        ::milieu::remote::DecodeError::new(::std::format!(
                            "baggage `{}`: {}",
                            #key,
                            err
                        )),
                    ),
                }
            }
        }
    }
}
