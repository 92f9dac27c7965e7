//! Discovery at fleet scale: more instances than a task's coop budget
//! (128 changes) and than the backlog a call used to take in (384) are all
//! in the balancer at the first call, and a client with no calls follows
//! its service's changes.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use meshguard::client::ServiceClient;
use meshguard::discovery::{Change, Endpoint};
use tokio::sync::mpsc;

use crate::support::http::{serve, url};

/// Instances in the fleet: above the 384 a call could take in before.
const FLEET: usize = 1_000;

/// Discovery through a tokio channel: its receiver spends the task's coop
/// budget, as a Consul watch's does.
struct Channel(mpsc::UnboundedReceiver<Result<Change, Infallible>>);

impl futures_core::Stream for Channel {
    type Item = Result<Change, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

fn insert(tx: &mpsc::UnboundedSender<Result<Change, Infallible>>, id: usize, base: &str) {
    let endpoint = Endpoint::from_url(base).unwrap();
    tx.send(Ok(Change::Insert(format!("i-{id}"), endpoint)))
        .unwrap();
}

async fn hello() -> String {
    let app = axum::Router::new().route("/hello", get(|| async { Json("hi") }));
    url(serve(app).await)
}

#[tokio::test]
async fn the_first_call_sees_every_instance_announced_before_it() {
    let base = hello().await;
    let (tx, rx) = mpsc::unbounded_channel();
    for id in 0..FLEET {
        insert(&tx, id, &base);
    }
    let client = ServiceClient::builder("fleet")
        .discovery(Channel(rx))
        .build()
        .unwrap();
    let answer: String = client.get("/hello").send().await.unwrap();
    assert_eq!(answer, "hi");
    assert_eq!(client.endpoints().len(), FLEET);
}

#[tokio::test]
async fn the_first_call_reaches_the_instance_announced_last() {
    let base = hello().await;
    let (tx, rx) = mpsc::unbounded_channel();
    // A backlog of 1,999 changes: 1,000 instances, the first 999 gone again
    // (they point nowhere). Only the last one can answer.
    for id in 0..FLEET - 1 {
        insert(&tx, id, "http://127.0.0.1:9");
    }
    insert(&tx, FLEET - 1, &base);
    for id in 0..FLEET - 1 {
        tx.send(Ok(Change::Remove(format!("i-{id}")))).unwrap();
    }
    let client = ServiceClient::builder("fleet")
        .discovery(Channel(rx))
        .build()
        .unwrap();
    let answer: String = client.get("/hello").send().await.unwrap();
    assert_eq!(answer, "hi");
    let endpoints = client.endpoints();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].id, format!("i-{}", FLEET - 1));
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_takes_in_a_fleet_within_a_second() {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = ServiceClient::builder("fleet")
        .discovery(Channel(rx))
        .build()
        .unwrap();
    for id in 0..FLEET {
        insert(&tx, id, "http://127.0.0.1:9");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(client.endpoints().len(), FLEET);
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_applies_a_removal_and_an_insert_within_a_second() {
    let (tx, rx) = mpsc::unbounded_channel();
    for id in 0..FLEET {
        insert(&tx, id, "http://127.0.0.1:9");
    }
    let client = ServiceClient::builder("fleet")
        .discovery(Channel(rx))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(client.endpoints().len(), FLEET);

    tx.send(Ok(Change::Remove("i-0".into()))).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let endpoints = client.endpoints();
    assert_eq!(endpoints.len(), FLEET - 1);
    assert!(endpoints.iter().all(|e| e.id != "i-0"));

    insert(&tx, FLEET, "http://127.0.0.1:9");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let endpoints = client.endpoints();
    assert_eq!(endpoints.len(), FLEET);
    assert!(endpoints.iter().any(|e| e.id == format!("i-{FLEET}")));
}

#[tokio::test(start_paused = true)]
async fn the_watcher_ends_with_the_client() {
    let (tx, rx) = mpsc::unbounded_channel::<Result<Change, Infallible>>();
    let client = ServiceClient::builder("fleet")
        .discovery(Channel(rx))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The receiver went with the balancer, the watcher with it.
    assert!(tx.is_closed());
    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_alive_tasks(), 0);
}
