//! A document's metadata: a JSON object, flattened to (path, scalar) pairs. `{"a": {"b": 1},
//! "tags": ["x", "y"]}` is `a.b = 1`, `tags = "x"`, `tags = "y"`; nulls are left out. Each field
//! has one kind: keyword (strings, which may be RFC 3339 timestamps), number (integers and
//! floats, compared as f64) or bool.

use serde_json::Value;

/// The kind of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Keyword,
    Number,
    Bool,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Keyword => "keyword",
            Kind::Number => "number",
            Kind::Bool => "bool",
        }
    }
}

/// One value of a field, ordered within its kind (numbers by their f64 total order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scalar {
    Bool(bool),
    Number(OrderedNumber),
    Keyword(String),
}

impl Scalar {
    pub fn kind(&self) -> Kind {
        match self {
            Scalar::Bool(_) => Kind::Bool,
            Scalar::Number(_) => Kind::Number,
            Scalar::Keyword(_) => Kind::Keyword,
        }
    }

    pub fn number(x: f64) -> Scalar {
        Scalar::Number(OrderedNumber::new(x))
    }
}

/// An f64 as a u64 whose order is the float's total order (so it can key a BTreeMap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderedNumber(u64);

impl OrderedNumber {
    pub fn new(x: f64) -> OrderedNumber {
        // -0.0 and 0.0 are one number here.
        let bits = (if x == 0.0 { 0.0 } else { x }).to_bits();
        OrderedNumber(if bits >> 63 == 1 { !bits } else { bits | (1 << 63) })
    }
}

/// Most fields one document's metadata may have, and deepest nesting.
const MAX_FIELDS: usize = 1024;
const MAX_DEPTH: usize = 16;

/// The flattened fields of `metadata` ("" has none). A value that is not a JSON object, or a
/// field with values of two kinds, is an error saying which.
pub fn fields(metadata: &str) -> Result<Vec<(String, Scalar)>, String> {
    if metadata.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_str(metadata).map_err(|e| format!("metadata is not valid JSON: {e}"))?;
    let Value::Object(object) = value else { return Err("metadata must be a JSON object".into()) };
    let mut out = Vec::new();
    for (key, value) in &object {
        flatten(key.clone(), value, 1, &mut out)?;
    }
    if out.len() > MAX_FIELDS {
        return Err(format!("metadata has {} values; the limit is {MAX_FIELDS}", out.len()));
    }
    let mut kinds: std::collections::HashMap<&str, Kind> = Default::default();
    for (path, scalar) in &out {
        match kinds.insert(path, scalar.kind()) {
            Some(k) if k != scalar.kind() => {
                return Err(format!("field {path:?} holds both {} and {} values", k.name(), scalar.kind().name()))
            }
            _ => {}
        }
    }
    Ok(out)
}

fn flatten(path: String, value: &Value, depth: usize, out: &mut Vec<(String, Scalar)>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("metadata is nested deeper than {MAX_DEPTH} levels at {path:?}"));
    }
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push((path, Scalar::Bool(*b))),
        Value::Number(n) => out.push((path, Scalar::number(n.as_f64().unwrap_or(f64::NAN)))),
        Value::String(s) => out.push((path, Scalar::Keyword(s.clone()))),
        Value::Array(items) => {
            for item in items {
                flatten(path.clone(), item, depth + 1, out)?;
            }
        }
        Value::Object(object) => {
            for (key, value) in object {
                flatten(format!("{path}.{key}"), value, depth + 1, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_flatten_to_paths_and_bad_metadata_says_why() {
        let got = fields(r#"{"a": {"b": 1.5}, "tags": ["x", "y"], "ok": true, "gone": null}"#).unwrap();
        let want = [
            ("a.b", Scalar::number(1.5)),
            ("ok", Scalar::Bool(true)),
            ("tags", Scalar::Keyword("x".into())),
            ("tags", Scalar::Keyword("y".into())),
        ];
        let mut got: Vec<(String, Scalar)> = got;
        got.sort();
        assert_eq!(got, want.map(|(p, s)| (p.to_string(), s)));
        assert_eq!(fields("").unwrap(), []);
        for (bad, why) in [
            ("[1, 2]", "must be a JSON object"),
            ("{\"a\": ", "not valid JSON"),
            ("\"text\"", "must be a JSON object"),
            (r#"{"m": [1, "x"]}"#, "both number and keyword"),
        ] {
            let e = fields(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let deep = format!("{}1{}", "{\"a\":".repeat(20), "}".repeat(20));
        assert!(fields(&deep).unwrap_err().contains("nested deeper"));
        // Numbers keep their order as keys.
        let mut xs = [3.5, -1.0, 0.0, -0.0, 2e9, -7e-3, f64::NEG_INFINITY];
        xs.sort_by(f64::total_cmp);
        let keys: Vec<OrderedNumber> = xs.iter().map(|&x| OrderedNumber::new(x)).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(OrderedNumber::new(0.0), OrderedNumber::new(-0.0));
    }
}
