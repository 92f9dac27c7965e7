//! The blocking-query loop: query, decode, diff, rate limit, back off.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::ConsulDiscoveryBuilder;
use super::bucket::TokenBucket;
use super::decode::{is_large, service_nodes};
use super::discovery::WatchStatus;
use super::known::Known;
use super::query::Query;
use super::transport::{Answer, Transport};
use crate::ConfigError;
use crate::backoff::Backoff;
use crate::discovery::{Change, Scheme};

/// The loop's settings, taken from a checked [`ConsulDiscoveryBuilder`].
pub(super) struct Watch {
    transport: Transport,
    query: Query,
    service: String,
    wait: Duration,
    scheme: Scheme,
    min_interval: Duration,
    backoff: Backoff,
    max_body: usize,
}

impl Watch {
    pub(super) fn new(b: ConsulDiscoveryBuilder) -> Result<Self, ConfigError> {
        let query = Query::new(
            &b.address,
            &b.service,
            b.passing,
            &b.tags,
            b.filter.as_deref(),
            b.datacenter.as_deref(),
            b.stale,
        );
        Ok(Watch {
            transport: Transport::new(b.token.as_ref(), b.max_body_size)?,
            query,
            service: b.service,
            wait: b.wait,
            scheme: b.scheme,
            min_interval: b.min_interval,
            backoff: b.backoff,
            max_body: b.max_body_size,
        })
    }

    /// One query, answered in full (body included) within its deadline: a
    /// blocking query's wait plus Consul's jitter of up to wait/16, and
    /// [`QUERY_MARGIN`] for the rest, so an agent that stalls mid-answer
    /// cannot hold the watch.
    async fn fetch(&mut self, index: u64) -> Result<Answer, String> {
        let blocking = if index > 0 {
            self.wait + self.wait / 16
        } else {
            Duration::ZERO
        };
        let timeout = blocking + QUERY_MARGIN;
        let uri = self.query.uri(index, self.wait);
        match tokio::time::timeout(timeout, self.transport.get(&uri)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no complete answer within {timeout:?}")),
        }
    }

    /// The watch's state after a query.
    fn status(
        &self,
        index: u64,
        known: &Known,
        failures: u32,
        error: Option<String>,
    ) -> WatchStatus {
        WatchStatus {
            index,
            endpoints: known.len(),
            failures,
            last_error: error,
            received_bytes: self.transport.received(),
        }
    }

    pub(super) async fn run(
        mut self,
        tx: mpsc::Sender<Option<Change>>,
        status: watch::Sender<WatchStatus>,
    ) {
        let mut known = Known::new(self.scheme);
        let mut settled = false;
        let mut index = 0u64;
        let mut failures = 0u32;
        let mut previous_delay = None;
        let mut bucket = TokenBucket::new(2, self.min_interval);
        loop {
            bucket.take().await;
            let fetched = tokio::select! {
                r = self.fetch(index) => r,
                _ = tx.closed() => return,
            };
            let result = match fetched {
                Ok(answer) => {
                    let (new_index, bytes) = (answer.index, answer.body.len());
                    let Some((next, changes)) = decode(known, answer, self.max_body).await else {
                        // The runtime is shutting down.
                        return;
                    };
                    known = next;
                    changes.map(|c| (c, new_index, bytes))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok((changes, new_index, bytes)) => {
                    failures = 0;
                    previous_delay = None;
                    index = if new_index < index {
                        tracing::info!(
                            service = %self.service,
                            from = index,
                            to = new_index,
                            "consul index went backwards; starting over"
                        );
                        0
                    } else {
                        new_index.max(1)
                    };
                    if !changes.is_empty() {
                        tracing::debug!(
                            service = %self.service,
                            endpoints = known.len(),
                            changes = changes.len(),
                            bytes,
                            "consul endpoints changed"
                        );
                    }
                    for c in changes {
                        if tx.send(Some(c)).await.is_err() {
                            return;
                        }
                    }
                    if !std::mem::replace(&mut settled, true) && tx.send(None).await.is_err() {
                        return;
                    }
                    status.send_replace(self.status(index, &known, 0, None));
                }
                Err(error) => {
                    failures += 1;
                    let mut rng = fastrand::Rng::new();
                    let delay = self.backoff.delay(failures - 1, previous_delay, &mut rng);
                    previous_delay = Some(delay);
                    tracing::warn!(
                        service = %self.service,
                        failures,
                        retry_in = ?delay,
                        error = %error,
                        kept = known.len(),
                        "consul query failed; keeping the last good endpoints"
                    );
                    status.send_replace(self.status(index, &known, failures, Some(error)));
                    if !std::mem::replace(&mut settled, true) && tx.send(None).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        }
    }
}

/// Decodes `answer` and diffs it against `known`: inline when small, on
/// tokio's blocking pool when large (gunzip, parse and diff of a fleet's
/// answer take milliseconds, which no worker should spend). `known` comes
/// back unchanged when the answer is not a health list. `None` when the
/// runtime is shutting down.
async fn decode(
    mut known: Known,
    answer: Answer,
    max: usize,
) -> Option<(Known, Result<Vec<Change>, String>)> {
    if !is_large(&answer) {
        let changes = service_nodes(&answer, max).map(|nodes| known.update(nodes));
        return Some((known, changes));
    }
    tokio::task::spawn_blocking(move || {
        let changes = service_nodes(&answer, max).map(|nodes| known.update(nodes));
        (known, changes)
    })
    .await
    .ok()
}

/// Time a query gets beyond a blocking query's wait: to connect, and to
/// send and read the answer.
const QUERY_MARGIN: Duration = Duration::from_secs(5);
