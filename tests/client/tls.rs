//! TLS for private networks: a CA of the caller's own, client certificates
//! (mutual TLS), the server name verified, and settings that fail at build
//! naming the field and the file.

use meshguard::classify::Outcome;
use meshguard::client::{ClientError, ServiceClient, ServiceClientConfig, TlsConfig};

use crate::support::tls::{Ca, serve, server_config, version_app};

fn client(url: String, tls: TlsConfig) -> ServiceClient {
    ServiceClient::builder("users")
        .urls([url])
        .tls(tls)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_server_certified_by_the_given_ca_is_trusted() {
    let ca = Ca::new();
    let server = serve(
        version_app(),
        Some(server_config(&ca.issue(&["127.0.0.1"]), None)),
    )
    .await;
    let tls = TlsConfig::builder().ca_pem(ca.pem()).build().unwrap();
    let users = client(server.url("https"), tls);
    let r = users.get("/version").send_raw().await.unwrap();
    assert_eq!(&r.body()[..], b"HTTP/1.1");
}

#[tokio::test]
async fn an_untrusted_certificate_fails_once_and_is_not_retried() {
    let ca = Ca::new();
    let server = serve(
        version_app(),
        Some(server_config(&ca.issue(&["127.0.0.1"]), None)),
    )
    .await;
    // The public roots only: the test CA is unknown.
    let users = client(server.url("https"), TlsConfig::default());
    let err = users.get("/version").send_raw().await.unwrap_err();
    assert_eq!(err.outcome(), Outcome::Failure, "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        format!("{:?}", std::error::Error::source(&err)).contains("UnknownIssuer"),
        "{err:?}"
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_and_the_server_name_override_accepts_it() {
    let ca = Ca::new();
    let server = serve(
        version_app(),
        Some(server_config(&ca.issue(&["users.internal"]), None)),
    )
    .await;
    let plain = TlsConfig::builder().ca_pem(ca.pem()).build().unwrap();
    let err = client(server.url("https"), plain)
        .get("/version")
        .send_raw()
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), Outcome::Failure, "{err:?}");
    let named = TlsConfig::builder()
        .ca_pem(ca.pem())
        .server_name("users.internal")
        .build()
        .unwrap();
    let r = client(server.url("https"), named)
        .get("/version")
        .send_raw()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_server_requiring_a_client_certificate_refuses_a_client_without_one() {
    let ca = Ca::new();
    let server = serve(
        version_app(),
        Some(server_config(&ca.issue(&["127.0.0.1"]), Some(&ca))),
    )
    .await;
    let tls = TlsConfig::builder().ca_pem(ca.pem()).build().unwrap();
    let err = client(server.url("https"), tls)
        .get("/version")
        .send_raw()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
}

#[tokio::test]
async fn a_client_certificate_from_files_is_presented_to_a_server_requiring_one() {
    let ca = Ca::new();
    let server = serve(
        version_app(),
        Some(server_config(&ca.issue(&["127.0.0.1"]), Some(&ca))),
    )
    .await;
    let dir = tempdir();
    let me = ca.issue(&["order-service"]);
    let (cert, key, ca_file) = (dir.join("me.pem"), dir.join("me.key"), dir.join("ca.pem"));
    std::fs::write(&cert, &me.cert_pem).unwrap();
    std::fs::write(&key, &me.key_pem).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let tls = TlsConfig::builder()
        .ca_file(&ca_file)
        .client_cert_files(&cert, &key)
        .build()
        .unwrap();
    let r = client(server.url("https"), tls)
        .get("/version")
        .send_raw()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_missing_ca_file_is_a_config_error_naming_the_field_and_the_file() {
    let err = TlsConfig::builder()
        .ca_file("/nonexistent/meshguard-ca.pem")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "ca_file");
    assert!(
        err.to_string().contains("/nonexistent/meshguard-ca.pem"),
        "{err}"
    );
}

#[test]
fn a_ca_file_without_a_certificate_is_a_config_error_naming_the_file() {
    let dir = tempdir();
    let file = dir.join("empty.pem");
    std::fs::write(&file, "not a certificate\n").unwrap();
    let err = TlsConfig::builder().ca_file(&file).build().unwrap_err();
    assert_eq!(err.field(), "ca_file");
    assert!(err.to_string().contains("empty.pem"), "{err}");
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

#[test]
fn a_key_file_without_a_key_is_a_config_error_naming_the_key_file() {
    let ca = Ca::new();
    let me = ca.issue(&["order-service"]);
    let dir = tempdir();
    let (cert, key) = (dir.join("me.pem"), dir.join("me.key"));
    std::fs::write(&cert, &me.cert_pem).unwrap();
    // The certificate where the key should be.
    std::fs::write(&key, &me.cert_pem).unwrap();
    let err = TlsConfig::builder()
        .client_cert_files(&cert, &key)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "client_key_file");
    assert!(err.to_string().contains("me.key"), "{err}");
}

#[test]
fn an_invalid_server_name_is_a_config_error() {
    let err = TlsConfig::builder()
        .server_name("not a name!")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "server_name");
}

#[tokio::test]
async fn the_config_file_form_reads_the_tls_section() {
    let ca = Ca::new();
    let server = serve(
        version_app(),
        Some(server_config(&ca.issue(&["127.0.0.1"]), None)),
    )
    .await;
    let dir = tempdir();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let config: ServiceClientConfig = toml::from_str(&format!(
        r#"
        service = "users"
        urls = ["{}"]
        protocol = "negotiate"
        [tls]
        ca_file = ["{}"]
        "#,
        server.url("https"),
        ca_file.display()
    ))
    .unwrap();
    let users = ServiceClient::from_config(config).unwrap();
    let r = users.get("/version").send_raw().await.unwrap();
    assert_eq!(&r.body()[..], b"HTTP/2.0");
}

#[test]
fn a_client_certificate_without_its_key_in_the_config_file_names_the_key() {
    let err = toml::from_str::<TlsConfig>(r#"client_cert_file = "/tmp/me.pem""#).unwrap_err();
    assert!(err.to_string().contains("client_key_file"), "{err}");
}

/// A fresh directory under the system's temporary one.
fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meshguard-tls-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
