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
    /// The router's address, HOST:PORT (as `jacolbert local` or `router` prints it).
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
    /// The private key (PEM) of --cert.
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

    /// `--router` as HOST:PORT; an `http://` in front is taken off, an `https://` asks for `--ca`.
    fn address(&self) -> anyhow::Result<&str> {
        match self.router.split_once("://") {
            None => Ok(&self.router),
            Some(("http", rest)) => Ok(rest.trim_end_matches('/')),
            Some(("https", rest)) if self.ca.is_some() => Ok(rest.trim_end_matches('/')),
            Some(("https", _)) => {
                anyhow::bail!(
                    "--router {}: TLS needs --ca CA.pem, the CA that signed the router's certificate",
                    self.router
                )
            }
            Some((scheme, _)) => anyhow::bail!(
                "--router {}: give the router's HOST:PORT (e.g. 127.0.0.1:50051), not a {scheme}:// address",
                self.router
            ),
        }
    }

    async fn channel(&self) -> anyhow::Result<(Channel, Key)> {
        let address = self.address()?;
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        let mut endpoint = Channel::from_shared(format!("{scheme}://{address}"))
            .map_err(|_| anyhow::anyhow!("--router {address}: not a HOST:PORT address (e.g. 127.0.0.1:50051)"))?;
        if let Some(tls) = self.tls()? {
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            // tonic's own words are "transport error"; what failed underneath is the news.
            let cause = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source()).last().unwrap();
            anyhow::anyhow!(
                "cannot reach the router at {address}: {cause}. Is it running (`jacolbert local` or `jacolbert \
                 router`), and is --router its address?"
            )
        })?;
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

/// A refusal from the router, in the user's terms: what it said and, where one helps, what to do.
pub fn refused(status: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let hint = match status.code() {
        Code::Unauthenticated => " (pass --api-key KEY or set JACOLBERT_API_KEY)",
        Code::PermissionDenied => " (this API key's role does not allow it)",
        Code::Unavailable => " (the router, or every replica of a shard behind it, is not answering: is it running?)",
        Code::DeadlineExceeded => {
            " (the cluster did not answer in time: it is overloaded, or the deadline is too short)"
        }
        _ => "",
    };
    anyhow::anyhow!("the router answered {:?}: {}{hint}", status.code(), status.message())
}
