//! Search for applications, through separate processes with the index trained (a low
//! `train_tokens`, so the compressed path runs): hits that carry text and metadata, Get of many
//! ids, metadata filters of every kind and their nesting (the answer must hold exactly the
//! matching documents when k covers them all), delete by filter, bad metadata and bad filters,
//! the parameter bounds, admission for searches and SearchBatch, and partial answers under long
//! deadlines while a shard is frozen.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{fixtures, jacolbert, request, Cluster};
use proto::v1::search_client::SearchClient;
use proto::v1::{
    ClusterStatsRequest, DeleteRequest, Document, GetRequest, Include, SearchBatchRequest, SearchParams, SearchRequest,
    UpsertRequest,
};
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

const DOCS: usize = 240;

/// JSQuAD paragraphs with metadata made from their number: most fields on every document but
/// each tenth, which has none.
fn paragraphs() -> Vec<(String, String, Value)> {
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("jsquad/jsquad-valid-v1.1.json")).unwrap())
            .unwrap();
    let texts =
        data["data"].as_array().unwrap().iter().flat_map(|a| {
            let title = a["title"].as_str().unwrap().to_string();
            a["paragraphs"].as_array().unwrap().iter().map(move |p| {
                (title.clone(), p["context"].as_str().unwrap().split(" [SEP] ").last().unwrap().to_string())
            })
        });
    texts
        .take(DOCS)
        .enumerate()
        .map(|(i, (title, text))| {
            let metadata = match i % 10 {
                9 => Value::Null,
                _ => json!({
                    "title": title, "n": i, "even": i % 2 == 0, "tags": ["all", format!("t{}", i % 5)],
                    "when": format!("2024-01-{:02}T{:02}:00:00Z", 1 + i / 24, i % 24), "group": {"g": format!("g{}", i % 3)},
                }),
            };
            (format!("p{i}"), text, metadata)
        })
        .collect()
}

/// Which paragraphs `keep` (on each one's number and metadata) selects, as ids.
fn expected(docs: &[(String, String, Value)], keep: impl Fn(usize, &Value) -> bool) -> BTreeSet<String> {
    docs.iter().enumerate().filter(|(i, d)| keep(*i, &d.2)).map(|(_, d)| d.0.clone()).collect()
}

fn filtered(filter: &str, k: u32) -> SearchRequest {
    SearchRequest {
        filter: Some(proto::filter_json::parse(filter).unwrap()), ..request("日本の歴史", k, Some(false))
    }
}

async fn hit_ids(router: &mut SearchClient<Channel>, r: SearchRequest) -> BTreeSet<String> {
    let answer = router.search(r).await.unwrap().into_inner();
    assert!(!answer.partial, "{:?}", answer.failures);
    answer.hits.into_iter().map(|h| h.id).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_in_hits_filters_bounds_and_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let limits = "[limits]\nmax_concurrent = 4\nmax_queue_ms = 100\nmax_nprobe = 64\nmax_candidates = 4096\n";
    let c = Cluster::start_with(dir.path(), 2, 1, "train_tokens = 2000\nmax_exact_documents = 50", limits, "");
    let mut router = c.client().await;

    // `jacolbert index` keeps metadata objects as they are.
    let docs = paragraphs();
    let lines: String =
        docs.iter().map(|(id, text, m)| json!({"id": id, "text": text, "metadata": m}).to_string() + "\n").collect();
    let file = dir.path().join("paragraphs.jsonl");
    std::fs::write(&file, lines).unwrap();
    let out =
        jacolbert().args(["index", file.to_str().unwrap(), "--batch", "40", "--router", &c.router]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = router.stats(ClusterStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.documents, DOCS as u64);
    assert!(stats.shards.iter().all(|s| s.trained), "the compressed path runs: {:?}", stats.shards);

    // `jacolbert retrain`: every replica starts a retraining in the background (or has one
    // running already: outgrown, they retrain by themselves); once they are
    // done each serves a newer codec, and a search answers as before (exact re-scoring against
    // the originals does not depend on the codec). An unknown shard is refused by name.
    let hits = |a: proto::v1::SearchResponse| a.hits.into_iter().map(|h| h.id).collect::<Vec<_>>();
    let before = hits(router.search(request("日本の歴史", 5, None)).await.unwrap().into_inner());
    let out = jacolbert().args(["retrain", "--router", &c.router]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let answered = said.matches("retraining started").count() + said.matches("already retraining").count();
    assert!(out.status.success() && answered == 2, "{said}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = router.stats(ClusterStatsRequest {}).await.unwrap().into_inner();
        let newer = now.shards.iter().zip(&stats.shards).all(|(n, b)| n.codec_generation > b.codec_generation);
        if newer && now.shards.iter().all(|s| !s.retraining) {
            assert_eq!(now.documents, DOCS as u64);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the retrainings never finished: {:?}", now.shards);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(hits(router.search(request("日本の歴史", 5, None)).await.unwrap().into_inner()), before);
    let out = jacolbert().args(["retrain", "--router", &c.router, "--shard", "999"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no shard 999"));

    // Hits carry what `include` asks for, and nothing by default.
    let both = Include { text: true, metadata: true };
    let answer = router
        .search(SearchRequest { include: Some(both), ..request("日本の歴史", 5, None) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.hits.len(), 5);
    for h in &answer.hits {
        let d = h.document.as_ref().unwrap();
        let want = docs.iter().find(|x| x.0 == h.id).unwrap();
        assert_eq!(d.text, want.1);
        let metadata: Value =
            if d.metadata.is_empty() { Value::Null } else { serde_json::from_str(&d.metadata).unwrap() };
        assert_eq!(metadata, want.2, "{}", h.id);
    }
    let text_only = Include { text: true, metadata: false };
    let answer =
        router.search(SearchRequest { include: Some(text_only), ..request("日本の歴史", 3, None) }).await.unwrap();
    assert!(answer
        .get_ref()
        .hits
        .iter()
        .all(|h| h.document.as_ref().is_some_and(|d| !d.text.is_empty() && d.metadata.is_empty())));
    let answer = router.search(request("日本の歴史", 3, None)).await.unwrap().into_inner();
    assert!(answer.hits.iter().all(|h| h.document.is_none()));

    // Get of many ids: those that exist in order, the others listed; one id as before.
    let many = GetRequest { id: String::new(), ids: vec!["p7".into(), "nope".into(), "p3".into()] };
    let got = router.get(many).await.unwrap().into_inner();
    assert_eq!(got.documents.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["p7", "p3"]);
    assert_eq!((got.missing, got.documents[1].text.as_str()), (vec!["nope".to_string()], docs[3].1.as_str()));
    assert_eq!(
        router.get(GetRequest { id: "p1".into(), ids: vec![] }).await.unwrap().into_inner().document.unwrap().text,
        docs[1].1
    );
    let too_many = GetRequest { id: String::new(), ids: (0..300).map(|i| format!("p{i}")).collect() };
    assert_eq!(router.get(too_many).await.unwrap_err().code(), Code::InvalidArgument);

    // Each operator and their nesting: with k above the collection, the answer is exactly the
    // documents the filter matches.
    let n = |m: &Value| m["n"].as_u64();
    let tag = |m: &Value, t: &str| m["tags"].as_array().is_some_and(|a| a.iter().any(|x| x == t));
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        (r#"{"must": [{"match": {"field": "tags", "value": "t3"}}]}"#, expected(&docs, |_, m| tag(m, "t3"))),
        (
            r#"{"must": [{"match": {"field": "tags", "any": ["t1", "t2"]}}]}"#,
            expected(&docs, |_, m| tag(m, "t1") || tag(m, "t2")),
        ),
        (r#"{"must": [{"match": {"field": "n", "value": 42}}]}"#, expected(&docs, |i, m| n(m).is_some() && i == 42)),
        (
            r#"{"must": [{"match": {"field": "even", "value": true}}]}"#,
            expected(&docs, |i, m| !m.is_null() && i % 2 == 0),
        ),
        (
            r#"{"must": [{"range": {"field": "n", "gte": 100, "lt": 130}}]}"#,
            expected(&docs, |_, m| n(m).is_some_and(|n| (100..130).contains(&n))),
        ),
        (
            r#"{"must": [{"range": {"field": "when", "gte": "2024-01-03T00:00:00Z", "lte": "2024-01-03T23:00:00+09:00"}}]}"#,
            expected(&docs, |i, m| !m.is_null() && (48..=62).contains(&i)),
        ),
        (r#"{"must": [{"exists": "title"}]}"#, expected(&docs, |_, m| !m.is_null())),
        (r#"{"must_not": [{"exists": "title"}]}"#, expected(&docs, |_, m| m.is_null())),
        (
            r#"{"must": [{"ids": ["p1", "p2", "p9", "zz"]}]}"#,
            ["p1", "p2", "p9"].iter().map(|s| s.to_string()).collect(),
        ),
        (
            r#"{"must": [{"match": {"field": "group.g", "value": "g1"}}], "must_not": [{"match": {"field": "even", "value": true}}]}"#,
            expected(&docs, |i, m| !m.is_null() && i % 3 == 1 && i % 2 == 1),
        ),
        (
            r#"{"should": [{"match": {"field": "n", "value": 5}}, {"filter": {"must": [{"match": {"field": "tags", "value": "t0"}}, {"range": {"field": "n", "lt": 40}}]}}]}"#,
            expected(&docs, |i, m| n(m).is_some() && (i == 5 || (i % 5 == 0 && i < 40))),
        ),
    ];
    for (filter, want) in &cases {
        assert!(!want.is_empty() || filter.contains("zz"), "{filter} selects something");
        assert_eq!(&hit_ids(&mut router, filtered(filter, 300)).await, want, "{filter}");
    }
    // filter_ids still works, and holds together with a filter.
    let both = SearchRequest { filter_ids: vec!["p0".into(), "p1".into()], ..filtered(cases[3].0, 300) };
    assert_eq!(hit_ids(&mut router, both).await, ["p0".to_string()].into());
    // At k = 10 the best matches come first: each a match, and as many as asked.
    let top = hit_ids(&mut router, filtered(cases[0].0, 10)).await;
    assert!(top.len() == 10 && top.is_subset(&cases[0].1), "{top:?}");
    // The command line: --filter and --include.
    let out = jacolbert()
        .args(["search", "日本の歴史", "-k", "300", "--json", "--include", "text,metadata", "--router", &c.router])
        .args(["--filter", cases[4].0])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: BTreeSet<String> =
        printed["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, cases[4].1);
    assert!(printed["hits"][0]["metadata"]["n"].is_u64(), "{printed}");

    // Bad metadata and bad filters: INVALID_ARGUMENT naming the document or the field; nothing
    // changes.
    let doc = |metadata: &str| Document { id: "bad".into(), text: "悪い".into(), metadata: metadata.into() };
    for (metadata, why) in [
        ("[1, 2]", "\"bad\": metadata must be a JSON object"),
        ("{nope", "\"bad\": metadata is not valid JSON"),
        (r#"{"n": "many"}"#, "\"n\" is number"),
    ] {
        let status = router.upsert(UpsertRequest { documents: vec![doc(metadata)] }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{metadata}");
        assert!(status.message().contains(why), "{metadata}: {}", status.message());
    }
    for (filter, why) in [
        (r#"{"must": [{"match": {"field": "n", "value": "five"}}]}"#, "\"n\" with a keyword value"),
        (r#"{"must": [{"range": {"field": "title", "gt": 3}}]}"#, "holds keyword"),
        (r#"{"must": [{"range": {"field": "when", "gt": "tomorrow"}}]}"#, "not an RFC 3339"),
        (r#"{"must": [{"range": {"field": "n"}}]}"#, "no bound"),
    ] {
        let status = router.search(filtered(filter, 10)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{filter}");
        assert!(status.message().contains(why), "{filter}: {}", status.message());
    }

    // Bounded parameters: each refused with the limit, never an OK answer with no hits.
    let with = |params: SearchParams| SearchRequest { params: Some(params), ..request("日本", 10, None) };
    for (params, why) in [
        (SearchParams { nprobe: 100_000, ..Default::default() }, "nprobe 100000 is above the limit of 64"),
        (SearchParams { candidates: 10_000_000, ..Default::default() }, "above the limit of 4096"),
        (SearchParams { exact: true, ..Default::default() }, "max_exact_documents = 50"),
    ] {
        let status = router.search(with(params)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{params:?}");
        assert!(status.message().contains(why), "{params:?}: {}", status.message());
    }

    // Delete by filter: what it matched is gone, the rest stays.
    let gone = expected(&docs, |_, m| tag(m, "t4"));
    let by_filter = DeleteRequest {
        ids: vec![],
        version: 0,
        filter: Some(proto::filter_json::parse(cases[0].0.replace("t3", "t4").as_str()).unwrap()),
    };
    assert_eq!(router.delete(by_filter).await.unwrap().into_inner().deleted as usize, gone.len());
    assert!(hit_ids(&mut router, filtered(&cases[0].0.replace("t3", "t4"), 300)).await.is_empty());
    let stats = router.stats(ClusterStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.documents as usize, DOCS - gone.len());

    // A frozen shard: searches under 15 s and 30 s deadlines come back partial before them; while
    // they hold two of the four slots and two more hold the rest, a fifth search and a batch
    // wait 100 ms for a slot and are refused.
    let frozen = c.shards[1][0].as_ref().unwrap();
    frozen.signal("STOP");
    let timed = |seconds: u64| {
        let mut router = router.clone();
        tokio::spawn(async move {
            let mut call = tonic::Request::new(request("日本", 10, None));
            call.set_timeout(Duration::from_secs(seconds));
            let started = Instant::now();
            let answer = router.search(call).await;
            (seconds, started.elapsed(), answer.map(|a| a.into_inner()))
        })
    };
    let waiting: Vec<_> = [15, 30, 6, 6].into_iter().map(timed).collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let refused = router.search(request("日本", 10, None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let batch = SearchBatchRequest { requests: vec![request("日本", 5, None), request("京都", 5, None)] };
    assert_eq!(router.search_batch(batch).await.unwrap_err().code(), Code::ResourceExhausted);
    for task in waiting {
        let (seconds, took, answer) = task.await.unwrap();
        let answer = answer.unwrap_or_else(|e| panic!("{seconds} s deadline: {e:?}"));
        assert!(answer.partial && answer.timed_out && answer.shards_ok == 1, "{seconds} s: {answer:?}");
        assert!(took < Duration::from_secs(seconds), "{seconds} s deadline answered after {took:?}");
        println!("{seconds} s deadline: partial answer after {took:?}");
    }
    frozen.signal("CONT");
    // A batch of more searches than slots still runs once they are free.
    let batch = SearchBatchRequest { requests: (0..3).map(|_| request("日本", 5, None)).collect() };
    assert_eq!(router.search_batch(batch).await.unwrap().into_inner().responses.len(), 3);
}
