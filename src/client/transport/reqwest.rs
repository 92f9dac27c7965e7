//! The exchange through a `reqwest::Client` of the user's own
//! ([`ServiceClientBuilder::reqwest`](crate::client::ServiceClientBuilder::reqwest)):
//! the same request the hyper-util path sends, the body read under the
//! same limit, reqwest's errors classified in the same vocabulary.

use bytes::Bytes;
use http::{HeaderMap, Method, Response, Uri};
use http_body_util::{BodyExt, Limited};

use super::future::BoxExchange;
use super::outcome::{body_error, classified};
use crate::BoxError;
use crate::client::error::InvalidUri;

/// Sends `method uri` with `headers` and `body` through `client` (which
/// adds its own default headers where these do not set them); the
/// response's body is read up to `limit` bytes.
///
/// Boxed: `reqwest::Client::execute`'s future is an `impl Future`, which a
/// field of [`TransportFuture`](super::TransportFuture) cannot name, so
/// the exchange (that future, then the body read) is one boxed future, one
/// allocation among the several reqwest makes for each request.
pub(super) fn exchange(
    client: &::reqwest::Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    limit: usize,
) -> Result<BoxExchange, BoxError> {
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    // A URI hyper accepts that reqwest's URL parser does not: nothing sent.
    let request = ::reqwest::Request::try_from(request)
        .map_err(|e| BoxError::from(InvalidUri(e.to_string())))?;
    let pending = client.execute(request);
    Ok(Box::pin(async move {
        let response = pending.await.map_err(classified)?;
        let (parts, body) = http::Response::<::reqwest::Body>::from(response).into_parts();
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(Response::from_parts(parts, collected.to_bytes())),
            // Over the limit, cut off or reset, or the client's own
            // timeout while reading.
            Err(e) => Err(body_error(e, limit)),
        }
    }))
}
