//! The web console in a real headless Chromium (Debian's `chromium`), driven over the DevTools
//! protocol on a pipe (`--remote-debugging-pipe`: JSON messages ended by NUL on fds 3 and 4, no
//! port and no WebSocket). Against a cluster of separate processes with API keys and JSQuAD
//! paragraphs: the console asks for a key and shows the API's error without one; a question
//! typed and sent with Enter shows the API's hits in its order, each with exactly the spans
//! its explanation names marked; hovering a query token marks the document tokens it matched;
//! the cluster page marks a killed shard as down. Screenshots go to
//! `target/console-screenshots/` (or `$JACOLBERT_SCREENSHOTS`: scripts/console_screenshots.sh
//! refreshes the README's).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{fixtures, free_address, post, wait_listening, Cluster, KEYS};
use serde_json::{json, Value};

/// A pipe whose two ends sit at fds ≥ 10 (close-on-exec), clear of the 3 and 4 the browser's
/// end is moved to.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let high = |fd: i32| {
        let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        assert!(moved >= 10);
        unsafe { libc::close(fd) };
        unsafe { OwnedFd::from_raw_fd(moved) }
    };
    (high(fds[0]), high(fds[1]))
}

struct Browser {
    child: Child,
    commands: std::fs::File,
    replies: mpsc::Receiver<Value>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (their_in, our_out) = pipe();
        let (our_in, their_out) = pipe();
        let mut command = Command::new("chromium");
        command
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-extensions", "--disable-sync", "--mute-audio"])
            .args(["--hide-scrollbars", "--window-size=1280,1100", "--lang=ja"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (r, w) = (their_in.as_raw_fd(), their_out.as_raw_fd());
        // SAFETY: only dup2 between fork and exec; the fds stay open until after the spawn.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("chromium runs (Debian: apt-get install chromium)");
        drop((their_in, their_out));
        let (send, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut from = std::io::BufReader::new(std::fs::File::from(our_in));
            let mut message = Vec::new();
            while from.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop();
                if let Ok(value) = serde_json::from_slice(&message) {
                    if send.send(value).is_err() {
                        return;
                    }
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands: std::fs::File::from(our_out),
            replies,
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}));
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.call("Page.enable", json!({}));
        browser
    }

    /// One DevTools command (on the page once attached); its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let mut message = json!({"id": self.next, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self.replies.recv_timeout(left).unwrap_or_else(|_| panic!("{method}: no answer"));
            if reply["id"] == self.next {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.call("Runtime.evaluate", params);
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    fn wait_for(&mut self, expression: &str) -> Value {
        let start = Instant::now();
        loop {
            let value = self.eval(expression);
            if !value.is_null() && value != false {
                return value;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "waited 30 s for {expression}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for("document.readyState === 'complete' && !!document.getElementById('hits')");
    }

    /// Clicks into the element, types `text` as keyboard input would, then presses Enter.
    fn type_into(&mut self, selector: &str, text: &str, enter: bool) {
        self.eval(&format!("document.querySelector({selector:?}).focus()"));
        self.call("Input.insertText", json!({"text": text}));
        if enter {
            for kind in ["keyDown", "keyUp"] {
                let key =
                    json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"});
                self.call("Input.dispatchKeyEvent", key);
            }
        }
    }

    /// Moves the mouse over the middle of the element.
    fn hover(&mut self, selector: &str) {
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector:?}); e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        self.call("Input.dispatchMouseEvent", json!({"type": "mouseMoved", "x": at[0], "y": at[1]}));
    }

    fn screenshot(&mut self, name: &str) {
        let dir = std::env::var_os("JACOLBERT_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"));
        std::fs::create_dir_all(&dir).unwrap();
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

/// The first `n` JSQuAD paragraphs (id, title, text) and a question about each.
fn jsquad(n: usize) -> Vec<(String, String, String, String)> {
    let file = std::fs::read(fixtures().join("jsquad/jsquad-valid-v1.1.json")).unwrap();
    let data: Value = serde_json::from_slice(&file).unwrap();
    let mut out = Vec::new();
    for article in data["data"].as_array().unwrap() {
        for (p, paragraph) in article["paragraphs"].as_array().unwrap().iter().enumerate() {
            let title = article["title"].as_str().unwrap();
            let question = paragraph["qas"][0]["question"].as_str().unwrap();
            let text = paragraph["context"].as_str().unwrap();
            out.push((format!("{title}-{p}"), title.to_string(), text.to_string(), question.to_string()));
        }
    }
    out.truncate(n);
    out
}

/// The texts the console must mark in a hit: each distinct span of its explanation, in text
/// order, a span that overlaps the one before it going into that one's mark.
fn expected_marks(hit: &Value) -> Vec<String> {
    let chars: Vec<char> = hit["document"]["text"].as_str().unwrap().chars().collect();
    let field = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0) as usize;
    let mut spans: Vec<(usize, usize)> = hit["explanation"]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["span"].is_object())
        .map(|m| (field(&m["span"], "start"), field(&m["span"], "end")))
        .filter(|&(s, e)| e > s && e <= chars.len())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    spans.sort_by_key(|&(s, e)| (s, std::cmp::Reverse(e)));
    let mut at = 0;
    let mut marks = Vec::new();
    for (s, e) in spans {
        if s >= at {
            marks.push(chars[s..e].iter().collect());
            at = e;
        }
    }
    marks
}

#[test]
fn the_console_searches_explains_and_shows_a_shard_down_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let web = free_address();
    let mut c = Cluster::start_with_http(dir.path(), 2, &web, "", KEYS, "");
    wait_listening(&web);
    let paragraphs = jsquad(150);
    let docs: Vec<Value> = paragraphs
        .iter()
        .map(|(id, title, text, _)| json!({"id": id, "text": text, "metadata": json!({"title": title}).to_string()}))
        .collect();
    let (status, body) = post(&web, "/v1/upsert", Some("rw-secret"), json!({"documents": docs}));
    assert_eq!(status, 200, "{body}");

    let mut browser = Browser::launch();
    browser.navigate(&format!("http://{web}/#/search"));
    // Without a key the console shows the API's own refusal.
    browser.type_into("#query", "梅雨", true);
    browser.wait_for("document.body.dataset.state === 'error'");
    let error = browser.eval("document.getElementById('search-error').textContent");
    assert!(error.as_str().unwrap().starts_with("Unauthenticated: missing API key"), "{error}");

    browser.type_into("#api-key", "ro-secret", false);
    let mut last = Vec::new();
    for (_, _, _, question) in paragraphs.iter().step_by(37) {
        browser.eval("document.getElementById('query').value = ''");
        browser.type_into("#query", question, true);
        let shown = browser.wait_for(&format!(
            "document.body.dataset.state === 'hits' && document.getElementById('hits').dataset.query === {question:?} && \
             [...document.querySelectorAll('#hits > li')].map(li => ({{id: li.dataset.id, \
             marks: [...li.querySelectorAll('mark')].map(m => m.textContent)}}))"
        ));
        let asked = json!({"query": question, "k": 10, "include": {"text": true, "metadata": true}, "explain": true});
        let (status, answer) = post(&web, "/v1/search", Some("ro-secret"), asked);
        assert_eq!(status, 200, "{answer}");
        let hits = answer["hits"].as_array().unwrap();
        assert_eq!(shown.as_array().unwrap().len(), hits.len(), "{question}: {shown}");
        for (shown, hit) in shown.as_array().unwrap().iter().zip(hits) {
            assert_eq!(shown["id"], hit["id"], "{question}: the console's order is the API's");
            let marks: Vec<String> = serde_json::from_value(shown["marks"].clone()).unwrap();
            assert_eq!(marks, expected_marks(hit), "{question}: {}", hit["id"]);
            assert!(!marks.is_empty(), "{question}: {} has no marked token", hit["id"]);
        }
        last = hits.clone();
    }
    assert_eq!(last.len(), 10);

    // Hovering a query token marks the document token it matched in every hit (and only
    // that): its chip, and in each hit the one mark of that token's span, if it has one.
    let chip = "#query-tokens .qtoken:not(.expansion):nth-child(3)";
    let q: u64 =
        browser.eval(&format!("document.querySelector({chip:?}).dataset.q")).as_str().unwrap().parse().unwrap();
    browser.hover(chip);
    let focused = browser.wait_for(&format!(
        "document.querySelector({chip:?}).classList.contains('focus') && \
         [...document.querySelectorAll('#hits > li')].map(li => [...li.querySelectorAll('mark.focus')].length)"
    ));
    let per_hit: Vec<usize> = serde_json::from_value(focused).unwrap();
    let spanned = |hit: &Value| {
        let matches = hit["explanation"]["matches"].as_array().unwrap();
        let m = matches.iter().find(|m| m["queryToken"].as_u64().unwrap_or(0) == q).unwrap();
        m["span"].is_object() as usize
    };
    assert_eq!(per_hit, last.iter().map(spanned).collect::<Vec<_>>(), "marks focused per hit, query token {q}");
    assert!(per_hit.iter().sum::<usize>() > 0);
    browser.screenshot("search.png");

    // One shard down: the cluster page marks its replica, and only it.
    let killed = c.shard_addresses[1][0].clone();
    c.shards[1][0].take();
    browser.navigate(&format!("http://{web}/#/cluster"));
    let down = browser.wait_for(
        "document.body.dataset.state === 'cluster' && document.querySelector('#shards tr.down') && \
         [...document.querySelectorAll('#shards tr.down')].map(r => r.dataset.replica)",
    );
    assert_eq!(down, json!([killed]));
    let summary = browser.eval("document.getElementById('cluster-summary').textContent");
    assert!(summary.as_str().unwrap().contains("1 replicas not answering"), "{summary}");
    let up = browser.eval("document.querySelector('#shards tr:not(.down) .state').textContent");
    assert_eq!(up, "in_sync");
    browser.wait_for("document.getElementById('latency').textContent.includes('searches')");
    browser.screenshot("cluster.png");
}
