//! How the client commands reach a router: its address, TLS with a CA when the router serves
//! TLS (and a client certificate when it asks for one), and an API key when it checks keys.

use std::path::PathBuf;

use anyhow::Context;
use proto::v1::admin_client::AdminClient;
use proto::v1::search_client::SearchClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::tls::read;

#[derive(clap::Args, Clone)]
pub struct Connection {
    /// The router's address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub router: String,
    /// API key, sent as `authorization: Bearer KEY`.
    #[arg(long, env = "JACOLBERT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// CA certificate (PEM): reach the router over TLS, trusting this CA.
    #[arg(long, env = "JACOLBERT_CA")]
    ca: Option<PathBuf>,
    /// This client's certificate and key (PEM), for a router that requires one.
    #[arg(long, requires = "ca", requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
}

/// Adds the API key to every call.
#[derive(Clone)]
pub struct Key(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Key {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Search = SearchClient<InterceptedService<Channel, Key>>;

impl Connection {
    /// TLS with the CA (and this client's certificate) given, if any: for the router, and for
    /// the shards when this process moves documents itself.
    pub fn tls(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        let Some(ca) = &self.ca else { return Ok(None) };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "CA")?));
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls.identity(Identity::from_pem(read(cert, "certificate")?, read(key, "key")?));
        }
        Ok(Some(tls))
    }

    async fn channel(&self) -> anyhow::Result<(Channel, Key)> {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        let mut endpoint = Channel::from_shared(format!("{scheme}://{}", self.router))?;
        if let Some(tls) = self.tls()? {
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel =
            endpoint.connect().await.with_context(|| format!("connecting to the router at {}", self.router))?;
        let key = match &self.api_key {
            Some(k) => Some(format!("Bearer {k}").parse().context("the API key is not valid header text")?),
            None => None,
        };
        Ok((channel, Key(key)))
    }

    pub async fn search(&self) -> anyhow::Result<Search> {
        let (channel, key) = self.channel().await?;
        Ok(SearchClient::with_interceptor(channel, key).max_decoding_message_size(64 << 20))
    }

    pub async fn admin(&self) -> anyhow::Result<AdminClient<InterceptedService<Channel, Key>>> {
        let (channel, key) = self.channel().await?;
        Ok(AdminClient::with_interceptor(channel, key))
    }
}
