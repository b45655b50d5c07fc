//! What a new user meets in the first hour: each mistake run through the binary gets a message
//! that says what happened and what to do (one table), `--help` text, log files without colour
//! codes or carriage returns, and nodes that advertise (reflection v1 and v1alpha) and report
//! health for exactly the services they serve.

mod common;

use std::process::{Command, Stdio};

use common::{fixtures, free_address, jacolbert, Node};

/// One mistake: the command, and what its stderr must and must not say.
struct Case {
    name: &'static str,
    command: Command,
    succeeds: bool,
    says: Vec<String>,
    never: Vec<&'static str>,
}

fn case(name: &'static str, args: &[&str], says: &[&str], never: &[&'static str]) -> Case {
    let mut command = jacolbert();
    command.args(args);
    Case { name, command, succeeds: false, says: says.iter().map(|s| s.to_string()).collect(), never: never.to_vec() }
}

#[test]
fn each_mistake_gets_a_message_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, router) = common::local(&dir.path().join("cluster"), 1);
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let bad_id = file("bad-id.jsonl", "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": 5, \"text\": \"y\"}\n");
    let not_json = file("not-json.jsonl", "{oops\n");
    let texts = file("texts.json", "{\"queries\": [\"富士山\"], \"documents\": []}");
    let lexical = fixtures().join("models/tiny-lexical");
    let lexical = lexical.to_str().unwrap();
    let config = format!("{lexical}/config.json");
    let taken_dir = dir.path().join("taken").to_str().unwrap().to_string();
    let shard_dir = dir.path().join("shard").to_str().unwrap().to_string();
    let shard_address = free_address();
    let mut first_shard = Node(
        jacolbert()
            .args(["shard", "--data-dir", &shard_dir, "--listen", &shard_address])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_ready(&mut first_shard, &shard_address);

    let mut cases = vec![
        case(
            "an id that is not a string",
            &["index", &bad_id, "--router", "127.0.0.1:1"],
            &["line 2: \"id\" must be a string, not 5 (write \"id\": \"5\")"],
            &["no \"id\""],
        ),
        case("a line that is not JSON", &["index", &not_json], &["line 1 is not JSON", "\"text\": "], &[]),
        case(
            "a model path that does not exist",
            &["encode", "--model", "/nonexistent/models/jacolbert", "--json-texts", &texts, "--out", "/dev/null"],
            &["no such directory", "config.json"],
            &["huggingface-cli", "INFO"],
        ),
        case(
            "a model file, not its directory",
            &["encode", "--model", &config, "--json-texts", &texts, "--out", "/dev/null"],
            &["this is a file", &format!("--model {lexical}")],
            &[],
        ),
        case(
            "a router given as a URL with nothing there",
            &["search", "富士山", "--router", "http://127.0.0.1:1"],
            &["cannot reach the router at 127.0.0.1:1", "Is it running"],
            &["dns", "transport error"],
        ),
        case(
            "a router with a scheme we do not speak",
            &["search", "x", "--router", "ftp://h:1"],
            &["not a ftp:// address"],
            &[],
        ),
        case(
            "a router's port taken by another process",
            &["local", "--model", lexical, "--data-dir", &taken_dir, "--listen", &router],
            &[&format!("cannot listen on {router} (--listen)"), "choose another --listen"],
            &[],
        ),
        case(
            "a data directory in use",
            &["shard", "--data-dir", &shard_dir, "--listen", &free_address()],
            &[&format!("data directory {shard_dir} is in use by another process"), "another --data-dir"],
            &["WouldBlock", "could not acquire lock"],
        ),
        case(
            "no MeCab dictionary anywhere",
            &["tokenize", "--model", lexical],
            &["scripts/fetch-unidic.sh", "pip install unidic-lite", "Python site-packages directories"],
            &["site-packages/unidic_lite"],
        ),
        case(
            "RUST_BACKTRACE alone prints no backtrace",
            &["search", "x", "--router", "127.0.0.1:1"],
            &["error: "],
            &["0: ", "backtrace"],
        ),
        case(
            "JACOLBERT_BACKTRACE=1 prints one",
            &["search", "x", "--router", "127.0.0.1:1"],
            &["error: ", "0: "],
            &["disabled backtrace"],
        ),
    ];
    for c in &mut cases {
        c.command.env("RUST_BACKTRACE", "1").env("RUST_LOG", "info");
        match c.name {
            "no MeCab dictionary anywhere" => {
                c.command.env_remove("JACOLBERT_MECAB_DIC").env_remove("VIRTUAL_ENV").env_remove("CONDA_PREFIX");
                c.command.env("HOME", dir.path()).current_dir(dir.path());
            }
            "JACOLBERT_BACKTRACE=1 prints one" => {
                c.command.env("JACOLBERT_BACKTRACE", "1");
            }
            _ => {}
        }
    }
    let mut index =
        case("indexing into a cluster", &["index", "--router", &router], &["indexed 2/2 documents"], &["\r"]);
    index
        .command
        .arg(file("docs.jsonl", "{\"id\": \"a\", \"text\": \"富士山は高い\"}\n{\"id\": \"b\", \"text\": \"海\"}\n"));
    index.succeeds = true;
    let mut empty = case(
        "a search of an empty cluster",
        &["search", "富士山", "--router", &format!("http://{router}")],
        &["the cluster holds no documents yet", "jacolbert index"],
        &[],
    );
    empty.succeeds = true;
    // The empty cluster first, then indexing into it.
    cases.insert(0, empty);
    cases.push(index);

    let mut failed = Vec::new();
    for mut c in cases {
        let out = c.command.stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let mut wrong = Vec::new();
        if out.status.success() != c.succeeds {
            wrong.push(format!("exit status {}", out.status));
        }
        wrong.extend(c.says.iter().filter(|s| !err.contains(s.as_str())).map(|s| format!("does not say {s:?}")));
        wrong.extend(c.never.iter().filter(|s| err.contains(*s)).map(|s| format!("says {s:?}")));
        if err.contains('\x1b') {
            wrong.push("colour codes in a redirected stderr".into());
        }
        if !c.succeeds && err.matches("error: ").count() != 1 {
            wrong.push("not exactly one `error: ` line".into());
        }
        println!("{:<45} {}", c.name, if wrong.is_empty() { "ok".into() } else { wrong.join("; ") });
        if !wrong.is_empty() {
            failed.push(format!("{}: {}\n--- stderr:\n{err}", c.name, wrong.join("; ")));
        }
    }
    drop(cluster);
    let logs = std::fs::read_to_string(dir.path().join("cluster/local.log")).unwrap();
    assert!(logs.contains("local cluster is up") && !logs.contains('\x1b'), "the cluster's log: {logs}");
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn help_describes_what_new_users_ask_about() {
    let help = |args: &[&str]| {
        let out = jacolbert().args(args).arg("--help").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let search = help(&["search"]);
    assert!(search.contains("How many hits to return") && search.contains("[default: 10]"), "{search}");
    let local = help(&["local"]);
    assert!(local.contains("the encoder and the shards listen on the ports after it"), "{local}");
    assert!(help(&["index"]).contains("[default: 64]"));
}

/// Each node lists exactly its own services through reflection, v1 and v1alpha alike, and its
/// health service answers for each of them.
#[test]
fn nodes_advertise_and_report_only_what_they_serve() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, router) = common::local(dir.path(), 1);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cluster.json")).unwrap()).unwrap();
    let address = |v: &serde_json::Value| v.as_str().unwrap().to_string();
    let (encoder, shard) = (address(&state["encoders"][0]), address(&state["shards"][0]["replicas"][0]["address"]));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let nodes = [
            (router.clone(), vec!["jacolbert.v1.Admin", "jacolbert.v1.Search"]),
            (encoder, vec!["jacolbert.v1.Encoder"]),
            (shard, vec!["jacolbert.v1.Shard"]),
        ];
        for (address, serves) in nodes {
            let channel = tonic::transport::Channel::from_shared(format!("http://{address}")).unwrap();
            let channel = channel.connect().await.unwrap();
            let mut want: Vec<&str> = serves.clone();
            want.extend([
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ]);
            want.sort();
            assert_eq!(list_v1(channel.clone()).await, want, "v1 at {address}");
            assert_eq!(list_v1alpha(channel.clone()).await, want, "v1alpha at {address}");
            if !serves.contains(&"jacolbert.v1.Search") {
                let mut search = proto::v1::search_client::SearchClient::new(channel.clone());
                let refused = search.search(proto::v1::SearchRequest::default()).await.unwrap_err();
                assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
                let said = refused.message();
                assert!(
                    said.contains("jacolbert.v1.Search/Search is not served here") && said.contains(serves[0]),
                    "{said}"
                );
            }
            let mut health = HealthClient::new(channel);
            for service in serves.iter().chain(&[""]) {
                let request = HealthCheckRequest { service: service.to_string() };
                let status = health.check(request).await.unwrap().into_inner().status;
                assert_eq!(status, ServingStatus::Serving as i32, "{service:?} at {address}");
            }
        }
    });
}

macro_rules! list_services {
    ($name:ident, $version:ident) => {
        async fn $name(channel: tonic::transport::Channel) -> Vec<String> {
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::ServerReflectionRequest;
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut client = ServerReflectionClient::new(channel);
            let mut answers = client.server_reflection_info(tokio_stream::once(request)).await.unwrap().into_inner();
            let Some(MessageResponse::ListServicesResponse(list)) =
                answers.message().await.unwrap().unwrap().message_response
            else {
                panic!("not a service list")
            };
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
    };
}
list_services!(list_v1, v1);
list_services!(list_v1alpha, v1alpha);
