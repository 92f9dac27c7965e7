//! A scripted HTTP upstream for the retry tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use meshguard::BoxError;
use meshguard::deadline::Deadline;
use tokio::time::Instant;
use tower::Service;

/// What the upstream does with attempt `n` (0-based, counted over all
/// requests).
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// A status with a `Retry-After` header.
    After(u16, &'static str),
    /// Answers 200 after this long.
    Slow(Duration),
    Hang,
    Refused,
}

/// When an attempt arrived, and the deadline it carried.
pub type Seen = (Instant, Option<Deadline>);

/// A scripted upstream recording every attempt.
#[derive(Clone)]
pub struct Upstream {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<dyn Fn(usize) -> Reply + Send + Sync>,
}

impl Upstream {
    pub fn new(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        Upstream {
            seen: Arc::default(),
            script: Arc::new(script),
        }
    }

    pub fn attempts(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn times(&self) -> Vec<Instant> {
        self.seen.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }
}

impl Service<Request<String>> for Upstream {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<String>, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<String>) -> Self::Future {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.push((Instant::now(), req.extensions().get::<Deadline>().copied()));
            seen.len() - 1
        };
        let reply = (self.script)(n);
        Box::pin(async move {
            let status = |s: u16| Response::builder().status(s).body(String::new()).unwrap();
            match reply {
                Reply::Status(s) => Ok(status(s)),
                Reply::After(s, after) => {
                    let mut r = status(s);
                    r.headers_mut()
                        .insert(http::header::RETRY_AFTER, after.parse().unwrap());
                    Ok(r)
                }
                Reply::Slow(d) => {
                    tokio::time::sleep(d).await;
                    Ok(status(200))
                }
                Reply::Hang => std::future::pending().await,
                Reply::Refused => {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
                }
            }
        })
    }
}
