//! Parsing and validating the annotated function into a [`Plan`].

use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::args::{type_key, Args, OnMissing};

/// Everything `expand` needs, already validated.
pub(crate) struct Plan {
    /// The function with its `#[ctx]` parameters removed.
    pub(crate) func: ItemFn,
    /// Listed types that are not injected: only checked for presence.
    pub(crate) checked: Vec<Type>,
    /// Injected parameters, in declaration order.
    pub(crate) injected: Vec<Injected>,
    /// Every required type (listed first, then injected), for the report,
    /// the docs and the requirements constant.
    pub(crate) all: Vec<Type>,
    pub(crate) on_missing: OnMissing,
    /// Emit the `NAME_REQUIREMENTS` constant.
    pub(crate) expose: bool,
    /// Run the body in a closure under a `#[track_caller]` entry, so the
    /// report names the caller while panics in the body keep their lines.
    pub(crate) caller_site: bool,
}

/// A `#[ctx]` parameter.
pub(crate) struct Injected {
    pub(crate) name: Ident,
    pub(crate) mutability: Option<syn::Token![mut]>,
    /// The type as written (`Arc<Db>` or `&Db`).
    pub(crate) written: Type,
    /// The context key (`Db`).
    pub(crate) key: Type,
    pub(crate) borrowed: bool,
}

pub(crate) fn plan(args: Args, mut func: ItemFn) -> syn::Result<Plan> {
    if let Some(constness) = &func.sig.constness {
        return Err(syn::Error::new(
            constness.span(),
            "`#[requires]` cannot apply to a `const fn`: the context exists only at run time",
        ));
    }
    let injected = take_injected(&mut func)?;

    let mut all = args.types.clone();
    let mut checked = Vec::new();
    for ty in &args.types {
        let key = type_key(ty);
        if !injected.iter().any(|i| type_key(&i.key) == key) {
            checked.push(ty.clone());
        }
    }
    for inj in &injected {
        let key = type_key(&inj.key);
        if !all.iter().any(|t| type_key(t) == key) {
            all.push(inj.key.clone());
        }
    }

    let returns_result = returns_result(&func.sig.output);
    let on_missing = match args.on_missing {
        Some(OnMissing::Error) if !returns_result => {
            return Err(syn::Error::new_spanned(
                &func.sig.output,
                "`on_missing = error` needs a `Result<_, E>` return type with \
                 `E: From<milieu::Missing>`",
            ))
        }
        Some(mode) => mode,
        None if returns_result => OnMissing::Error,
        None => OnMissing::Panic,
    };

    let has_receiver = func.sig.receiver().is_some();
    let generic = func
        .sig
        .generics
        .params
        .iter()
        .any(|p| !matches!(p, syn::GenericParam::Lifetime(_)));
    // The constant sits next to the function: at module level, or in an
    // impl block. A trait impl cannot take extra items, so methods (a
    // receiver, or `Self` in the signature) opt in with `expose = true`.
    let expose = match args.expose {
        Some((true, span)) if generic => {
            return Err(syn::Error::new(
                span,
                "`expose = true` needs a non-generic function: the requirements constant \
                 cannot name the function's type parameters",
            ))
        }
        Some((expose, _)) => expose,
        None => !generic && !has_receiver && !mentions_self(&func.sig),
    };

    let caller_site = func.sig.asyncness.is_none()
        && func.sig.abi.is_none()
        && func.sig.variadic.is_none()
        && closure_can_return(&func.sig.output);

    Ok(Plan {
        func,
        checked,
        injected,
        all,
        on_missing,
        expose,
        caller_site,
    })
}

/// Removes the `#[ctx]` parameters from the signature, validating each.
fn take_injected(func: &mut ItemFn) -> syn::Result<Vec<Injected>> {
    let mut injected = Vec::new();
    let mut kept = syn::punctuated::Punctuated::new();
    for arg in std::mem::take(&mut func.sig.inputs) {
        let FnArg::Typed(mut typed) = arg else {
            kept.push(arg);
            continue;
        };
        let Some(at) = typed.attrs.iter().position(|a| a.path().is_ident("ctx")) else {
            kept.push(FnArg::Typed(typed));
            continue;
        };
        let attr = typed.attrs.remove(at);
        if !matches!(attr.meta, syn::Meta::Path(_)) {
            return Err(syn::Error::new_spanned(attr, "`#[ctx]` takes no arguments"));
        }
        let (name, mutability) =
            match &*typed.pat {
                Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                    (p.ident.clone(), p.mutability)
                }
                other => return Err(syn::Error::new_spanned(
                    other,
                    "`#[ctx]` needs a plain parameter name (`#[ctx] db: Arc<Db>`), not a pattern",
                )),
            };
        let (key, borrowed) = injected_key(&typed.ty)?;
        injected.push(Injected {
            name,
            mutability,
            written: (*typed.ty).clone(),
            key,
            borrowed,
        });
    }
    func.sig.inputs = kept;
    Ok(injected)
}

/// `Arc<T>` -> (`T`, owned); `&T` -> (`T`, borrowed); anything else is an error.
fn injected_key(ty: &Type) -> syn::Result<(Type, bool)> {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => Ok(((*r.elem).clone(), true)),
        Type::Reference(r) => Err(syn::Error::new_spanned(
            r,
            "`#[ctx]` values are shared: take `&T` or `Arc<T>`, not `&mut T`",
        )),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last();
            if let Some(seg) = last.filter(|s| s.ident == "Arc") {
                if let PathArguments::AngleBracketed(a) = &seg.arguments {
                    if let [GenericArgument::Type(inner)] = a.args.iter().collect::<Vec<_>>()[..] {
                        return Ok((inner.clone(), false));
                    }
                }
            }
            Err(not_shared(ty))
        }
        _ => Err(not_shared(ty)),
    }
}

fn not_shared(ty: &Type) -> syn::Error {
    syn::Error::new_spanned(
        ty,
        format!(
            "`#[ctx]` parameters are `Arc<T>` (owned) or `&T` (borrowed): the context holds \
             shared values; write `Arc<{0}>` or `&{0}`",
            quote::quote!(#ty)
        ),
    )
}

fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

/// Whether `move || -> R { body }` can stand for the body: not when `R`
/// holds `impl Trait` (not allowed there) or an elided lifetime (`&T`,
/// `'_`: closures elide differently from functions). Named lifetimes,
/// `'static` included, are fine.
fn closure_can_return(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return true;
    };
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            match &r.lifetime {
                Some(lifetime) => self.visit_lifetime(lifetime),
                None => self.0 = true,
            }
            self.visit_type(&r.elem);
        }
        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if lifetime.ident == "_" {
                self.0 = true;
            }
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    !finder.0
}

fn mentions_self(sig: &syn::Signature) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_ident(&mut self, ident: &'ast Ident) {
            if ident == "Self" {
                self.0 = true;
            }
        }
    }
    let mut finder = Finder(false);
    finder.visit_signature(sig);
    finder.0
}
