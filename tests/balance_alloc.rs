// A binary of its own: its counting `#[global_allocator]` serves the whole process.
//! What an endpoint costs in memory: a balancer holding thousands of them
//! keeps at most 2 KB live per endpoint (its breaker, its load, its
//! place in the ready cache and in the view), whatever the machine's CPU
//! count: an endpoint's breaker counts in a single stripe, makes its
//! event and state channels only when someone subscribes, shares its
//! configuration with the other endpoints' breakers, and its slot's lease
//! counts unpadded. (Measured 1,899 B, 1,977 B with `metrics`; 2,251 B and
//! 2,328 B before the last three; 7,835 B before any, on 2 CPUs, where
//! per-CPU stripes cost least.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll, Waker};

use meshguard::balance::{BalanceConfig, balance_with_view};
use meshguard::classify::ErrorsAreFailures;
use meshguard::discovery::{Endpoint, StaticDiscovery};
use tower::Service;

struct Counting;

std::thread_local! {
    // Per thread, so tests running in parallel do not count each other's.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|n| n.set(n.get() + layout.size() as isize));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|n| n.set(n.get() - layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Endpoints in the fleet measured.
const FLEET: usize = 5_000;

/// The most an endpoint may keep live, in bytes.
const PER_ENDPOINT: isize = 2048;

type Svc = tower::util::ServiceFn<fn(()) -> Ready<Result<(), Infallible>>>;

fn connect(_: &Endpoint) -> Svc {
    tower::service_fn(|()| ready(Ok(())))
}

fn fleet() -> StaticDiscovery {
    StaticDiscovery::new(
        (0..FLEET)
            .map(|i| {
                let url = format!("http://10.{}.{}.{}:8080", i >> 16, (i >> 8) & 255, i & 255);
                Endpoint::from_url(&url).unwrap()
            })
            .collect(),
    )
}

#[test]
fn an_endpoint_keeps_at_most_2_kb_live_whatever_the_cpu_count() {
    let discovery = fleet();
    let before = live();
    let (mut lb, view) = balance_with_view::<_, _, _, _, ()>(
        "fleet",
        discovery,
        connect as fn(&Endpoint) -> Svc,
        ErrorsAreFailures,
        BalanceConfig::default(),
    );
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(lb.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    assert_eq!(lb.len(), FLEET);
    assert_eq!(view.endpoints().len(), FLEET);
    let per_endpoint = (live() - before) / FLEET as isize;
    eprintln!("{per_endpoint} B live per endpoint");
    assert!(
        per_endpoint <= PER_ENDPOINT,
        "{per_endpoint} B live per endpoint"
    );
}
