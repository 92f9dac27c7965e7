//! `meshguard::grpc::Channel` under a tonic client, against tonic servers
//! on 127.0.0.1:0 (h2c): unary calls over three instances, gRPC's retry
//! rules (trailers-only UNAVAILABLE, pushback), `grpc-timeout` both ways,
//! streams passed through, never retried, and each endpoint's one HTTP/2
//! connection (h2c, or h2 over TLS), made again when the server closes it.

#[path = "../support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::PathAndQuery;
use meshguard::client::TlsConfig;
use meshguard::grpc::Channel;
use meshguard::propagation::{CallContext, PropagationLayer, TraceParent};
use meshguard::retry::RetryPolicy;
use support::tls::{Ca, serve, server_config};
use tokio::time::Instant;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// `users.GetUser`, written by hand (no protoc here).
#[derive(Clone, PartialEq, prost::Message)]
struct GetUser {
    #[prost(uint64, tag = "1")]
    id: u64,
}

/// `users.User`.
#[derive(Clone, PartialEq, prost::Message)]
struct User {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, tag = "2")]
    name: String,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler =
    Arc<dyn Fn(tonic::Request<GetUser>) -> BoxFuture<Result<User, Status>> + Send + Sync>;

/// The unary method `users.Users/Get` answered by `handler`.
#[derive(Clone)]
struct Get(Handler);

impl tonic::server::UnaryService<GetUser> for Get {
    type Response = User;
    type Future = BoxFuture<Result<tonic::Response<User>, Status>>;

    fn call(&mut self, request: tonic::Request<GetUser>) -> Self::Future {
        let answer = (self.0)(request);
        Box::pin(async move { answer.await.map(tonic::Response::new) })
    }
}

/// The `x-request-id` a caller sent, if any.
#[derive(Clone)]
struct SentRequestId(Option<http::HeaderValue>);

/// A user-service instance: `Get` by `handler`, `List` streaming two users
/// then nothing more, `Upload` (client streaming) always UNAVAILABLE; what
/// it saw counted.
struct Instance {
    url: String,
    requests: Arc<AtomicUsize>,
    /// The connections it accepted.
    connections: Arc<AtomicUsize>,
}

async fn instance(
    handler: impl Fn(tonic::Request<GetUser>) -> BoxFuture<Result<User, Status>> + Send + Sync + 'static,
) -> Instance {
    instance_on(handler, None).await
}

/// An instance over TLS (`https`) when `tls` is given, h2c otherwise.
async fn instance_on(
    handler: impl Fn(tonic::Request<GetUser>) -> BoxFuture<Result<User, Status>> + Send + Sync + 'static,
    tls: Option<rustls::ServerConfig>,
) -> Instance {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let handler: Handler = Arc::new(move |req| {
        counted.fetch_add(1, Ordering::SeqCst);
        handler(req)
    });
    let get = tower::service_fn(move |req: http::Request<axum::body::Body>| {
        let handler = Get(handler.clone());
        async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<User, GetUser>::default());
            Ok::<_, Infallible>(grpc.unary(handler, req).await)
        }
    });
    let list = tower::service_fn(|req: http::Request<axum::body::Body>| async move {
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<User, GetUser>::default());
        Ok::<_, Infallible>(grpc.server_streaming(List, req).await)
    });
    let uploads = requests.clone();
    let upload = tower::service_fn(move |req: http::Request<axum::body::Body>| {
        uploads.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<User, GetUser>::default());
            Ok::<_, Infallible>(grpc.client_streaming(Upload, req).await)
        }
    });
    let app = axum::Router::new()
        .route_service("/users.Users/Get", get)
        .route_service("/users.Users/List", list)
        .route_service("/users.Users/Upload", upload)
        .layer(PropagationLayer::new())
        // What the caller sent, before the server's layer makes an id up.
        .layer(tower::util::MapRequestLayer::new(
            |mut req: http::Request<axum::body::Body>| {
                let sent = SentRequestId(req.headers().get("x-request-id").cloned());
                req.extensions_mut().insert(sent);
                req
            },
        ));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = serve(app, tls).await;
    Instance {
        url: server.url(scheme),
        requests,
        connections: server.connections,
    }
}

#[derive(Clone)]
struct List;

impl tonic::server::ServerStreamingService<GetUser> for List {
    type Response = User;
    type ResponseStream = Pin<Box<dyn futures_core::Stream<Item = Result<User, Status>> + Send>>;
    type Future = BoxFuture<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, _: tonic::Request<GetUser>) -> Self::Future {
        Box::pin(async {
            let two = futures_util::stream::iter([1, 2].map(|id| {
                Ok(User {
                    id,
                    name: format!("user {id}"),
                })
            }));
            let stream: Self::ResponseStream = Box::pin(futures_util::StreamExt::chain(
                two,
                futures_util::stream::pending(),
            ));
            Ok(tonic::Response::new(stream))
        })
    }
}

#[derive(Clone)]
struct Upload;

impl tonic::server::ClientStreamingService<GetUser> for Upload {
    type Response = User;
    type Future = BoxFuture<Result<tonic::Response<User>, Status>>;

    fn call(&mut self, _: tonic::Request<tonic::Streaming<GetUser>>) -> Self::Future {
        Box::pin(async { Err(Status::unavailable("not now")) })
    }
}

fn ada(req: tonic::Request<GetUser>) -> BoxFuture<Result<User, Status>> {
    let id = req.into_inner().id;
    Box::pin(async move {
        Ok(User {
            id,
            name: "Ada".into(),
        })
    })
}

fn channel(urls: &[&str]) -> Channel {
    Channel::builder("users")
        .urls(urls.iter().copied())
        .build()
        .unwrap()
}

async fn get(channel: &Channel, id: u64, timeout: Option<Duration>) -> Result<User, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let mut request = tonic::Request::new(GetUser { id });
    if let Some(t) = timeout {
        request.set_timeout(t);
    }
    let path = PathAndQuery::from_static("/users.Users/Get");
    grpc.unary(request, path, ProstCodec::<GetUser, User>::default())
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_unary_call_through_the_channel_answers() {
    let (a, b, c) = (
        instance(ada).await,
        instance(ada).await,
        instance(ada).await,
    );
    let users = channel(&[&a.url, &b.url, &c.url]);
    for id in 0..30 {
        let user = get(&users, id, None).await.unwrap();
        assert_eq!(
            user,
            User {
                id,
                name: "Ada".into()
            }
        );
    }
    let total: usize = [&a, &b, &c]
        .iter()
        .map(|i| i.requests.load(Ordering::SeqCst))
        .sum();
    assert_eq!(total, 30);
}

#[tokio::test]
async fn an_instance_answering_unavailable_is_retried_on_another() {
    let down = instance(|_| Box::pin(async { Err(Status::unavailable("draining")) })).await;
    let (a, b) = (instance(ada).await, instance(ada).await);
    let users = channel(&[&down.url, &a.url, &b.url]);
    for id in 0..30 {
        assert_eq!(get(&users, id, None).await.unwrap().id, id);
    }
}

#[tokio::test]
async fn a_dead_instance_is_hidden() {
    let dead = support::http::closed_port().await;
    let (a, b) = (instance(ada).await, instance(ada).await);
    let dead = format!("http://{dead}");
    let users = channel(&[&dead, &a.url, &b.url]);
    for id in 0..30 {
        assert_eq!(get(&users, id, None).await.unwrap().id, id);
    }
}

/// An instance answering UNAVAILABLE with `grpc-retry-pushback-ms` set to
/// `pushback` to its first request, then Ada.
async fn pushing_back(pushback: &'static str) -> (Instance, Arc<std::sync::Mutex<Vec<Instant>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let server = instance(move |req| {
        let first = {
            let mut seen = record.lock().unwrap();
            seen.push(Instant::now());
            seen.len() == 1
        };
        if first {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("grpc-retry-pushback-ms", pushback.parse().unwrap());
            Box::pin(async move { Err(Status::with_metadata(Code::Unavailable, "busy", metadata)) })
        } else {
            ada(req)
        }
    })
    .await;
    (server, seen)
}

#[tokio::test(start_paused = true)]
async fn a_pushback_is_waited_for_exactly() {
    let (server, seen) = pushing_back("300").await;
    let users = channel(&[&server.url]);
    assert_eq!(get(&users, 7, None).await.unwrap().id, 7);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1] - seen[0], Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_negative_pushback_is_not_retried() {
    let (server, seen) = pushing_back("-1").await;
    let users = channel(&[&server.url]);
    let status = get(&users, 7, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn resource_exhausted_is_retried_only_with_a_pushback() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let server = instance(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(Status::resource_exhausted("quota")) })
    })
    .await;
    let users = channel(&[&server.url]);
    let status = get(&users, 7, None).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_calls_grpc_timeout_travels_to_the_server_as_its_deadline() {
    let left = Arc::new(std::sync::Mutex::new(None));
    let record = left.clone();
    let server = instance(move |req| {
        *record.lock().unwrap() = req.metadata().get("grpc-timeout").cloned();
        let deadline = CallContext::current().and_then(|c| c.deadline());
        let remaining = deadline.map(|d| d.instant() - Instant::now());
        Box::pin(async move {
            assert_eq!(remaining, Some(Duration::from_millis(2000)));
            Ok(User::default())
        })
    })
    .await;
    let users = channel(&[&server.url]);
    get(&users, 7, Some(Duration::from_secs(2))).await.unwrap();
    assert_eq!(left.lock().unwrap().as_ref().unwrap(), "2000m");
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_ends_at_its_deadline_with_deadline_exceeded() {
    let server = instance(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(User::default())
        })
    })
    .await;
    let users = Channel::builder("users")
        .urls([server.url.as_str()])
        .timeout(None)
        .build()
        .unwrap();
    let started = Instant::now();
    let status = get(&users, 7, Some(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_server_stream_is_passed_through_and_ended_by_the_deadline() {
    let server = instance(ada).await;
    let users = channel(&[&server.url]);
    let mut grpc = tonic::client::Grpc::new(users.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(GetUser { id: 0 });
    request.set_timeout(Duration::from_secs(5));
    let started = Instant::now();
    let path = PathAndQuery::from_static("/users.Users/List");
    let mut stream = grpc
        .server_streaming(request, path, ProstCodec::<GetUser, User>::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().id, 1);
    assert_eq!(stream.message().await.unwrap().unwrap().id, 2);
    assert_eq!(started.elapsed(), Duration::ZERO);
    let end = stream.message().await.unwrap_err();
    assert_eq!(end.code(), Code::DeadlineExceeded, "{end:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_client_stream_is_sent_once_even_when_unavailable() {
    let server = instance(ada).await;
    let users = channel(&[&server.url]);
    let mut grpc = tonic::client::Grpc::new(users.clone());
    grpc.ready().await.unwrap();
    let messages = futures_util::stream::iter([GetUser { id: 1 }, GetUser { id: 2 }]);
    let path = PathAndQuery::from_static("/users.Users/Upload");
    let status = grpc
        .client_streaming(
            tonic::Request::new(messages),
            path,
            ProstCodec::<GetUser, User>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

/// A channel to `url` whose bulkhead lets one call at a time through, and
/// none wait.
fn one_at_a_time(url: &str) -> Channel {
    Channel::builder("users")
        .urls([url])
        .bulkhead(Some(
            meshguard::limit::BulkheadConfig::builder()
                .max_concurrent(1)
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_call_beyond_the_bulkhead_is_resource_exhausted_without_a_request() {
    let server = instance(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(User::default())
        })
    })
    .await;
    let users = one_at_a_time(&server.url);
    let first = tokio::spawn({
        let users = users.clone();
        async move { get(&users, 1, None).await }
    });
    while server.requests.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let status = get(&users, 2, None).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    first.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_call_whose_message_cannot_be_encoded_gives_its_bulkhead_permit_back() {
    let server = instance(ada).await;
    let users = one_at_a_time(&server.url);
    // Its one message is over tonic's limit: the request's body fails.
    let mut failing = tonic::client::Grpc::new(users.clone()).max_encoding_message_size(1);
    failing.ready().await.unwrap();
    let path = PathAndQuery::from_static("/users.Users/Get");
    let status = failing
        .unary(
            tonic::Request::new(GetUser { id: 1 << 40 }),
            path,
            ProstCodec::<GetUser, User>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    // The failed call's client is still alive and holds no permit.
    assert_eq!(get(&users, 7, None).await.unwrap().id, 7);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    drop(failing);
}

#[tokio::test]
async fn calls_failing_at_once_let_the_other_tasks_run() {
    let server = instance(ada).await;
    let users = channel(&[&server.url]);
    // Warm: from here on the channel is ready at once.
    assert_eq!(get(&users, 1, None).await.unwrap().id, 1);
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn({
        let ran = ran.clone();
        async move { ran.store(true, Ordering::SeqCst) }
    });
    // Each call's message is over tonic's limit: it fails in `call`.
    let mut failing = tonic::client::Grpc::new(users.clone()).max_encoding_message_size(1);
    let path = PathAndQuery::from_static("/users.Users/Get");
    let mut calls = 0;
    while !ran.load(Ordering::SeqCst) && calls < 10_000 {
        failing.ready().await.unwrap();
        let request = tonic::Request::new(GetUser { id: 1 << 40 });
        let codec = ProstCodec::<GetUser, User>::default();
        let status = failing
            .unary(request, path.clone(), codec)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange);
        calls += 1;
    }
    // tokio's budget is 128 polls of its resources.
    assert!(calls <= 128, "the other task waited {calls} calls");
}

#[tokio::test]
async fn an_open_service_breaker_is_unavailable_without_a_call() {
    let server = instance(ada).await;
    let users = channel(&[&server.url]);
    users.breaker().unwrap().force_open();
    let status = get(&users, 7, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_call_carries_only_a_served_requests_id_and_trace() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let server = instance(move |req| {
        let sent = req.extensions().get::<SentRequestId>().unwrap().0.clone();
        record.lock().unwrap().push((
            sent.map(|v| v.to_str().unwrap().to_string()),
            req.metadata().get("traceparent").map(|v| v.len()),
        ));
        ada(req)
    })
    .await;
    let users = channel(&[&server.url]);
    get(&users, 7, None).await.unwrap();
    CallContext::new()
        .with_request_id(http::HeaderValue::from_static("req-42"))
        .with_trace(
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap(),
        )
        .scope(get(&users, 7, None))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], (None, None));
    assert_eq!(seen[1], (Some("req-42".to_string()), Some(55)));
}

#[tokio::test]
async fn calls_made_at_once_on_a_new_channel_share_one_connection() {
    let a = instance(ada).await;
    let users = channel(&[&a.url]);
    let calls = (0..8).map(|id| get(&users, id, None));
    let answers = futures_util::future::join_all(calls).await;
    let ids: Vec<u64> = answers.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(ids, (0..8).collect::<Vec<_>>());
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn after_the_server_shuts_a_connection_down_calls_go_on_a_new_one_without_a_retry() {
    let server = ShuttingDown::start().await;
    // No retries: a call that reached the closing connection unsent must
    // be sent again on the new one by the transport itself.
    let users = Channel::builder("users")
        .urls([server.url.as_str()])
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .build()
        .unwrap();
    for id in 0..3 {
        assert_eq!(get(&users, id, None).await.unwrap().id, id);
    }
    server.shut_down_every_connection().await;
    // A stream first: it is never retried.
    assert_eq!(sum(&users, &[1, 2, 3]).await.unwrap().id, 6);
    for id in 3..6 {
        assert_eq!(get(&users, id, None).await.unwrap().id, id);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

/// A client-streaming call to `users.Users/Sum`: the sum of the ids sent.
async fn sum(channel: &Channel, ids: &[u64]) -> Result<User, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let messages =
        futures_util::stream::iter(ids.iter().map(|&id| GetUser { id }).collect::<Vec<_>>());
    let path = PathAndQuery::from_static("/users.Users/Sum");
    grpc.client_streaming(
        tonic::Request::new(messages),
        path,
        ProstCodec::<GetUser, User>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[derive(Clone)]
struct Sum;

impl tonic::server::ClientStreamingService<GetUser> for Sum {
    type Response = User;
    type Future = BoxFuture<Result<tonic::Response<User>, Status>>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<GetUser>>) -> Self::Future {
        let mut messages = request.into_inner();
        Box::pin(async move {
            let mut id = 0;
            while let Some(message) = messages.message().await? {
                id += message.id;
            }
            Ok(tonic::Response::new(User {
                id,
                name: "sum".into(),
            }))
        })
    }
}

#[tokio::test]
async fn a_channel_speaks_h2_over_tls_to_a_server_certified_by_its_ca() {
    let ca = Ca::new();
    // As a gRPC server does: ALPN `h2` only.
    let mut tls = server_config(&ca.issue(&["127.0.0.1"]), None);
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let a = instance_on(ada, Some(tls)).await;
    let users = Channel::builder("users")
        .urls([a.url.as_str()])
        .tls(TlsConfig::builder().ca_pem(ca.pem()).build().unwrap())
        .build()
        .unwrap();
    assert_eq!(get(&users, 7, None).await.unwrap().id, 7);
    assert_eq!(get(&users, 8, None).await.unwrap().id, 8);
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_unavailable_once_without_a_retry() {
    let ca = Ca::new();
    let a = instance_on(ada, Some(server_config(&ca.issue(&["127.0.0.1"]), None))).await;
    // The public roots only: the test CA is unknown.
    let users = Channel::builder("users")
        .urls([a.url.as_str()])
        .build()
        .unwrap();
    let err = get(&users, 7, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("UnknownIssuer"), "{err:?}");
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
    assert_eq!(a.requests.load(Ordering::SeqCst), 0);
}

/// An h2c instance answering Ada whose connections can all be shut down
/// gracefully (GOAWAY, then closed), as a server that restarts does.
struct ShuttingDown {
    url: String,
    connections: Arc<AtomicUsize>,
    shutdown: tokio::sync::watch::Sender<bool>,
    ended: Arc<AtomicUsize>,
    ended_changed: Arc<tokio::sync::Notify>,
}

impl ShuttingDown {
    async fn start() -> ShuttingDown {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto;
        use hyper_util::service::TowerToHyperService;

        let get = tower::service_fn(|req: http::Request<axum::body::Body>| async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<User, GetUser>::default());
            Ok::<_, Infallible>(grpc.unary(Get(Arc::new(ada) as Handler), req).await)
        });
        let sum = tower::service_fn(|req: http::Request<axum::body::Body>| async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<User, GetUser>::default());
            Ok::<_, Infallible>(grpc.client_streaming(Sum, req).await)
        });
        let app = axum::Router::new()
            .route_service("/users.Users/Get", get)
            .route_service("/users.Users/Sum", sum);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let ended_changed = Arc::new(tokio::sync::Notify::new());
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let server = ShuttingDown {
            url,
            connections: connections.clone(),
            shutdown: shutdown.clone(),
            ended: ended.clone(),
            ended_changed: ended_changed.clone(),
        };
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (app, ended, ended_changed) =
                    (app.clone(), ended.clone(), ended_changed.clone());
                let mut told = shutdown.subscribe();
                told.mark_unchanged();
                tokio::spawn(async move {
                    let server = auto::Builder::new(TokioExecutor::new());
                    let conn =
                        server.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app));
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = told.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                    ended.fetch_add(1, Ordering::SeqCst);
                    ended_changed.notify_waiters();
                });
            }
        });
        server
    }

    /// Shuts down every open connection and waits until each has closed.
    async fn shut_down_every_connection(&self) {
        let open = self.connections.load(Ordering::SeqCst);
        let ended = self.ended_changed.notified();
        let mut ended = std::pin::pin!(ended);
        ended.as_mut().enable();
        self.shutdown.send_replace(true);
        while self.ended.load(Ordering::SeqCst) < open {
            ended.as_mut().await;
            ended.set(self.ended_changed.notified());
            ended.as_mut().enable();
        }
    }
}

#[tokio::test]
async fn a_keep_alive_interval_of_zero_is_a_config_error_naming_the_field() {
    let err = Channel::builder("users")
        .urls(["http://127.0.0.1:1"])
        .keep_alive_interval(Some(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "keep_alive_interval");
}
