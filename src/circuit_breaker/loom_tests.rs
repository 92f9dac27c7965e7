//! Model checks of the concurrent parts: run with
//! `RUSTFLAGS="--cfg meshguard_loom" cargo test --lib --release loom`.
use loom::sync::Arc;

use super::machine::{Core, Record, Role};
use super::slot::Slot;
use super::word::{CLOSED, HALF_OPEN, OPEN, generation, kind};
use super::{CircuitBreakerConfig, Event, State};
use crate::sync::Ordering::*;

fn setup(config: CircuitBreakerConfig) -> (&'static Slot, Arc<Core>) {
    setup_striped(config, 2)
}

fn setup_striped(config: CircuitBreakerConfig, stripes: usize) -> (&'static Slot, Arc<Core>) {
    let slot: &'static Slot = Box::leak(Box::new(Slot::new(stripes)));
    let core = Arc::new(Core::new("loom", config));
    core.assign(slot);
    (slot, core)
}

fn record(slot: &Slot, core: &Core, g: u32, outcome: Record) {
    if Core::record(slot, g, outcome, false) {
        core.checkpoint(slot, None);
    }
}

#[test]
fn loom_concurrent_records_are_never_lost() {
    // Two owned stripes and the shared one: each thread owns a stripe.
    records_are_never_lost(3);
}

#[test]
fn loom_records_of_an_owner_and_a_sharer_are_never_lost() {
    records_are_never_lost(2);
}

#[test]
fn loom_records_of_threads_sharing_a_stripe_are_never_lost() {
    records_are_never_lost(1);
}

fn records_are_never_lost(stripes: usize) {
    loom::model(move || {
        let config = CircuitBreakerConfig::builder()
            .count_window(4, 2)
            .minimum_calls(4)
            .failure_rate_threshold(100.0)
            .build()
            .unwrap();
        let (slot, core) = setup_striped(config, stripes);
        let g = generation(slot.word());
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let core = core.clone();
                loom::thread::spawn(move || {
                    let o = if i == 0 {
                        Record::Failure
                    } else {
                        Record::Success
                    };
                    record(slot, &core, g, o);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let sums = slot.sum();
        assert_eq!((sums.calls, sums.failures), (2, 1));
        assert_eq!(kind(slot.word()), CLOSED);
    });
}

#[test]
fn loom_exactly_one_thread_opens_the_breaker() {
    loom::model(|| {
        let config = CircuitBreakerConfig::builder()
            .count_window(2, 2)
            .minimum_calls(2)
            .failure_rate_threshold(50.0)
            .build()
            .unwrap();
        let (slot, core) = setup(config);
        let mut events = core.subscribe();
        let g = generation(slot.word());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let core = core.clone();
                loom::thread::spawn(move || record(slot, &core, g, Record::Failure))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(kind(slot.word()), OPEN);
        assert_eq!(generation(slot.word()), g.wrapping_add(1));
        assert_eq!(
            events.try_recv().unwrap(),
            Event::StateChanged {
                from: State::Closed,
                to: State::Open
            }
        );
        assert!(
            events.try_recv().is_err(),
            "a second transition was announced"
        );
    });
}

#[test]
fn loom_half_open_never_admits_more_than_the_permits() {
    loom::model(|| {
        let config = CircuitBreakerConfig::builder()
            .half_open_calls(1)
            .build()
            .unwrap();
        let (slot, core) = setup(config);
        core.set(slot, State::Open);
        // An open period that has already ended.
        let word = slot.word();
        slot.state.deadline.store(0, Relaxed);
        slot.state
            .deadline_gen
            .store(generation(word) as u64, Release);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let core = core.clone();
                loom::thread::spawn(move || core.admit(slot).is_ok())
            })
            .collect();
        let admitted: usize = threads
            .into_iter()
            .map(|t| t.join().unwrap() as usize)
            .sum();
        assert_eq!(admitted, 1);
        assert_eq!(kind(slot.word()), HALF_OPEN);
    });
}

#[test]
fn loom_a_released_permit_is_reused_and_the_last_probe_decides_once() {
    loom::model(|| {
        let config = CircuitBreakerConfig::builder()
            .half_open_calls(2)
            .build()
            .unwrap();
        let (slot, core) = setup(config);
        core.set(slot, State::Open);
        let word = slot.word();
        slot.state.deadline.store(0, Relaxed);
        slot.state
            .deadline_gen
            .store(generation(word) as u64, Release);
        let a = core.admit(slot).unwrap();
        let b = core.admit(slot).unwrap();
        assert_eq!(a.role, Role::Probe);
        assert!(core.admit(slot).is_err());
        let mut events = core.subscribe();
        let t1 = {
            let core = core.clone();
            loom::thread::spawn(move || {
                core.record_probe(slot, a.generation, Record::Success, false)
            })
        };
        let t2 = {
            let core = core.clone();
            loom::thread::spawn(move || {
                // Cancelled, then admitted again and succeeding.
                Core::release_permit(slot, b.generation);
                if let Ok(c) = core.admit(slot) {
                    core.record_probe(slot, c.generation, Record::Success, false);
                }
            })
        };
        t1.join().unwrap();
        t2.join().unwrap();
        assert_eq!(kind(slot.word()), CLOSED);
        assert_eq!(
            events.try_recv().unwrap(),
            Event::StateChanged {
                from: State::HalfOpen,
                to: State::Closed
            }
        );
        assert!(events.try_recv().is_err());
    });
}
