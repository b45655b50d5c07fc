//! Filters written as JSON (the command line's `--filter`), read into the wire's `Filter`:
//!
//! ```json
//! {"must": [{"match": {"field": "genre", "any": ["news", "blog"]}},
//!           {"range": {"field": "year", "gte": 2000, "lt": 2010}}],
//!  "should": [{"match": {"field": "lang", "value": "ja"}},
//!             {"range": {"field": "date", "gte": "2024-01-01T00:00:00Z"}}],
//!  "must_not": [{"exists": "draft"}, {"ids": ["d1"]}, {"filter": {"must": […]}}]}
//! ```
//!
//! A match value's JSON type gives its kind (string: keyword, integer, bool); a range bound is a
//! number or an RFC 3339 timestamp string.

use serde_json::{Map, Value as Json};

use crate::v1::{bound, condition, value, Bound, Condition, Filter, Ids, Match, Range, Value};

/// The filter `text` writes, or what is wrong with it.
pub fn parse(text: &str) -> Result<Filter, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("the filter is not valid JSON: {e}"))?;
    filter(&json)
}

fn filter(json: &Json) -> Result<Filter, String> {
    let object = json.as_object().ok_or("a filter is a JSON object with must, should and must_not lists")?;
    let mut out = Filter::default();
    for (key, list) in object {
        let target = match key.as_str() {
            "must" => &mut out.must,
            "should" => &mut out.should,
            "must_not" => &mut out.must_not,
            other => return Err(format!("a filter has must, should and must_not, not {other:?}")),
        };
        let items = list.as_array().ok_or_else(|| format!("{key} is a list of conditions"))?;
        for item in items {
            target.push(Condition { condition: Some(one(item)?) });
        }
    }
    Ok(out)
}

fn one(json: &Json) -> Result<condition::Condition, String> {
    let object = json.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        format!("a condition is one of {{\"match\": …}}, {{\"range\": …}}, {{\"exists\": …}}, {{\"ids\": …}}, {{\"filter\": …}}; got {json}")
    })?;
    let (kind, body) = object.iter().next().expect("one entry");
    Ok(match kind.as_str() {
        "match" => {
            let body = fields(body, "match")?;
            let values: Vec<&Json> = match (body.get("value"), body.get("any")) {
                (Some(v), None) => vec![v],
                (None, Some(Json::Array(list))) => list.iter().collect(),
                _ => return Err("a match has a \"value\" or an \"any\" list".into()),
            };
            let any = values.into_iter().map(match_value).collect::<Result<_, _>>()?;
            condition::Condition::Match(Match { field: field(body, "match")?, any })
        }
        "range" => {
            let body = fields(body, "range")?;
            let edge = |name: &str| body.get(name).map(range_bound).transpose();
            condition::Condition::Range(Range {
                field: field(body, "range")?,
                gt: edge("gt")?,
                gte: edge("gte")?,
                lt: edge("lt")?,
                lte: edge("lte")?,
            })
        }
        "exists" => condition::Condition::Exists(body.as_str().ok_or("exists names a field")?.to_string()),
        "ids" => {
            let ids = body.as_array().and_then(|a| a.iter().map(|v| v.as_str().map(String::from)).collect());
            condition::Condition::Ids(Ids { ids: ids.ok_or("ids is a list of strings")? })
        }
        "filter" => condition::Condition::Filter(filter(body)?),
        other => return Err(format!("unknown condition {other:?}")),
    })
}

fn fields<'a>(json: &'a Json, what: &str) -> Result<&'a Map<String, Json>, String> {
    json.as_object().ok_or_else(|| format!("a {what} is an object with a \"field\""))
}

fn field(body: &Map<String, Json>, what: &str) -> Result<String, String> {
    body.get("field").and_then(Json::as_str).map(String::from).ok_or_else(|| format!("a {what} names its \"field\""))
}

fn match_value(json: &Json) -> Result<Value, String> {
    let kind = match json {
        Json::String(s) => value::Kind::Keyword(s.clone()),
        Json::Bool(b) => value::Kind::Boolean(*b),
        Json::Number(n) => value::Kind::Integer(n.as_i64().ok_or_else(|| format!("match on {n}: only integers"))?),
        other => return Err(format!("a match value is a string, an integer or a bool, not {other}")),
    };
    Ok(Value { kind: Some(kind) })
}

fn range_bound(json: &Json) -> Result<Bound, String> {
    let value = match json {
        Json::Number(n) => bound::Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => bound::Value::Timestamp(s.clone()),
        other => return Err(format!("a range bound is a number or an RFC 3339 timestamp, not {other}")),
    };
    Ok(Bound { value: Some(value) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_filters_read_into_the_wire_filter() {
        let f = parse(
            r#"{"must": [{"match": {"field": "g", "any": ["a", 3, true]}}, {"range": {"field": "y", "gte": 2000, "lt": "2024-01-01T00:00:00Z"}}],
                "should": [{"exists": "x"}], "must_not": [{"ids": ["d1"]}, {"filter": {"must": [{"match": {"field": "z", "value": "q"}}]}}]}"#,
        )
        .unwrap();
        let Some(condition::Condition::Match(m)) = &f.must[0].condition else { panic!("{f:?}") };
        let kinds: Vec<_> = m.any.iter().map(|v| v.kind.clone().unwrap()).collect();
        assert_eq!(kinds, [value::Kind::Keyword("a".into()), value::Kind::Integer(3), value::Kind::Boolean(true)]);
        let Some(condition::Condition::Range(r)) = &f.must[1].condition else { panic!("{f:?}") };
        assert_eq!(r.gte.clone().unwrap().value, Some(bound::Value::Number(2000.0)));
        assert_eq!(r.lt.clone().unwrap().value, Some(bound::Value::Timestamp("2024-01-01T00:00:00Z".into())));
        assert!(r.gt.is_none() && r.lte.is_none());
        assert_eq!(f.should[0].condition, Some(condition::Condition::Exists("x".into())));
        assert!(matches!(&f.must_not[1].condition, Some(condition::Condition::Filter(inner)) if inner.must.len() == 1));
        for (bad, why) in [
            ("[]", "JSON object"),
            (r#"{"maybe": []}"#, "not \"maybe\""),
            (r#"{"must": [{"match": {"field": "g"}}]}"#, "\"value\" or an \"any\""),
            (r#"{"must": [{"match": {"value": 1}}]}"#, "names its \"field\""),
            (r#"{"must": [{"match": {"field": "g", "value": 1.5}}]}"#, "only integers"),
            (r#"{"must": [{"near": {}}]}"#, "unknown condition"),
            (r#"{"must": [{"range": {"field": "y", "gt": []}}]}"#, "number or an RFC 3339"),
            ("{", "not valid JSON"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
