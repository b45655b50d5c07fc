//! The router's HTTP port (`http_listen`, `--http-listen`; off by default): the JSON API at
//! `POST /v1/<method>` (gateway.rs), its OpenAPI description at `GET /v1/openapi.json`
//! (openapi.rs), the web console at `/` (console.rs) and the node's metrics at `GET /metrics`
//! (what the console's latency figures come from). Over TLS with the node's `[tls]` table
//! when it has one, as its gRPC port.

mod console;
mod gateway;
mod openapi;

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tonic::codegen::http::{self, Method, StatusCode};
use tonic::Status;

use crate::config::TlsFile;
use crate::metrics;

/// What the HTTP port serves from: the node's gRPC stack, with its layers.
pub trait Stack:
    tower::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Stack for S where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

struct Served<S> {
    stack: S,
    methods: Vec<gateway::Method>,
    openapi: Vec<u8>,
    metrics: Vec<metrics::Extra>,
    max_body: usize,
}

/// Serves the HTTP port on `address` in the background; returns the address.
pub async fn serve<S: Stack>(
    address: &str,
    stack: S,
    tls: Option<&TlsFile>,
    max_body: usize,
    metrics: Vec<metrics::Extra>,
) -> anyhow::Result<String> {
    let acceptor = tls.map(acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen for HTTP on {address}: is another program using that port?"))?;
    let bound = listener.local_addr()?.to_string();
    let methods = gateway::methods();
    let openapi = openapi::document(&methods).to_string().into_bytes();
    let served = Arc::new(Served { stack, methods, openapi, metrics, max_body });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let (served, acceptor) = (served.clone(), acceptor.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let served = served.clone();
                    async move { Ok::<_, Infallible>(answer(&served, request).await) }
                });
                let http1 = hyper::server::conn::http1::Builder::new();
                let served = match acceptor {
                    None => http1.serve_connection(TokioIo::new(stream), service).await,
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => http1.serve_connection(TokioIo::new(stream), service).await,
                        Err(e) => return tracing::debug!(error = %e, "HTTP: TLS handshake failed"),
                    },
                };
                if let Err(e) = served {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
            });
        }
    });
    Ok(bound)
}

async fn answer<S: Stack>(served: &Served<S>, request: http::Request<hyper::body::Incoming>) -> gateway::Reply {
    let path = request.uri().path().to_string();
    let get = request.method() == Method::GET || request.method() == Method::HEAD;
    if let Some(name) = path.strip_prefix("/v1/") {
        if get && name == "openapi.json" {
            return gateway::json_reply(StatusCode::OK, served.openapi.clone());
        }
        let Some(method) = served.methods.iter().find(|m| m.name == name) else {
            let names: Vec<_> = served.methods.iter().map(|m| m.name).collect();
            let message = format!("no method /v1/{name}: there are {} (and GET /v1/openapi.json)", names.join(", "));
            return gateway::error(&Status::not_found(message));
        };
        if request.method() != Method::POST {
            let mut reply = gateway::error(&Status::invalid_argument(format!("call /v1/{name} with POST")));
            *reply.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            return reply;
        }
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, served.max_body).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                let message = format!("the body could not be read ({e}); at most {} bytes", served.max_body);
                let mut reply = gateway::error(&Status::invalid_argument(message));
                *reply.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                return reply;
            }
        };
        return gateway::call(served.stack.clone(), method, &parts.headers, &body).await;
    }
    if get && path == "/metrics" {
        let text = metrics::render(&served.metrics).await;
        let mut reply = http::Response::new(Full::new(Bytes::from(text)));
        reply.headers_mut().insert(http::header::CONTENT_TYPE, "text/plain; version=0.0.4".parse().expect("a header"));
        return reply;
    }
    match console::file(&path).filter(|_| get) {
        Some(reply) => reply,
        None => gateway::error(&Status::not_found(format!(
            "nothing at {} {path}: the API is POST /v1/<method> (GET /v1/openapi.json lists them), the console is at /",
            request.method()
        ))),
    }
}

/// The TLS side of the HTTP port, from the node's `[tls]` table: its certificate, and with
/// `require_client_cert` only callers whose certificate chains to the CA.
fn acceptor(tls: &TlsFile) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use pki_types::pem::PemObject;
    use tokio_rustls::rustls::{self, pki_types};
    let certs = pki_types::CertificateDer::pem_slice_iter(&crate::tls::read(&tls.cert, "certificate")?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading the TLS certificate {}", tls.cert.display()))?;
    let key = pki_types::PrivateKeyDer::from_pem_slice(&crate::tls::read(&tls.key, "key")?)
        .with_context(|| format!("reading the TLS key {}", tls.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match tls.require_client_cert {
        true => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in pki_types::CertificateDer::pem_slice_iter(&crate::tls::read(&tls.ca, "CA")?) {
                roots.add(ca.with_context(|| format!("reading the TLS CA {}", tls.ca.display()))?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            builder.with_client_cert_verifier(verifier.build()?)
        }
        false => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
