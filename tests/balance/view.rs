//! The balancer's view of its endpoints: a snapshot published once the
//! balancer has taken in what discovery had ready.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Waker};

use meshguard::balance::{BalanceConfig, BalanceView, Balancer, balance_with_view};
use meshguard::classify::ErrorsAreFailures;
use meshguard::discovery::{Change, Endpoint};
use tokio::sync::mpsc::UnboundedSender;
use tower::Service;

use super::Feed;

type Svc = tower::util::ServiceFn<fn(()) -> Ready<Result<(), Infallible>>>;
type Lb = Balancer<Feed, fn(&Endpoint) -> Svc, ErrorsAreFailures, ()>;

fn connect(_: &Endpoint) -> Svc {
    tower::service_fn(|()| ready(Ok(())))
}

fn balancer() -> (Lb, BalanceView, UnboundedSender<Change>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (lb, view) = balance_with_view::<_, _, _, _, ()>(
        "view",
        Feed(rx),
        connect as fn(&Endpoint) -> Svc,
        ErrorsAreFailures,
        BalanceConfig::default(),
    );
    (lb, view, tx)
}

fn insert(tx: &UnboundedSender<Change>, n: u8) {
    let endpoint = Endpoint::from_url(&format!("http://10.0.0.{n}:80")).unwrap();
    tx.send(Change::Insert(format!("i-{n}"), endpoint)).unwrap();
}

/// Lets the balancer take in what discovery has ready.
fn drain(lb: &mut Lb) {
    let _ = lb.poll_ready(&mut Context::from_waker(Waker::noop()));
}

fn ids(view: &BalanceView) -> Vec<String> {
    view.endpoints().iter().map(|e| e.id.clone()).collect()
}

#[test]
fn the_view_shows_inserts_and_removals_once_the_balancer_drains_them() {
    let (mut lb, view, tx) = balancer();
    for n in 1..=3 {
        insert(&tx, n);
    }
    assert!(view.endpoints().is_empty(), "not drained yet");
    drain(&mut lb);
    assert_eq!(ids(&view), ["i-1", "i-2", "i-3"]);

    tx.send(Change::Remove("i-2".into())).unwrap();
    insert(&tx, 4);
    drain(&mut lb);
    assert_eq!(ids(&view), ["i-1", "i-3", "i-4"]);
    assert_eq!(lb.len(), 3);
}

#[test]
fn an_instance_inserted_again_moves_to_the_end_of_the_view() {
    let (mut lb, view, tx) = balancer();
    for n in 1..=3 {
        insert(&tx, n);
    }
    drain(&mut lb);
    insert(&tx, 1);
    drain(&mut lb);
    assert_eq!(ids(&view), ["i-2", "i-3", "i-1"]);
}

#[test]
fn changes_undone_within_one_batch_leave_no_trace_in_the_view() {
    let (mut lb, view, tx) = balancer();
    insert(&tx, 1);
    insert(&tx, 2);
    tx.send(Change::Remove("i-1".into())).unwrap();
    insert(&tx, 3);
    insert(&tx, 2);
    drain(&mut lb);
    assert_eq!(ids(&view), ["i-3", "i-2"]);
    assert_eq!(lb.len(), 2);
}

#[test]
fn a_snapshot_taken_before_a_change_stays_as_it_was() {
    let (mut lb, view, tx) = balancer();
    insert(&tx, 1);
    drain(&mut lb);
    let before = view.endpoints();
    tx.send(Change::Remove("i-1".into())).unwrap();
    drain(&mut lb);
    assert_eq!(before.len(), 1);
    assert!(view.endpoints().is_empty());
}
