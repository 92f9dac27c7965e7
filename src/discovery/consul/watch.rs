//! The blocking-query loop: query, diff, rate limit, back off.

use std::collections::HashMap;
use std::time::Duration;

use rs_consul::{Config, Consul, ConsulError, GetServiceNodesRequest, QueryOptions};
use tokio::sync::{mpsc, watch};

use super::ConsulDiscoveryBuilder;
use super::bucket::TokenBucket;
use super::discovery::WatchStatus;
use crate::backoff::Backoff;
use crate::discovery::{Change, Endpoint, Scheme};

/// The loop's settings, taken from a checked [`ConsulDiscoveryBuilder`].
pub(super) struct Watch {
    consul: Consul,
    service: String,
    passing: bool,
    /// The encoded `filter` value, with `&stale` appended when asked.
    filter: Option<String>,
    datacenter: Option<String>,
    wait: Duration,
    scheme: Scheme,
    min_interval: Duration,
    backoff: Backoff,
}

impl Watch {
    pub(super) fn new(b: ConsulDiscoveryBuilder) -> Self {
        let mut terms: Vec<String> = b
            .tags
            .iter()
            .map(|t| format!("{} in Service.Tags", serde_json::Value::from(t.as_str())))
            .collect();
        if let Some(f) = &b.filter {
            terms.push(format!("({f})"));
        }
        let mut filter = (!terms.is_empty()).then(|| {
            form_urlencoded::byte_serialize(terms.join(" and ").as_bytes()).collect::<String>()
        });
        if b.stale {
            filter = Some(format!("{}&stale", filter.unwrap_or_default()));
        }
        let consul = Consul::new(Config {
            address: b.address.trim_end_matches('/').to_string(),
            token: b.token.map(|t| t.secret().to_owned()),
            ..Config::default()
        });
        Watch {
            consul,
            service: b.service,
            passing: b.passing,
            filter,
            datacenter: b.datacenter,
            wait: b.wait,
            scheme: b.scheme,
            min_interval: b.min_interval,
            backoff: b.backoff,
        }
    }

    async fn query(&self, index: u64) -> Result<(Vec<Endpoint>, u64), String> {
        // rs-consul's `timeout` covers the answer's headers only; its body
        // is read after, unbounded in time. This timeout covers the whole
        // query, body included, so an agent that stalls mid-answer cannot
        // hold the watch. A blocking query needs longer than the wait plus
        // Consul's jitter of up to wait/16; both get 5 s for the rest.
        let blocking = if index > 0 {
            self.wait + self.wait / 16
        } else {
            Duration::ZERO
        };
        let timeout = blocking + QUERY_MARGIN;
        match tokio::time::timeout(timeout, self.query_nodes(index, timeout)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no complete answer within {timeout:?}")),
        }
    }

    async fn query_nodes(
        &self,
        index: u64,
        timeout: Duration,
    ) -> Result<(Vec<Endpoint>, u64), ConsulError> {
        let request = GetServiceNodesRequest {
            service: &self.service,
            near: None,
            passing: self.passing,
            filter: self.filter.as_deref(),
        };
        let options = QueryOptions {
            namespace: None,
            datacenter: self.datacenter.clone(),
            timeout: Some(timeout),
            index: (index > 0).then_some(index),
            wait: (index > 0).then_some(self.wait),
        };
        let meta = self
            .consul
            .get_service_nodes(request, Some(options))
            .await?;
        let endpoints = meta
            .response
            .into_iter()
            .map(|n| {
                let host = if n.service.address.is_empty() {
                    n.node.address
                } else {
                    n.service.address
                };
                Endpoint::new(n.service.id, self.scheme, host, n.service.port)
                    .with_tags(n.service.tags)
            })
            .collect();
        Ok((endpoints, meta.index))
    }

    pub(super) async fn run(
        self,
        tx: mpsc::Sender<Option<Change>>,
        status: watch::Sender<WatchStatus>,
    ) {
        let mut known: HashMap<String, Endpoint> = HashMap::new();
        let mut settled = false;
        let mut index = 0u64;
        let mut failures = 0u32;
        let mut previous_delay = None;
        let mut bucket = TokenBucket::new(2, self.min_interval);
        loop {
            bucket.take().await;
            let result = tokio::select! {
                r = self.query(index) => r,
                _ = tx.closed() => return,
            };
            match result {
                Ok((endpoints, new_index)) => {
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
                    let mut next: HashMap<String, Endpoint> =
                        HashMap::with_capacity(endpoints.len());
                    for e in endpoints {
                        next.insert(e.id().to_string(), e);
                    }
                    let mut changes = Vec::new();
                    for id in known.keys() {
                        if !next.contains_key(id) {
                            changes.push(Change::Remove(id.clone()));
                        }
                    }
                    for (id, e) in &next {
                        if known.get(id) != Some(e) {
                            changes.push(Change::Insert(id.clone(), e.clone()));
                        }
                    }
                    if !changes.is_empty() {
                        tracing::debug!(
                            service = %self.service,
                            endpoints = next.len(),
                            changes = changes.len(),
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
                    known = next;
                    status.send_replace(WatchStatus {
                        index,
                        endpoints: known.len(),
                        failures: 0,
                        last_error: None,
                    });
                }
                Err(e) => {
                    failures += 1;
                    let mut rng = fastrand::Rng::new();
                    let delay = self.backoff.delay(failures - 1, previous_delay, &mut rng);
                    previous_delay = Some(delay);
                    let error = e;
                    tracing::warn!(
                        service = %self.service,
                        failures,
                        retry_in = ?delay,
                        error = %error,
                        kept = known.len(),
                        "consul query failed; keeping the last good endpoints"
                    );
                    status.send_modify(|s| {
                        s.failures = failures;
                        s.last_error = Some(error);
                    });
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

/// Time a query gets beyond a blocking query's wait: to connect, and to
/// send and read the answer.
const QUERY_MARGIN: Duration = Duration::from_secs(5);
