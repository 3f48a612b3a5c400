//! Writing the code for a validated [`Plan`].

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ReturnType, Type};

use crate::args::OnMissing;
use crate::plan::{Injected, Plan};

pub(crate) fn expand(plan: Plan) -> TokenStream {
    let Plan {
        func,
        checked,
        injected,
        all,
        on_missing,
        expose,
        caller_site,
    } = plan;
    let syn::ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func;
    let ident = &sig.ident;

    // `line!()` and friends spanned at the attribute: the declaration site.
    let at = Span::call_site();
    let declared = quote_spanned!(at=> (::core::file!(), ::core::line!(), ::core::column!()));
    let function = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#ident)
    ));
    let call_site = if caller_site {
        quote!(::core::option::Option::Some(__milieu_call_site))
    } else {
        quote!(::core::option::Option::None)
    };
    let report = quote! {
        ::milieu::__private::missing(
            #function,
            #declared,
            &[#(::milieu::Requirement::of::<#all>()),*],
            #call_site,
        )
    };
    // Spanned at the return type, so a missing `From<Missing>` points there.
    let fail = match on_missing {
        OnMissing::Error => {
            let span = match &sig.output {
                ReturnType::Type(_, ty) => ty.span(),
                ReturnType::Default => sig.span(),
            };
            quote_spanned!(span=> return ::core::result::Result::Err(::core::convert::From::from(#report)))
        }
        OnMissing::Panic => quote!(::milieu::__private::fail(#report)),
    };

    let check = (!checked.is_empty()).then(|| {
        quote! {
            if !(#(::milieu::contains::<#checked>())&&*) {
                #fail;
            }
        }
    });
    let owned = injected
        .iter()
        .filter(|i| !i.borrowed)
        .map(|i| fetch_owned(i, &fail));
    let borrowed: Vec<&Injected> = injected.iter().filter(|i| i.borrowed).collect();

    let body = if caller_site {
        let output = match &sig.output {
            ReturnType::Type(_, ty) => quote!(#ty),
            ReturnType::Default => quote!(()),
        };
        let params = borrowed.iter().map(|i| {
            let (name, ty) = (&i.name, &i.written);
            quote!(#name: #ty)
        });
        let args = borrowed.iter().map(|i| &i.name);
        let call = quote!(__milieu_body(#(#args),*));
        let run = nest_with(&borrowed, call, &fail);
        quote! {
            let __milieu_call_site = ::milieu::__private::Location::caller();
            #check
            #(#owned)*
            // The body runs in a closure: the function is `#[track_caller]`
            // so the report can name the caller, and the closure is not, so
            // panics inside the body keep their own locations.
            #[allow(unused_mut)]
            let mut __milieu_body = move |#(#params),*| -> #output #block;
            #run
        }
    } else {
        // async fn, or a return type a closure cannot name: the body stays
        // in place, borrowed parameters hold an `Arc` for the call.
        let refs = borrowed.iter().map(|i| {
            let arc = format_ident!("__milieu_arc_{}", i.name);
            let (name, written, key) = (&i.name, &i.written, &i.key);
            quote! {
                let #arc: ::milieu::__private::Arc<#key> = match ::milieu::get::<#key>() {
                    ::core::result::Result::Ok(value) => value,
                    ::core::result::Result::Err(_) => { #fail }
                };
                let #name: #written = &*#arc;
            }
        });
        quote! {
            #check
            #(#owned)*
            #(#refs)*
            #block
        }
    };

    let track_caller = caller_site.then(|| quote!(#[track_caller]));
    let docs = context_docs(&all, &injected, &sig.generics);
    let constant = expose.then(|| requirements_const(vis, ident, &function, &declared, &all));
    quote! {
        #(#attrs)*
        #docs
        #track_caller
        #vis #sig {
            #body
        }
        #constant
    }
}

/// `let db: Arc<Db> = get::<Db>()` or fail.
fn fetch_owned(inj: &Injected, fail: &TokenStream) -> TokenStream {
    let Injected {
        name,
        mutability,
        written,
        key,
        ..
    } = inj;
    quote! {
        let #mutability #name: #written = match ::milieu::get::<#key>() {
            ::core::result::Result::Ok(value) => value,
            ::core::result::Result::Err(_) => { #fail }
        };
    }
}

/// `with(|a: &A| with(|b: &B| call))`, unwrapped or failing.
fn nest_with(borrowed: &[&Injected], call: TokenStream, fail: &TokenStream) -> TokenStream {
    if borrowed.is_empty() {
        return call;
    }
    let mut expr = call;
    for inj in borrowed.iter().rev() {
        let (name, key) = (&inj.name, &inj.key);
        expr = quote!(::milieu::with(|#name: &#key| #expr));
    }
    let mut pattern = quote!(__milieu_value);
    for _ in borrowed {
        pattern = quote!(::core::result::Result::Ok(#pattern));
    }
    quote! {
        match #expr {
            #pattern => __milieu_value,
            #[allow(unreachable_patterns)]
            _ => { #fail }
        }
    }
}

/// The `# Context` section rustdoc shows.
fn context_docs(all: &[Type], injected: &[Injected], generics: &syn::Generics) -> TokenStream {
    let mut lines = vec![
        String::new(),
        "# Context".to_owned(),
        String::new(),
        "Reads from the `milieu` context (checked on entry; if any is missing, one \
         `milieu::Missing` report lists them all):"
            .to_owned(),
        String::new(),
    ];
    for ty in all {
        let shown = quote!(#ty)
            .to_string()
            .replace(" < ", "<")
            .replace(" >", ">")
            .replace(" :: ", "::");
        let link = link_target(ty, generics);
        let item = match link {
            Some(target) => format!("- [`{shown}`]({target})"),
            None => format!("- `{shown}`"),
        };
        let key = crate::args::type_key(ty);
        let how = injected
            .iter()
            .find(|i| crate::args::type_key(&i.key) == key)
            .map(|i| format!(" (injected as `{}`)", i.name))
            .unwrap_or_default();
        lines.push(format!("{item}{how}"));
    }
    let lines = lines.iter().map(|l| quote!(#[doc = #l]));
    quote!(#(#lines)*)
}

/// An intra-doc link target for a plain path type, if it is not a generic
/// parameter of the function (rustdoc cannot link those).
fn link_target(ty: &Type, generics: &syn::Generics) -> Option<String> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() || p.path.segments.iter().any(|s| s.ident == "Self") {
        return None;
    }
    if p.path.segments.len() == 1 {
        let ident = &p.path.segments[0].ident;
        if generics.type_params().any(|t| &t.ident == ident) {
            return None;
        }
    }
    let segments: Vec<String> = p
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let prefix = if p.path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    Some(format!("{prefix}{}", segments.join("::")))
}

/// `pub const HANDLE_REQUIREMENTS: milieu::Requirements = ...;`
fn requirements_const(
    vis: &syn::Visibility,
    ident: &syn::Ident,
    function: &TokenStream,
    declared: &TokenStream,
    all: &[Type],
) -> TokenStream {
    let name = ident.to_string();
    let name = name.trim_start_matches("r#");
    let constant = format_ident!("{}_REQUIREMENTS", name.to_uppercase(), span = ident.span());
    let doc = format!("What `{name}` requires from the context (generated by `#[requires]`).");
    quote! {
        #[doc = #doc]
        #vis const #constant: ::milieu::Requirements = {
            let (file, line, column) = #declared;
            ::milieu::Requirements::new(
                #function,
                file,
                line,
                column,
                &[#(::milieu::Requirement::from_fns(
                    ::milieu::__private::type_name::<#all>,
                    ::milieu::__private::TypeId::of::<#all>,
                )),*],
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn expand(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
        let args = crate::args::parse(args).expect("valid arguments");
        let plan = crate::plan::plan(args, syn::parse2(item).expect("a function")).expect("valid");
        super::expand(plan).to_string()
    }

    #[test]
    fn docs_gain_a_linked_context_section() {
        let out = expand(
            quote!(Clock),
            quote! {
                /// Handles it.
                fn handle(#[ctx] db: &Db) {}
            },
        );
        assert!(out.contains("\" Handles it.\""), "{out}");
        assert!(out.contains("# Context"), "{out}");
        assert!(out.contains("- [`Clock`](Clock)"), "{out}");
        assert!(out.contains("- [`Db`](Db) (injected as `db`)"), "{out}");
    }

    #[test]
    fn generic_parameters_are_not_linked_and_get_no_constant() {
        let out = expand(
            quote!(),
            quote!(
                fn first<T: Send + Sync + 'static>(#[ctx] v: &T) {}
            ),
        );
        assert!(out.contains("- `T` (injected as `v`)"), "{out}");
        assert!(!out.contains("FIRST_REQUIREMENTS"), "{out}");
    }

    #[test]
    fn free_functions_get_a_requirements_constant_and_methods_do_not() {
        let free = expand(
            quote!(Db),
            quote!(
                fn handle() {}
            ),
        );
        assert!(free.contains("const HANDLE_REQUIREMENTS"), "{free}");
        let method = expand(
            quote!(Db),
            quote!(
                fn handle(&self) {}
            ),
        );
        assert!(!method.contains("HANDLE_REQUIREMENTS"), "{method}");
        let opted_in = expand(
            quote!(Db, expose = true),
            quote!(
                fn handle(&self) {}
            ),
        );
        assert!(opted_in.contains("const HANDLE_REQUIREMENTS"), "{opted_in}");
    }
}
