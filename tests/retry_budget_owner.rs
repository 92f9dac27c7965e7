// A binary of its own: a budget made by a test beside it could take the dropped layer's budget.
//! A request in flight keeps drawing on its own layer's budget after the
//! layer and its service are gone, whatever budgets are made meanwhile.
//! One test in this file: budgets made by tests running beside it would
//! make the outcome depend on their timing under the old recycling code.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response};
use meshguard::BoxError;
use meshguard::retry::{ErrorsOnly, RetryBudgetConfig, RetryLayer, RetryPolicy};
use tokio::sync::Notify;
use tower::{Layer, ServiceExt};

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_keeps_its_budget_when_a_new_layer_is_made() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(Notify::new());
    let upstream = {
        let (attempts, go) = (attempts.clone(), go.clone());
        tower::service_fn(move |_: Request<String>| {
            let (attempts, go) = (attempts.clone(), go.clone());
            async move {
                // The first attempt waits for the signal; every attempt
                // fails with an error that is retried.
                if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                    go.notified().await;
                }
                Err::<Response<String>, BoxError>(
                    std::io::Error::from(std::io::ErrorKind::ConnectionReset).into(),
                )
            }
        })
    };
    let generous = RetryBudgetConfig::builder()
        .ratio(1.0)
        .min_per_second(100)
        .build()
        .unwrap();
    let a = RetryLayer::new(
        RetryPolicy::builder()
            .max_attempts(3)
            .budget(generous)
            .build()
            .unwrap(),
    )
    .retry_on(ErrorsOnly);
    // `oneshot` drops A's service as soon as it has called it.
    let request = tokio::spawn(a.layer(upstream).oneshot(Request::new(String::new())));
    while attempts.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    drop(a);
    let empty = RetryBudgetConfig::builder()
        .ratio(0.0)
        .min_per_second(0)
        .build()
        .unwrap();
    let b = RetryLayer::new(RetryPolicy::builder().budget(empty).build().unwrap());
    assert_eq!(b.budget().balance(), 0);
    go.notify_one();
    let result = request.await.unwrap();
    assert!(result.is_err());
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}
