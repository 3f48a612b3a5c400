//! What both roles do alike: listen on the public and the admin address
//! on every reactor thread, say where on stdout, count the requests in
//! flight, and stop gracefully on SIGINT or SIGTERM.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use milieu::http::HttpProtocol;
use milieu::reactor::{self, run_on_threads, Cores, Listener, Reactor, Serve, SharedPort};
use milieu::{Context, Missing};

use crate::args::Args;

/// How long a graceful stop waits for the requests in flight.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// The requests being handled now, on every thread: a context entry of
/// both roles, so that a graceful stop can wait for 0.
#[derive(Debug, Default)]
pub struct InFlightRequests(AtomicUsize);

impl InFlightRequests {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Counts one request as in flight while it lives.
#[derive(Debug)]
pub struct InFlight(Arc<InFlightRequests>);

impl InFlight {
    /// Counts the current request (the counter is a context entry).
    pub fn enter() -> Result<InFlight, Missing> {
        let requests = milieu::get::<InFlightRequests>()?;
        requests.0.fetch_add(1, Ordering::SeqCst);
        Ok(InFlight(requests))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A role's listeners, public and admin, on every reactor thread.
#[derive(Debug)]
pub struct Listening {
    /// The public listener's address.
    pub addr: SocketAddr,
    listeners: Arc<Mutex<Vec<Listener>>>,
    cores: Cores,
}

impl Listening {
    /// Binds the public address and (with `--admin-addr`) the admin one,
    /// starts `--threads` reactor threads in `root`, each serving both,
    /// and prints `listening on ADDR`, then `admin listening on ADDR`:
    /// tests and scripts read the addresses from these lines.
    ///
    /// `public` and `admin` are made once and cloned into every thread,
    /// so the threads share one budget of connections and buffered input
    /// (`HttpLimits`), not one each.
    pub fn start(
        args: &Args,
        root: &Context,
        public: Serve<HttpProtocol>,
        admin: Serve<HttpProtocol>,
    ) -> Result<Listening, Box<dyn Error>> {
        let port = SharedPort::bind(args.addr.as_str())
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        let addr = port.local_addr();
        let admin_port = match &args.admin_addr {
            Some(admin) => Some(
                SharedPort::bind(admin.as_str())
                    .map_err(|e| format!("cannot listen on {admin} (--admin-addr): {e}"))?,
            ),
            None => None,
        };
        let admin_addr = admin_port.as_ref().map(SharedPort::local_addr);
        let listeners: Arc<Mutex<Vec<Listener>>> = Arc::default();
        let keep = Arc::clone(&listeners);
        let cores = root.run(|| {
            run_on_threads(args.threads, move |reactor| {
                let public = public.clone();
                let listener = reactor.listen_shared(&port, move || public.clone())?;
                let mut kept = keep.lock().unwrap_or_else(PoisonError::into_inner);
                kept.push(listener);
                if let Some(admin_port) = &admin_port {
                    let admin = admin.clone();
                    kept.push(reactor.listen_shared(admin_port, move || admin.clone())?);
                }
                Ok(())
            })
        })?;
        println!("listening on {addr}");
        if let Some(admin_addr) = admin_addr {
            println!("admin listening on {admin_addr}");
            if !admin_addr.ip().is_loopback() {
                tracing::warn!(
                    target: "orders",
                    %admin_addr,
                    "the admin listener is not on a loopback address: anyone who can reach it \
                     sees the debug views (source locations, peer addresses, service figures)"
                );
            }
        }
        Ok(Listening {
            addr,
            listeners,
            cores,
        })
    }

    /// The first steps of a graceful stop: the reactor threads drain
    /// ([`Cores::drain`]: no new connections, on either listener; every
    /// request received is answered, also those read and not yet handled;
    /// then each connection closes), for 10 s at most, while
    /// `main_reactor` goes on ticking (orders delivers its outbox there);
    /// then the reactor threads stop.
    pub fn stop(
        self,
        main_reactor: &mut Reactor,
        in_flight: &InFlightRequests,
    ) -> Result<(), Box<dyn Error>> {
        tracing::info!(
            target: "orders",
            in_flight = in_flight.count(),
            "draining: answering the requests received, then closing"
        );
        let listeners = std::mem::take(
            &mut *self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for listener in listeners {
            listener.close();
        }
        self.cores.drain();
        let deadline = Instant::now() + DRAIN_DEADLINE;
        while !self.cores.is_finished() && Instant::now() < deadline {
            main_reactor.tick(Some(Duration::from_millis(10)))?;
        }
        self.cores.stop();
        self.cores.join()?;
        Ok(())
    }
}

/// Stops the main reactor on SIGINT or SIGTERM.
#[derive(Debug)]
pub struct StopOnSignal {
    signals: signal_hook::iterator::Handle,
    waiter: JoinHandle<()>,
}

impl StopOnSignal {
    /// Watches for the signals from now on, on a thread of its own.
    pub fn watch(main_reactor: reactor::Handle) -> std::io::Result<StopOnSignal> {
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])?;
        let handle = signals.handle();
        let waiter = std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(target: "orders", signal, "shutting down");
                main_reactor.stop();
            }
        });
        Ok(StopOnSignal {
            signals: handle,
            waiter,
        })
    }

    /// Stops watching, once the shutdown is over: until then a second
    /// signal does not interrupt it.
    pub fn finish(self) {
        self.signals.close();
        let _ = self.waiter.join();
    }
}
