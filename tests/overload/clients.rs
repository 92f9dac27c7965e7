//! The clients the overload scenario compares: tower alone (p2c over
//! PeakEwma, retry, timeout), meshguard's `ServiceClient` as configured by
//! default, and with its adaptive limit and throttling.
#![allow(dead_code)]

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshguard::BoxError;
use meshguard::client::{ClientError, ServiceClient};
use meshguard::limit::{AdaptiveLimitConfig, ThrottleConfig};
use tower::{Service, ServiceBuilder, ServiceExt};

use super::scenario::{DEADLINE, Ended, Upstreams};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One call of the scenario.
pub type Caller = Box<dyn Fn() -> BoxFuture<Ended> + Send + Sync>;

/// One upstream instance for tower's balancer.
#[derive(Clone)]
struct Instance {
    client: Client<HttpConnector, Empty<Bytes>>,
    uri: Uri,
}

impl Service<()> for Instance {
    type Response = StatusCode;
    type Error = BoxError;
    type Future = BoxFuture<Result<StatusCode, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        let response = self.client.get(self.uri.clone());
        Box::pin(async move {
            let r = response.await?;
            Ok(r.status())
        })
    }
}

/// Retries errors, up to two more attempts.
#[derive(Clone)]
struct Attempts(usize);

impl<E> tower::retry::Policy<(), StatusCode, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut (), result: &mut Result<StatusCode, E>) -> Option<Ready<()>> {
        match result {
            Ok(status) if status.is_success() => None,
            _ if self.0 > 0 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, _: &()) -> Option<()> {
        Some(())
    }
}

/// tower alone: p2c over PeakEwma, shared through a `Buffer`, retry,
/// and a timeout at the deadline.
pub fn tower_alone(up: &Upstreams) -> Caller {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let instances: Vec<_> = up
        .addrs
        .iter()
        .map(|a| {
            tower::load::PeakEwma::new(
                Instance {
                    client: client.clone(),
                    uri: format!("http://{a}/work").parse().unwrap(),
                },
                Duration::from_millis(30),
                10e9,
                tower::load::CompleteOnResponse::default(),
            )
        })
        .collect();
    let balance = tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(instances));
    // Boxed: tower's stack of futures trips rustc's `Send` proof in an
    // async block (rust-lang/rust#64552).
    let svc = tower::util::BoxCloneSyncService::new(
        ServiceBuilder::new()
            .timeout(DEADLINE)
            .retry(Attempts(2))
            .buffer(65_536)
            .service(balance),
    );
    Box::new(move || {
        let svc = svc.clone();
        Box::pin(async move {
            match svc.oneshot(()).await {
                Ok(s) if s == StatusCode::OK => Ended::Ok,
                _ => Ended::Failed,
            }
        })
    })
}

/// meshguard's client, as built by default but for the 1 s deadline.
pub fn meshguard_plain(up: &Upstreams) -> Caller {
    caller(
        ServiceClient::builder("upstream")
            .urls(up.urls())
            .deadline(Some(DEADLINE))
            .build()
            .unwrap(),
    )
}

/// meshguard's client with its adaptive limit and throttling.
pub fn meshguard_flow_control(up: &Upstreams) -> Caller {
    caller(
        ServiceClient::builder("upstream")
            .urls(up.urls())
            .deadline(Some(DEADLINE))
            .adaptive_limit(Some(AdaptiveLimitConfig::default()))
            .throttle(Some(ThrottleConfig::default()))
            .build()
            .unwrap(),
    )
}

fn caller(client: ServiceClient) -> Caller {
    Box::new(move || {
        let client = client.clone();
        Box::pin(async move {
            match client.get("/work").send_raw().await {
                Ok(r) if r.status() == StatusCode::OK => Ended::Ok,
                Err(ClientError::LimitExceeded(_)) => Ended::Refused,
                _ => Ended::Failed,
            }
        })
    })
}
