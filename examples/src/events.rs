//! `user.created` events on a Redis Stream: durable and replayable, read
//! by consumer groups.
//!
//! The publisher never fails or delays the HTTP request that causes an
//! event: events go to an in-memory queue and a background task appends
//! them to the stream in order, retrying with meshguard's jittered backoff
//! while Redis is unavailable. Nothing is lost while the process lives;
//! surviving a crash of the publisher needs an outbox in the service's
//! database, which the in-memory example store does not have.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshguard::backoff::{Backoff, Jitter};
use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};
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

/// Publishes events without ever blocking or failing the caller.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::UnboundedSender<UserCreated>,
    pending: Arc<AtomicUsize>,
}

impl Publisher {
    /// Starts the background task appending to Redis at `url`.
    pub fn start(url: &str) -> redis::RedisResult<Publisher> {
        let client = redis::Client::open(url)?;
        let (queue, mut rx) = mpsc::unbounded_channel::<UserCreated>();
        let pending = Arc::new(AtomicUsize::new(0));
        let left = pending.clone();
        tokio::spawn(async move {
            let mut conn = None;
            while let Some(event) = rx.recv().await {
                let body = serde_json::to_string(&event).expect("serializable");
                let mut failures = 0u32;
                let mut previous = None;
                loop {
                    match append(&client, &mut conn, &body).await {
                        Ok(()) => break,
                        Err(e) => {
                            conn = None;
                            let delay =
                                backoff().delay(failures, previous, &mut fastrand::Rng::new());
                            failures += 1;
                            previous = Some(delay);
                            tracing::warn!(error = %e, retry_in = ?delay, user = event.id,
                                "redis unavailable; event kept for retry");
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
                left.fetch_sub(1, Ordering::AcqRel);
                tracing::info!(user = event.id, "published user.created");
            }
        });
        Ok(Publisher { queue, pending })
    }

    /// Queues `event`; returns at once.
    pub fn publish(&self, event: UserCreated) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(event).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Events queued but not yet in Redis.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

async fn append(
    client: &redis::Client,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    body: &str,
) -> redis::RedisResult<()> {
    if conn.is_none() {
        *conn = Some(
            client
                .get_multiplexed_async_connection_with_config(&connection_config())
                .await?,
        );
    }
    let c = conn.as_mut().expect("connected");
    let _: String = c.xadd(USER_CREATED, "*", &[("data", body)]).await?;
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
                tracing::warn!(error = %e, retry_in = ?delay, "event consumer lost redis; reconnecting");
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
