// A binary of its own: `tracing` caches per call site, process-wide, whether anyone listens.
//! The retry layer's `tracing` events. Alone in this binary: `tracing`
//! caches per call site whether anyone listens, and a test thread without a
//! subscriber racing this one could make the events vanish.

use std::time::Duration;

use http::Request;
use meshguard::backoff::Backoff;
use meshguard::retry::{RetryLayer, RetryPolicy};
use tower::{Layer, ServiceExt};

mod support;
use support::upstream::{Reply, Upstream};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn get() -> Request<String> {
    Request::get("http://upstream/")
        .body(String::new())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_retry_emits_an_event_with_service_attempt_reason_and_delay() {
    let events = support_tracing::capture();
    let upstream = Upstream::new(|n| Reply::Status(if n < 2 { 503 } else { 200 }));
    let layer = RetryLayer::new(
        RetryPolicy::builder()
            .backoff(Backoff::constant(MS(40)))
            .build()
            .unwrap(),
    )
    .name("users");
    let _guard = tracing::subscriber::set_default(events.subscriber());
    layer.layer(upstream.clone()).oneshot(get()).await.unwrap();
    assert_eq!(
        events.lines(),
        [
            "retrying service=users attempt=2 reason=503 service unavailable delay=40ms retry_after=false",
            "retrying service=users attempt=3 reason=503 service unavailable delay=40ms retry_after=false",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_with_a_streaming_body_emits_a_debug_event_saying_why_it_is_not_retried() {
    let events = support_tracing::capture_from(tracing::Level::DEBUG);
    let upstream = tower::service_fn(|_: Request<axum::body::Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::builder().status(503).body(()).unwrap())
    });
    let layer = RetryLayer::new(RetryPolicy::default()).name("orders");
    let _guard = tracing::subscriber::set_default(events.subscriber());
    let request = Request::put("http://orders/7")
        .body(axum::body::Body::from("order 7"))
        .unwrap();
    let response = layer.layer(upstream).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        events.lines(),
        ["request will not be retried reason=the body cannot be replayed"]
    );
}

mod support_tracing {
    //! Collects `tracing` events as `message key=value ...` lines.
    use std::fmt::Write;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    /// The lines, and the most verbose level kept.
    #[derive(Clone)]
    pub struct Events(Arc<Mutex<Vec<String>>>, tracing::Level);

    /// Events at `info` and above.
    pub fn capture() -> Events {
        capture_from(tracing::Level::INFO)
    }

    /// Events at `level` and above.
    pub fn capture_from(level: tracing::Level) -> Events {
        Events(Arc::default(), level)
    }

    impl Events {
        pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
            tracing_subscriber::registry().with(self.clone())
        }

        pub fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    struct Line(String, String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            } else {
                let _ = write!(self.1, " {}={value:?}", field.name());
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            let _ = write!(self.1, " {}={value}", field.name());
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if *event.metadata().level() <= self.1 {
                let mut line = Line(String::new(), String::new());
                event.record(&mut line);
                self.0.lock().unwrap().push(format!("{}{}", line.0, line.1));
            }
        }
    }
}
