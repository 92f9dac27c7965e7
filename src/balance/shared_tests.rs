//! Tests of [`SharedBalancer`](super::SharedBalancer), with a stand-in
//! balancer.

use std::sync::Mutex;
use std::task::Waker;

use super::*;

/// A request that records when its attempt must end.
#[derive(Default)]
struct Req(Option<Instant>, Option<Instant>, bool);

impl Req {
    /// A call's attempt (or a hedge's copy) with a deadline.
    fn due(at: Instant, hedge: bool) -> Self {
        Req(None, Some(at), hedge)
    }
}

impl BalancedRequest for Req {
    fn set_attempt_end(&mut self, at: Instant) {
        self.0 = Some(at);
    }

    fn deadline(&self) -> Option<Instant> {
        self.1
    }

    fn is_hedge(&self) -> bool {
        self.2
    }
}

/// A balancer stand-in that, like p2c, remembers only the last waker.
#[derive(Clone, Default)]
struct Mock {
    state: Arc<Mutex<MockState>>,
}

#[derive(Default)]
struct MockState {
    ready: bool,
    /// Ready, but no endpoint answers in time for a call with a deadline.
    too_slow: bool,
    len: usize,
    waker: Option<Waker>,
    seen: Vec<Option<Instant>>,
}

impl Mock {
    fn set(&self, ready: bool, len: usize) {
        let mut s = self.state.lock().unwrap();
        (s.ready, s.len) = (ready, len);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl PickEndpoint for Mock {
    fn len(&self) -> usize {
        self.state.lock().unwrap().len
    }

    fn poll_pick(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> Poll<Pick> {
        let mut s = self.state.lock().unwrap();
        if s.ready && s.too_slow && deadline.is_some() {
            Poll::Ready(Pick::TooSlow)
        } else if s.ready {
            Poll::Ready(Pick::Ready)
        } else {
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn drain(&mut self, _: &mut Context<'_>) -> crate::balance::p2c::Drained {
        crate::balance::p2c::Drained::default()
    }
}

impl Service<Req> for Mock {
    type Response = &'static str;
    type Error = BoxError;
    type Future = std::future::Ready<Result<&'static str, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        unreachable!("the shared balancer picks with `poll_pick`")
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.state.lock().unwrap().seen.push(req.0);
        std::future::ready(Ok("served"))
    }
}

fn shared(mock: &Mock, settled: bool, timeout: Option<Duration>) -> SharedBalancer<Mock> {
    SharedBalancer::new(mock.clone(), Arc::new(AtomicBool::new(settled)), timeout)
}

#[tokio::test(start_paused = true)]
async fn a_call_fails_with_no_endpoints_once_discovery_has_answered_empty() {
    let mock = Mock::default();
    let mut lb = shared(&mock, true, None);
    let err = lb.call(Req::default()).await.unwrap_err();
    assert!(err.is::<NoEndpoints>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_call_waits_for_discovery_and_is_served_when_an_endpoint_is_ready() {
    let mock = Mock::default();
    let mut lb = shared(&mock, false, None);
    let call = tokio::spawn(lb.call(Req::default()));
    tokio::task::yield_now().await;
    assert!(!call.is_finished());
    mock.set(true, 1);
    assert_eq!(call.await.unwrap().unwrap(), "served");
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_for_a_ready_endpoint_ends_at_its_timeout() {
    let mock = Mock::default();
    mock.set(false, 2);
    let mut lb = shared(&mock, true, Some(Duration::from_millis(300)));
    let start = Instant::now();
    let err = lb.call(Req::default()).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_call_that_waited_tells_the_transport_when_its_attempt_ends() {
    let mock = Mock::default();
    mock.set(false, 1);
    let mut lb = shared(&mock, true, Some(Duration::from_millis(300)));
    let start = Instant::now();
    let call = tokio::spawn(lb.call(Req::default()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    mock.set(true, 1);
    assert_eq!(call.await.unwrap().unwrap(), "served");
    let seen = mock.state.lock().unwrap().seen.clone();
    assert_eq!(seen, [Some(start + Duration::from_millis(300))]);
}

#[tokio::test(start_paused = true)]
async fn a_call_served_at_once_carries_no_attempt_end() {
    let mock = Mock::default();
    mock.set(true, 1);
    let mut lb = shared(&mock, true, Some(Duration::from_millis(300)));
    lb.call(Req::default()).await.unwrap();
    assert_eq!(mock.state.lock().unwrap().seen, [None]);
}

#[tokio::test(start_paused = true)]
async fn every_waiting_caller_is_served_though_the_balancer_wakes_only_the_last() {
    let mock = Mock::default();
    mock.set(false, 1);
    let lb = shared(&mock, true, None);
    let calls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(lb.clone().call(Req::default())))
        .collect();
    tokio::task::yield_now().await;
    mock.set(true, 1);
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "served");
    }
}

#[tokio::test(start_paused = true)]
async fn every_waiter_learns_at_once_that_discovery_answered_empty() {
    let mock = Mock::default();
    let settled = Arc::new(AtomicBool::new(false));
    let lb = SharedBalancer::new(mock.clone(), settled.clone(), Some(Duration::from_secs(3)));
    let calls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(lb.clone().call(Req::default())))
        .collect();
    tokio::task::yield_now().await;
    let start = Instant::now();
    settled.store(true, Ordering::Release);
    // The balancer wakes only the last caller it saw.
    let waker = mock.state.lock().unwrap().waker.take();
    waker.expect("a caller registered").wake();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(err.is::<NoEndpoints>(), "{err}");
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_passes_the_wake_on() {
    let mock = Mock::default();
    mock.set(false, 1);
    let lb = shared(&mock, true, None);
    let first = tokio::spawn(lb.clone().call(Req::default()));
    tokio::task::yield_now().await;
    let second = tokio::spawn(lb.clone().call(Req::default()));
    tokio::task::yield_now().await;
    // The mock holds only the second caller's waker; cancel it.
    second.abort();
    let _ = second.await;
    mock.state.lock().unwrap().ready = true;
    let waker = mock.state.lock().unwrap().waker.take();
    waker.expect("a caller registered").wake();
    let served = tokio::time::timeout(Duration::from_secs(1), first).await;
    assert_eq!(
        served
            .expect("the first caller was woken")
            .unwrap()
            .unwrap(),
        "served"
    );
}

/// A mock whose every ready endpoint is too slow for a call with a deadline.
fn too_slow() -> Mock {
    let mock = Mock::default();
    mock.set(true, 2);
    mock.state.lock().unwrap().too_slow = true;
    mock
}

#[tokio::test(start_paused = true)]
async fn an_attempt_no_endpoint_can_answer_in_time_fails_at_once_unsent() {
    let mock = too_slow();
    let mut lb = shared(&mock, true, Some(Duration::from_secs(1)));
    let start = Instant::now();
    let err = lb
        .call(Req::due(start + Duration::from_millis(50), false))
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(mock.state.lock().unwrap().seen.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hedge_no_endpoint_can_answer_in_time_waits_unsent_for_the_deadline() {
    let mock = too_slow();
    let mut lb = shared(&mock, true, Some(Duration::from_secs(1)));
    let start = Instant::now();
    let err = lb
        .call(Req::due(start + Duration::from_millis(50), true))
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert!(mock.state.lock().unwrap().seen.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_call_without_a_deadline_is_served_where_one_with_a_deadline_is_too_slow() {
    let mock = too_slow();
    let mut lb = shared(&mock, true, None);
    assert_eq!(lb.call(Req::default()).await.unwrap(), "served");
}
