//! The web console's files, built into the binary (no Node toolchain: plain HTML, CSS and
//! JavaScript that call the JSON API of the same port). One page; `#/search` and `#/cluster`
//! pick the view, and the search view's query and k live in the address (`#/search?q=…&k=10`)
//! so that a search can be linked to.

use bytes::Bytes;
use http_body_util::Full;
use tonic::codegen::http::{self, header, HeaderValue};

const FILES: [(&str, &str, &str); 3] = [
    ("/", "text/html; charset=utf-8", include_str!("console/index.html")),
    ("/console.js", "text/javascript; charset=utf-8", include_str!("console/console.js")),
    ("/console.css", "text/css; charset=utf-8", include_str!("console/console.css")),
];

/// The console's file at `path`, if it has one.
pub fn file(path: &str) -> Option<http::Response<Full<Bytes>>> {
    let path = if path == "/index.html" { "/" } else { path };
    let (_, kind, text) = FILES.iter().find(|(p, _, _)| *p == path)?;
    let mut reply = http::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Scripts only from this port, and nothing framed: the page handles API keys.
    reply.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    reply.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(reply)
}
