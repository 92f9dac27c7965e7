//! reqwest as a tower service for one discovered endpoint.

use http::{Request, Response};
use meshguard::BoxError;
use meshguard::discovery::Endpoint;

/// The service type the balancer tests connect endpoints with.
pub type EndpointClient = tower::util::BoxCloneService<Request<String>, Response<String>, BoxError>;

/// Makes a GET client for each endpoint: the request's URI (a path) is
/// appended to the endpoint's base URL; the response body is read as text.
pub fn connect(client: reqwest::Client) -> impl FnMut(&Endpoint) -> EndpointClient {
    move |e: &Endpoint| {
        let (client, base) = (client.clone(), e.base_url());
        tower::util::BoxCloneService::new(tower::service_fn(move |req: Request<String>| {
            let (client, url) = (client.clone(), format!("{base}{}", req.uri()));
            async move {
                let response = client.get(url).send().await?;
                let status = response.status();
                Ok::<_, BoxError>(
                    Response::builder()
                        .status(status)
                        .body(response.text().await?)?,
                )
            }
        }))
    }
}
