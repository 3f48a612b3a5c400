//! `#[derive(Baggage)]` from a user crate: a plain newtype, a generic one
//! with its own bounds, and the key checked against the carried list.

use milieu::remote::{Baggage, Propagation};

#[derive(Baggage)]
#[baggage(key = "tenant")]
struct Tenant(String);

#[derive(Baggage)]
#[baggage(key = "x-limit")]
struct Limit<T>(T)
where
    T: Copy + Send + Sync + 'static;

fn main() {
    let propagation = Propagation::new().carry::<Tenant>().carry::<Limit<u32>>();
    assert!(propagation.carries::<Limit<u32>>());
    let mut text = String::new();
    Limit(7u32).encode(&mut text);
    assert_eq!(text, "7");
    assert_eq!(Tenant::decode("acme").ok().map(|t| t.0), Some("acme".to_owned()));
    assert_eq!(<Limit<u8>>::KEY, "x-limit");
}
