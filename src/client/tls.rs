//! [`TlsConfig`]: TLS for private networks (your own certificate
//! authority, client certificates, the name to verify), and
//! [`HttpProtocol`], the HTTP version a client speaks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;

use crate::ConfigError;

/// The HTTP version a [`ServiceClient`](super::ServiceClient) speaks to
/// its endpoints (serde: `"http1"`, `"http2"`, `"negotiate"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpProtocol {
    /// HTTP/1.1, a pool of connections per endpoint (the default).
    #[default]
    Http1,
    /// HTTP/2 only: with prior knowledge (h2c) on `http` endpoints, and
    /// ALPN offering only `h2` on `https` ones. One connection per
    /// endpoint carries every call at once.
    Http2,
    /// On `https` endpoints, ALPN offers `h2` and `http/1.1` and the server
    /// chooses; `http` endpoints get HTTP/1.1.
    Negotiate,
}

/// TLS settings for a client's `https` endpoints: the certificate
/// authorities trusted, a client certificate (mutual TLS), and the server
/// name verified. Built with [`TlsConfig::builder`] (which reads and checks
/// every file at once) or deserialized (the `tls` section of a
/// [`ServiceClientConfig`](super::ServiceClientConfig)); a file that is
/// missing, unreadable or not what it should be fails with a
/// [`ConfigError`] naming the field and the file.
///
/// Without any setting, the public web roots (webpki-roots) are trusted, as
/// by default. Giving a CA trusts only it (and the other CAs given) unless
/// [`public_roots(true)`](TlsConfigBuilder::public_roots) keeps the public
/// ones too.
///
/// ```
/// use meshguard::client::TlsConfig;
///
/// let err = TlsConfig::builder()
///     .ca_file("/nonexistent/ca.pem")
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "ca_file");
/// assert!(err.to_string().contains("/nonexistent/ca.pem"));
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    sources: Sources,
    /// rustls's client configuration, made once.
    client: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

/// What a [`TlsConfig`] was made from, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Sources {
    ca_files: Vec<PathBuf>,
    ca_pems: Vec<Vec<u8>>,
    public_roots: Option<bool>,
    client_cert: Option<Pem>,
    client_key: Option<Pem>,
    server_name: Option<String>,
}

/// A PEM document, from a file or given inline.
#[derive(Clone, PartialEq, Eq)]
enum Pem {
    File(PathBuf),
    Inline(Vec<u8>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => write!(f, "File({})", path.display()),
            // Never the bytes: a private key may be among them.
            Pem::Inline(bytes) => write!(f, "Inline({} bytes)", bytes.len()),
        }
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_files", &self.sources.ca_files)
            .field("ca_pems", &self.sources.ca_pems.len())
            .field("public_roots", &self.public_roots())
            .field("client_cert", &self.sources.client_cert)
            .field("server_name", &self.sources.server_name)
            .finish()
    }
}

impl PartialEq for TlsConfig {
    /// Equal when made from the same settings.
    fn eq(&self, other: &Self) -> bool {
        self.sources == other.sources
    }
}

impl Default for TlsConfig {
    /// The public web roots, no client certificate.
    fn default() -> Self {
        TlsConfig::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl TlsConfig {
    /// Settings, from the defaults.
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder::default()
    }

    /// Whether the public web roots are trusted.
    pub fn public_roots(&self) -> bool {
        self.sources
            .public_roots
            .unwrap_or(self.sources.ca_files.is_empty() && self.sources.ca_pems.is_empty())
    }

    /// Whether a client certificate is presented (mutual TLS).
    pub fn has_client_certificate(&self) -> bool {
        self.sources.client_cert.is_some()
    }

    /// The name verified in every endpoint's certificate instead of the
    /// endpoint's host, if set.
    pub fn server_name(&self) -> Option<&str> {
        self.sources.server_name.as_deref()
    }

    /// A copy of rustls's configuration (the connector sets its ALPN).
    pub(crate) fn rustls(&self) -> rustls::ClientConfig {
        (*self.client).clone()
    }

    /// The fixed server name, if set.
    pub(crate) fn server_name_override(&self) -> Option<ServerName<'static>> {
        self.server_name.clone()
    }
}

/// Builds a [`TlsConfig`]; from [`TlsConfig::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TlsConfigBuilder {
    sources: Sources,
}

impl TlsConfigBuilder {
    /// Trusts the CA certificates in this PEM file (one or more).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.sources.ca_files.push(path.into());
        self
    }

    /// Trusts the CA certificates in this PEM text (one or more).
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.sources.ca_pems.push(pem.into());
        self
    }

    /// Whether the public web roots are trusted as well (default: only
    /// when no CA is given).
    pub fn public_roots(mut self, on: bool) -> Self {
        self.sources.public_roots = Some(on);
        self
    }

    /// Presents the certificate chain in `cert` with the private key in
    /// `key` (PEM files) to servers that ask for one (mutual TLS).
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.sources.client_cert = Some(Pem::File(cert.into()));
        self.sources.client_key = Some(Pem::File(key.into()));
        self
    }

    /// As [`client_cert_files`](Self::client_cert_files), from PEM text.
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.sources.client_cert = Some(Pem::Inline(cert.into()));
        self.sources.client_key = Some(Pem::Inline(key.into()));
        self
    }

    /// Verifies this name in every endpoint's certificate (and sends it as
    /// SNI) instead of the endpoint's host: for endpoints discovered by IP
    /// address whose certificates name the service.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.sources.server_name = Some(name.into());
        self
    }

    /// Reads every file and checks every setting.
    pub fn build(self) -> Result<TlsConfig, ConfigError> {
        let sources = self.sources;
        let mut roots = rustls::RootCertStore::empty();
        for path in &sources.ca_files {
            let pem = read("ca_file", path)?;
            add_cas(&mut roots, &pem)
                .map_err(|e| ConfigError::new("ca_file", format!("{}: {e}", path.display())))?;
        }
        for pem in &sources.ca_pems {
            add_cas(&mut roots, pem).map_err(|e| ConfigError::new("ca_pem", e))?;
        }
        let public = sources
            .public_roots
            .unwrap_or(sources.ca_files.is_empty() && sources.ca_pems.is_empty());
        if public {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if roots.is_empty() {
            return Err(ConfigError::new(
                "public_roots",
                "no certificate authority would be trusted: give a CA or keep the public roots",
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("tls", e.to_string()))?
            .with_root_certificates(roots);
        let client = match (&sources.client_cert, &sources.client_key) {
            (Some(cert), Some(key)) => {
                let (cert_field, key_field) = match cert {
                    Pem::File(_) => ("client_cert_file", "client_key_file"),
                    Pem::Inline(_) => ("client_cert_pem", "client_key_pem"),
                };
                let chain = certificates(cert_field, cert)?;
                let private = private_key(key_field, key)?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| ConfigError::new(key_field, describe(key, &e.to_string())))?
            }
            _ => builder.with_no_client_auth(),
        };
        let server_name = match &sources.server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|e| {
                ConfigError::new(
                    "server_name",
                    format!("{name:?} is not a DNS name or IP address: {e}"),
                )
            })?),
            None => None,
        };
        Ok(TlsConfig {
            sources,
            client: Arc::new(client),
            server_name,
        })
    }
}

/// The bytes of `path`, or an error naming `field` and the file.
fn read(field: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(field, format!("{}: cannot be read: {e}", path.display())))
}

/// Adds every certificate of a PEM document; at least one is required.
fn add_cas(roots: &mut rustls::RootCertStore, pem: &[u8]) -> Result<(), String> {
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not valid PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err("no PEM certificate in it".to_string());
    }
    Ok(())
}

/// The certificate chain of a PEM document.
fn certificates(field: &str, pem: &Pem) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = match pem {
        Pem::File(path) => read(field, path)?,
        Pem::Inline(bytes) => bytes.clone(),
    };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(field, describe(pem, &format!("not valid PEM: {e}"))))?;
    if chain.is_empty() {
        return Err(ConfigError::new(
            field,
            describe(pem, "no PEM certificate in it"),
        ));
    }
    Ok(chain)
}

/// The private key of a PEM document (PKCS#8, PKCS#1 or SEC1).
fn private_key(field: &str, pem: &Pem) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bytes = match pem {
        Pem::File(path) => read(field, path)?,
        Pem::Inline(bytes) => bytes.clone(),
    };
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| ConfigError::new(field, describe(pem, &format!("no usable private key: {e}"))))
}

/// A message about `pem`, naming its file if it has one.
fn describe(pem: &Pem, message: &str) -> String {
    match pem {
        Pem::File(path) => format!("{}: {message}", path.display()),
        Pem::Inline(_) => message.to_string(),
    }
}

/// The serde form: the builder's settings by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default)]
    ca_file: Vec<PathBuf>,
    #[serde(default)]
    ca_pem: Option<String>,
    #[serde(default)]
    public_roots: Option<bool>,
    #[serde(default)]
    client_cert_file: Option<PathBuf>,
    #[serde(default)]
    client_key_file: Option<PathBuf>,
    #[serde(default)]
    server_name: Option<String>,
}

impl TryFrom<RawTls> for TlsConfig {
    type Error = ConfigError;

    fn try_from(raw: RawTls) -> Result<Self, ConfigError> {
        let mut b = TlsConfig::builder();
        for path in raw.ca_file {
            b = b.ca_file(path);
        }
        if let Some(pem) = raw.ca_pem {
            b = b.ca_pem(pem);
        }
        if let Some(on) = raw.public_roots {
            b = b.public_roots(on);
        }
        match (raw.client_cert_file, raw.client_key_file) {
            (Some(cert), Some(key)) => b = b.client_cert_files(cert, key),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "client_key_file",
                    "required with `client_cert_file`",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "client_cert_file",
                    "required with `client_key_file`",
                ));
            }
            (None, None) => {}
        }
        if let Some(name) = raw.server_name {
            b = b.server_name(name);
        }
        b.build()
    }
}

impl<'de> Deserialize<'de> for TlsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawTls::deserialize(d)?;
        TlsConfig::try_from(raw).map_err(serde::de::Error::custom)
    }
}
