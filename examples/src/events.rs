//! `user.created` events on a Redis Stream: durable and replayable, read
//! by consumer groups.
//!
//! The publisher never fails or delays the HTTP request that causes an
//! event: events go to a bounded in-memory queue and a background task
//! appends them to the stream in order (trimmed to about a maximum
//! length), retrying with meshguard's jittered backoff while Redis is
//! unavailable; an append that gets no answer in time is a stall, logged
//! at warn and retried. Nothing is lost while the process lives and the
//! queue has room ([`PublisherConfig`]); surviving a crash of the
//! publisher needs an outbox in the service's database, which the
//! in-memory example store does not have.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use meshguard::backoff::{Backoff, Jitter};
use redis::AsyncCommands;
use redis::streams::{StreamMaxlen, StreamReadOptions, StreamReadReply};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The stream's key.
pub const USER_CREATED: &str = "user.created";

/// The event: the user as created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCreated {
    /// The user's id.
    pub id: u64,
    /// The user's name.
    pub name: String,
    /// The user's email address.
    pub email: String,
}

/// Every connection has a connect and a response timeout: without them
/// redis-rs waits forever on a server that accepts and never answers. The
/// response timeout is above the consumer's 1 s `BLOCK`, and each read is
/// bounded to 100 entries (`COUNT`).
fn connection_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(5))
}

fn backoff() -> Backoff {
    Backoff::exponential(Duration::from_millis(50), Duration::from_secs(2))
        .expect("valid")
        .with_jitter(Jitter::Full)
}

/// How a [`Publisher`] bounds what it holds and waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherConfig {
    /// Events queued and not yet in Redis, at most (10,000). Beyond, a new
    /// event is dropped, counted ([`Publisher::dropped`]) and logged at
    /// warn: the request that caused it is not failed for it.
    pub capacity: usize,
    /// The stream is trimmed to about this many entries on every append
    /// (`XADD MAXLEN ~`, 100,000): Redis trims whole nodes, so a little
    /// more may stay.
    pub max_len: usize,
    /// An append not answered within this time (2 s) is a stall: logged
    /// at warn, counted ([`Publisher::stalls`]), the connection dropped
    /// and the event retried.
    pub write_timeout: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            capacity: 10_000,
            max_len: 100_000,
            write_timeout: Duration::from_secs(2),
        }
    }
}

/// Publishes events without ever blocking or failing the caller.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::Sender<UserCreated>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    pending: AtomicUsize,
    dropped: AtomicU64,
    stalls: AtomicU64,
}

impl Publisher {
    /// Starts the background task appending to Redis at `url`, with the
    /// default [`PublisherConfig`].
    pub fn start(url: &str) -> redis::RedisResult<Publisher> {
        Publisher::start_with(url, PublisherConfig::default())
    }

    /// Starts the background task appending to Redis at `url`.
    pub fn start_with(url: &str, config: PublisherConfig) -> redis::RedisResult<Publisher> {
        let client = redis::Client::open(url)?;
        let (queue, rx) = mpsc::channel::<UserCreated>(config.capacity.max(1));
        let counters = Arc::new(Counters::default());
        tokio::spawn(run(client, rx, counters.clone(), config));
        Ok(Publisher { queue, counters })
    }

    /// Queues `event`; returns at once. A full queue drops it (counted,
    /// logged).
    pub fn publish(&self, event: UserCreated) {
        self.counters.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.queue.try_send(event) {
            self.counters.pending.fetch_sub(1, Ordering::AcqRel);
            if let mpsc::error::TrySendError::Full(event) = e {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::AcqRel) + 1;
                // The first drop, then one line per thousand.
                if dropped % 1000 == 1 {
                    tracing::warn!(
                        user = event.id,
                        dropped,
                        "event queue full (redis too slow or down): event dropped"
                    );
                }
            }
        }
    }

    /// Events queued but not yet in Redis.
    pub fn pending(&self) -> usize {
        self.counters.pending.load(Ordering::Acquire)
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Acquire)
    }

    /// Appends that stalled past the write timeout.
    pub fn stalls(&self) -> u64 {
        self.counters.stalls.load(Ordering::Acquire)
    }
}

/// Appends queued events in order, each until it is in the stream.
async fn run(
    client: redis::Client,
    mut rx: mpsc::Receiver<UserCreated>,
    counters: Arc<Counters>,
    config: PublisherConfig,
) {
    let mut conn = None;
    while let Some(event) = rx.recv().await {
        let body = serde_json::to_string(&event).expect("serializable");
        let mut failures = 0u32;
        let mut previous = None;
        loop {
            let appended = tokio::time::timeout(
                config.write_timeout,
                append(&client, &mut conn, &body, config.max_len),
            )
            .await;
            let e = match appended {
                Ok(Ok(())) => break,
                Ok(Err(e)) => e.to_string(),
                Err(_) => {
                    counters.stalls.fetch_add(1, Ordering::AcqRel);
                    format!(
                        "redis stalled: no answer to XADD in {:?}",
                        config.write_timeout
                    )
                }
            };
            conn = None;
            let delay = backoff().delay(failures, previous, &mut fastrand::Rng::new());
            failures = (failures + 1).min(16);
            previous = Some(delay);
            tracing::warn!(error = %e, retry_in = ?delay, user = event.id,
                "redis unavailable; event kept for retry");
            tokio::time::sleep(delay).await;
        }
        counters.pending.fetch_sub(1, Ordering::AcqRel);
        tracing::info!(user = event.id, "published user.created");
    }
}

async fn append(
    client: &redis::Client,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    body: &str,
    max_len: usize,
) -> redis::RedisResult<()> {
    if conn.is_none() {
        *conn = Some(
            client
                .get_multiplexed_async_connection_with_config(&connection_config())
                .await?,
        );
    }
    let c = conn.as_mut().expect("connected");
    let _: String = c
        .xadd_maxlen(
            USER_CREATED,
            StreamMaxlen::Approx(max_len),
            "*",
            &[("data", body)],
        )
        .await?;
    Ok(())
}

/// Reads `user.created` as member `consumer` of `group`, handing each
/// event to `apply` and acknowledging it after. Entries delivered before
/// but never acknowledged (the consumer died, Redis restarted) are read
/// again first. Runs until the task is dropped.
pub async fn consume(
    url: String,
    group: &'static str,
    consumer: String,
    apply: impl Fn(UserCreated) + Send + 'static,
) {
    let mut failures = 0u32;
    let mut previous = None;
    loop {
        match consume_once(&url, group, &consumer, &apply).await {
            Ok(()) => unreachable!("the loop only ends with an error"),
            Err(e) => {
                let delay = backoff().delay(failures, previous, &mut fastrand::Rng::new());
                failures = (failures + 1).min(16);
                previous = Some(delay);
                if e.is_timeout() {
                    tracing::warn!(error = %e, retry_in = ?delay,
                        "redis stalled: no answer to the consumer's read; reconnecting");
                } else {
                    tracing::warn!(error = %e, retry_in = ?delay,
                        "event consumer lost redis; reconnecting");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn consume_once(
    url: &str,
    group: &str,
    consumer: &str,
    apply: &(impl Fn(UserCreated) + Send),
) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&connection_config())
        .await?;
    // From the start of the stream, so events published before this group
    // existed are seen; an existing group keeps its position.
    let created: redis::RedisResult<()> =
        conn.xgroup_create_mkstream(USER_CREATED, group, "0").await;
    if let Err(e) = created {
        if e.code() != Some("BUSYGROUP") {
            return Err(e);
        }
    }
    // First our pending entries ("0"), then new ones (">").
    let mut from = "0";
    loop {
        let opts = StreamReadOptions::default()
            .group(group, consumer)
            .count(100)
            .block(1000);
        let reply: StreamReadReply = conn.xread_options(&[USER_CREATED], &[from], &opts).await?;
        let mut seen = 0;
        for key in reply.keys {
            for entry in key.ids {
                seen += 1;
                if let Some(data) = entry.get::<String>("data") {
                    match serde_json::from_str::<UserCreated>(&data) {
                        Ok(event) => apply(event),
                        Err(e) => {
                            tracing::error!(error = %e, id = %entry.id, "malformed event skipped")
                        }
                    }
                }
                let _: i64 = conn.xack(USER_CREATED, group, &[&entry.id]).await?;
            }
        }
        if from == "0" && seen == 0 {
            from = ">";
        }
    }
}
