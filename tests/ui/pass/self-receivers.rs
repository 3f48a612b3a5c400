//! `#[requires]` on methods with every kind of receiver, mixed with
//! injected parameters.

use std::sync::Arc;

struct Db(u32);
struct Clock;

struct Service {
    calls: u32,
}

impl Service {
    #[milieu::requires(Clock)]
    fn by_ref(&self, #[ctx] db: &Db) -> u32 {
        self.calls + db.0
    }

    #[milieu::requires(Clock)]
    fn by_mut(&mut self, #[ctx] db: Arc<Db>) -> u32 {
        self.calls += 1;
        self.calls + db.0
    }

    #[milieu::requires(Db)]
    fn by_value(self) -> u32 {
        self.calls
    }

    #[milieu::requires(Db)]
    fn by_arc(self: Arc<Self>, extra: u32) -> u32 {
        self.calls + extra
    }

    #[milieu::requires(Db, expose = true)]
    fn exposed(&self) -> u32 {
        self.calls
    }

    // An associated function without a receiver gets its constant too.
    #[milieu::requires(Db)]
    fn constructor(#[ctx] db: &Db) -> Service {
        Service { calls: db.0 }
    }
}

trait Handler {
    fn handle(&self) -> u32;
}

impl Handler for Service {
    // In a trait impl no constant is emitted (a trait impl takes no extra items).
    #[milieu::requires(Db)]
    fn handle(&self) -> u32 {
        self.calls
    }
}

fn main() {
    let _db = milieu::provide(Db(10));
    let _clock = milieu::provide(Clock);
    let mut service = Service { calls: 0 };
    assert_eq!(service.by_ref(), 10);
    assert_eq!(service.by_mut(), 11);
    assert_eq!(service.handle(), 1);
    assert_eq!(service.exposed(), 1);
    assert_eq!(Service::EXPOSED_REQUIREMENTS.types().len(), 1);
    assert_eq!(Service::CONSTRUCTOR_REQUIREMENTS.types().len(), 1);
    assert_eq!(Service::constructor().calls, 10);
    assert_eq!(Arc::new(Service { calls: 2 }).by_arc(3), 5);
    assert_eq!(service.by_value(), 1);
}
