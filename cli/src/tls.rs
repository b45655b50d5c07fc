//! TLS settings from a role's `[tls]` table: the server side of every node, and the router's
//! client side towards encoders and shards (rustls through tonic).

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::TlsFile;

/// A PEM file of a TLS setting (`what`: "CA", "certificate", "key"), or an error naming it.
pub fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the TLS {what} {}", path.display()))
}

fn identity(tls: &TlsFile) -> anyhow::Result<Identity> {
    Ok(Identity::from_pem(read(&tls.cert, "certificate")?, read(&tls.key, "key")?))
}

/// This node serves over TLS with its certificate; with `require_client_cert`, only callers
/// whose certificate chains to the CA get through the handshake.
pub fn server(tls: &TlsFile) -> anyhow::Result<ServerTlsConfig> {
    let ca = Certificate::from_pem(read(&tls.ca, "CA")?);
    Ok(ServerTlsConfig::new()
        .identity(identity(tls)?)
        .client_ca_root(ca)
        .client_auth_optional(!tls.require_client_cert))
}

/// The router calls nodes over TLS: it trusts the CA, and shows its own certificate.
pub fn client(tls: &TlsFile) -> anyhow::Result<ClientTlsConfig> {
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&tls.ca, "CA")?)).identity(identity(tls)?))
}
