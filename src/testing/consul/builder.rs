//! Starting a registry on a chosen address, optionally requiring an ACL
//! token: what a dev registry process (like `consul agent -dev`) needs.

use std::net::SocketAddr;

use super::ConsulRegistry;
use super::acl::AclToken;

/// Options for [`ConsulRegistry::builder`]: the address (default
/// `127.0.0.1:0`) and an optional required ACL token.
///
/// ```
/// use meshguard::testing::ConsulRegistry;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let consul = ConsulRegistry::builder()
///     .addr("127.0.0.1:0".parse().unwrap())
///     .acl_token("s3cr3t-token")
///     .start()
///     .await?;
/// assert!(consul.url().starts_with("http://127.0.0.1:"));
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct ConsulRegistryBuilder {
    addr: Option<SocketAddr>,
    acl_token: Option<AclToken>,
}

impl ConsulRegistryBuilder {
    /// Listens on `addr` (e.g. `127.0.0.1:8500`) instead of a free port.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Requires this ACL token on every request but `/v1/status/*`
    /// (`X-Consul-Token`, `Authorization: Bearer`, or `?token=`); others
    /// get 403. The token is never printed (`Debug` redacts it). An empty
    /// token requires none.
    pub fn acl_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.acl_token = (!token.is_empty()).then(|| AclToken::new(token));
        self
    }

    /// Binds and starts serving; an error when the address is taken.
    pub async fn start(self) -> std::io::Result<ConsulRegistry> {
        let addr = self
            .addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(ConsulRegistry::start_on(listener, self.acl_token))
    }
}

impl ConsulRegistry {
    /// A registry on a chosen address, or requiring an ACL token; see
    /// [`ConsulRegistryBuilder`].
    pub fn builder() -> ConsulRegistryBuilder {
        ConsulRegistryBuilder::default()
    }
}
