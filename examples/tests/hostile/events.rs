//! The event publisher under a slow, stopped or absent Redis: its queue is
//! bounded and counts what it drops, the stream is trimmed, and a stall is
//! logged at warn and retried.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshguard_examples::events::{Publisher, PublisherConfig, USER_CREATED, UserCreated};

use crate::common::{Redis, eventually};

fn event(id: u64) -> UserCreated {
    UserCreated {
        id,
        name: format!("user {id}"),
        email: format!("u{id}@example.com"),
    }
}

#[tokio::test]
async fn the_event_queue_is_bounded_and_counts_what_it_drops() {
    // Nothing listens on port 1: every event stays queued.
    let publisher = Publisher::start_with(
        "redis://127.0.0.1:1/",
        PublisherConfig {
            capacity: 5,
            ..PublisherConfig::default()
        },
    )
    .unwrap();
    // No await in between: the background task has not taken any yet.
    for id in 0..8 {
        publisher.publish(event(id));
    }
    assert_eq!((publisher.pending(), publisher.dropped()), (5, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_trimmed_to_about_its_maximum_length() {
    let redis = Redis::start().await;
    let publisher = Publisher::start_with(
        &redis.url(),
        PublisherConfig {
            max_len: 10,
            ..PublisherConfig::default()
        },
    )
    .unwrap();
    for id in 0..300 {
        publisher.publish(event(id));
    }
    eventually("300 events appended", async || publisher.pending() == 0).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg(USER_CREATED)
        .query_async(&mut conn)
        .await
        .unwrap();
    // `MAXLEN ~ 10` trims whole nodes (100 entries by default).
    assert!((10..=110).contains(&len), "XLEN {len}");
}

/// Log lines, as a `tracing_subscriber` writer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn signal(redis: &Redis, signal: &str) {
    let pid = redis.pid().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

// One thread: the publisher's task logs on the thread holding the
// capturing subscriber.
#[tokio::test]
async fn a_redis_stall_is_logged_at_warn_and_the_event_retried() {
    let logs = Captured::default();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish(),
    );
    let redis = Redis::start().await;
    let publisher = Publisher::start_with(
        &redis.url(),
        PublisherConfig {
            write_timeout: Duration::from_millis(200),
            ..PublisherConfig::default()
        },
    )
    .unwrap();
    publisher.publish(event(1));
    eventually("the first event appended", async || {
        publisher.pending() == 0
    })
    .await;

    signal(&redis, "-STOP");
    publisher.publish(event(2));
    eventually("a stall counted", async || publisher.stalls() > 0).await;
    signal(&redis, "-CONT");
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("redis stalled: no answer to XADD in 200ms")),
        "{text}"
    );
    eventually("the second event appended", async || {
        publisher.pending() == 0
    })
    .await;
}
