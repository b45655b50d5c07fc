//! TLS between every node and mutual TLS between the router and the nodes, with certificates
//! from `jacolbert certs`, every node its own process: the happy path works end to end over
//! TLS with API keys (from a gRPC client and from `jacolbert search`); a client without a certificate from the cluster CA (none, or one from another CA)
//! cannot reach a shard; plain text is refused; the router's HTTP port takes the same TLS; the production profile refuses to start
//! without TLS and keys.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{documents, jacolbert, request, with_key, Cluster, KEYS};
use proto::v1::search_client::SearchClient;
use proto::v1::shard_client::ShardClient;
use proto::v1::{StatsRequest, UpsertRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn certs(dir: &Path, name: &str) {
    let out = jacolbert().args(["certs", "--out", dir.to_str().unwrap(), "--name", name]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Private keys are for their owner's eyes only.
    for key in ["ca.key".to_string(), format!("{name}.key")] {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join(&key)).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
}

fn pem(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

async fn channel(address: &str, tls: Option<ClientTlsConfig>) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{address}")).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    endpoint.connect().await
}

/// Stats from a shard over `tls`: whether the call got through.
async fn reaches_shard(address: &str, tls: Option<ClientTlsConfig>) -> bool {
    match channel(address, tls).await {
        Ok(channel) => ShardClient::new(channel).stats(StatsRequest {}).await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_between_nodes_and_only_cluster_certificates_reach_a_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster_ca, rogue_ca) = (dir.path().join("certs"), dir.path().join("rogue"));
    certs(&cluster_ca, "node");
    certs(&cluster_ca, "client");
    certs(&rogue_ca, "client");
    let file = |name: &str| cluster_ca.join(name).to_str().unwrap().to_string();
    let tls =
        format!("[tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\n", file("node.pem"), file("node.key"), file("ca.pem"));
    let web = common::free_address();
    let c = Cluster::start_with_http(dir.path(), 2, &web, "", KEYS, &tls);

    // The happy path: a client trusting the cluster CA, with a client certificate, through the
    // router to the encoder and the shards, all over mutual TLS.
    let ca = Certificate::from_pem(pem(&cluster_ca, "ca.pem"));
    let client_tls = |ca_dir: &Path| {
        ClientTlsConfig::new()
            .ca_certificate(ca.clone())
            .identity(Identity::from_pem(pem(ca_dir, "client.pem"), pem(ca_dir, "client.key")))
    };
    let mut client = SearchClient::new(channel(&c.router, Some(client_tls(&cluster_ca))).await.unwrap());
    client.upsert(with_key(UpsertRequest { documents: documents(20) }, "rw-secret")).await.unwrap();
    let answer = client.search(with_key(request("富士山", 5, None), "ro-secret")).await.unwrap().into_inner();
    assert_eq!((answer.shards_ok, answer.hits.len()), (2, 5));
    // The same through the command line client.
    let out = jacolbert()
        .args(["search", "富士山", "-k", "3", "--json", "--router", &c.router, "--api-key", "ro-secret"])
        .args(["--ca", &file("ca.pem"), "--cert", &file("client.pem"), "--key", &file("client.key")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["hits"].as_array().unwrap().len(), 3);

    // The HTTP port: the same TLS and mutual TLS (curl as the client).
    let curl = |args: &[&str], scheme: &str| {
        let url = format!("{scheme}://{web}/v1/search");
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", "-H", "authorization: Bearer ro-secret"])
            .args(["-d", r#"{"query": "富士山", "k": 3}"#, "--cacert", &file("ca.pem")])
            .args(args)
            .arg(url)
            .output()
            .expect("curl runs");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    common::wait_listening(&web);
    let (ok, body) = curl(&["--cert", &file("client.pem"), "--key", &file("client.key")], "https");
    assert!(ok, "HTTPS with a cluster certificate: {body}");
    let said: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(said["hits"].as_array().unwrap().len(), 3);
    assert!(!curl(&[], "https").0, "HTTPS without a client certificate");
    assert!(!curl(&[], "http").0, "plain HTTP");

    let shard = &c.shard_addresses[0][0];
    assert!(reaches_shard(shard, Some(client_tls(&cluster_ca))).await, "a cluster certificate must get through");
    assert!(!reaches_shard(shard, Some(ClientTlsConfig::new().ca_certificate(ca.clone()))).await, "no certificate");
    assert!(!reaches_shard(shard, Some(client_tls(&rogue_ca))).await, "a certificate from another CA");
    assert!(!reaches_shard(shard, None).await, "plain text");
}

#[test]
fn the_production_profile_refuses_to_start_without_tls_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    for (role, config) in
        [("shard", "profile = \"production\"\n".to_string()), ("router", "profile = \"production\"\n".to_string())]
    {
        let file = dir.path().join(format!("{role}.toml"));
        std::fs::write(&file, config).unwrap();
        let out = jacolbert()
            .args([role, "--config", file.to_str().unwrap(), "--listen", &common::free_address()])
            .args(if role == "shard" { vec!["--data-dir", dir.path().to_str().unwrap()] } else { vec![] })
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && said.contains("production profile needs TLS"), "{role}: {said}");
    }
    // TLS alone is not enough for a router: it also needs API keys.
    let certs_dir = dir.path().join("certs");
    certs(&certs_dir, "node");
    let f = |n: &str| certs_dir.join(n).to_str().unwrap().to_string();
    let config = format!(
        "profile = \"production\"\n[tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\n",
        f("node.pem"),
        f("node.key"),
        f("ca.pem")
    );
    let file = dir.path().join("router.toml");
    std::fs::write(&file, config).unwrap();
    let out = jacolbert()
        .args(["router", "--config", file.to_str().unwrap(), "--listen", &common::free_address()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("needs API keys"), "{said}");
}
