//! `?` takes a `BreakerError` into the usual error types, flattened: the
//! result downcasts to `CircuitOpen` or to the inner error, and displays as
//! it does.

use std::error::Error;
use std::io;

use meshguard::BoxError;
use meshguard::circuit_breaker::{
    BreakerError, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerService, CircuitOpen,
};
use tower::{Layer, Service, ServiceExt};

type Failing = tower::util::ServiceFn<fn(()) -> std::future::Ready<Result<(), io::Error>>>;

/// A breaker over a service that fails with `io::Error` "down"; forced
/// open when `open`.
fn breaker(open: bool) -> CircuitBreakerService<Failing> {
    let breaker = CircuitBreaker::new("users", CircuitBreakerConfig::default());
    if open {
        breaker.force_open();
    }
    let failing: fn(()) -> std::future::Ready<Result<(), io::Error>> =
        |_| std::future::ready(Err(io::Error::other("down")));
    breaker.layer().layer(tower::service_fn(failing))
}

async fn call(open: bool) -> Result<(), BreakerError<io::Error>> {
    breaker(open).oneshot(()).await
}

async fn into_box_dyn_error(open: bool) -> Result<(), Box<dyn Error>> {
    call(open).await?;
    Ok(())
}

#[tokio::test]
async fn question_mark_takes_a_rejection_into_box_dyn_error_as_circuit_open() {
    let err = into_box_dyn_error(true).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(err.to_string(), "circuit forced open");
}

#[tokio::test]
async fn question_mark_takes_an_inner_failure_into_box_dyn_error_as_the_inner_error() {
    let err = into_box_dyn_error(false).await.unwrap_err();
    assert_eq!(err.downcast_ref::<io::Error>().unwrap().to_string(), "down");
    assert_eq!(err.to_string(), "down");
}

#[tokio::test]
async fn question_mark_works_on_poll_ready_and_call_alike() {
    async fn twice() -> Result<(), Box<dyn Error + Send>> {
        let mut svc = breaker(true);
        svc.ready().await?.call(()).await?;
        Ok(())
    }
    let err = twice().await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

#[cfg(feature = "anyhow")]
#[tokio::test]
async fn question_mark_takes_a_breaker_error_into_anyhow_flattened() {
    async fn into_anyhow(open: bool) -> anyhow::Result<()> {
        call(open).await?;
        Ok(())
    }
    let rejected = into_anyhow(true).await.unwrap_err();
    assert!(rejected.is::<CircuitOpen>());
    assert_eq!(rejected.to_string(), "circuit forced open");
    let failed = into_anyhow(false).await.unwrap_err();
    assert!(failed.is::<io::Error>());
    assert_eq!(failed.to_string(), "down");
}

#[tokio::test]
async fn a_thiserror_enum_holds_a_breaker_error_as_a_box_error() {
    #[derive(Debug, thiserror::Error)]
    enum AppError {
        #[error("user not found")]
        NotFound,
        #[error(transparent)]
        Upstream(#[from] BoxError),
    }
    async fn lookup() -> Result<(), AppError> {
        call(true).await.map_err(BoxError::from)?;
        Err(AppError::NotFound)
    }
    let err = lookup().await.unwrap_err();
    let AppError::Upstream(boxed) = &err else {
        panic!("{err:?}")
    };
    assert!(boxed.is::<CircuitOpen>());
    assert_eq!(err.to_string(), "circuit forced open");
}
