use std::collections::HashSet;

use proto::v1::{bound, condition, value, Bound, Condition, Filter, Ids, Match, Range, Value};

use super::*;
use crate::fields::filter::Context;

/// Ten documents: `n` = i, `even`, `tag` = "t{i % 3}", `when` = 2024-01-(i+1), `tags` holds
/// both "all" and "x{i}"; document 9 has no metadata.
fn index() -> FieldIndex {
    let mut index = FieldIndex::default();
    for i in 0..9u32 {
        let metadata = format!(
            r#"{{"n": {i}, "even": {}, "tag": "t{}", "when": "2024-01-{:02}T00:00:00Z", "tags": ["all", "x{i}"], "deep": {{"k": {i}}}}}"#,
            i % 2 == 0,
            i % 3,
            i + 1
        );
        let fields = index.check(&metadata).unwrap();
        index.add(i, fields);
    }
    index.add(9, index.check("").unwrap());
    index
}

fn run(index: &FieldIndex, filter: Filter) -> Result<Vec<u32>, String> {
    let live = || (0..10).collect::<HashSet<u32>>();
    let ids = |ids: &[String]| {
        Ok(ids.iter().filter_map(|i| i.strip_prefix('d')?.parse().ok()).filter(|&i: &u32| i < 10).collect())
    };
    let cx = Context { live: &live, ids: &ids };
    let mut got: Vec<u32> = index.evaluate(&filter, &cx).map_err(|e| e.to_string())?.into_iter().collect();
    got.sort();
    Ok(got)
}

fn c(condition: condition::Condition) -> Condition {
    Condition { condition: Some(condition) }
}

fn keyword(field: &str, values: &[&str]) -> Condition {
    let any = values.iter().map(|v| Value { kind: Some(value::Kind::Keyword(v.to_string())) }).collect();
    c(condition::Condition::Match(Match { field: field.into(), any }))
}

fn number(x: f64) -> Option<Bound> {
    Some(Bound { value: Some(bound::Value::Number(x)) })
}

fn timestamp(t: &str) -> Option<Bound> {
    Some(Bound { value: Some(bound::Value::Timestamp(t.into())) })
}

fn must(conditions: Vec<Condition>) -> Filter {
    Filter { must: conditions, ..Default::default() }
}

#[test]
fn every_operator_and_their_nesting() {
    let index = index();
    let integer = |field: &str, i: i64| {
        c(condition::Condition::Match(Match {
            field: field.into(),
            any: vec![Value { kind: Some(value::Kind::Integer(i)) }],
        }))
    };
    let boolean = Value { kind: Some(value::Kind::Boolean(true)) };
    let even = c(condition::Condition::Match(Match { field: "even".into(), any: vec![boolean] }));
    let range = |r: Range| c(condition::Condition::Range(r));
    assert_eq!(run(&index, Filter::default()).unwrap(), (0..10).collect::<Vec<_>>(), "no condition: all");
    assert_eq!(run(&index, must(vec![keyword("tag", &["t1"])])).unwrap(), [1, 4, 7]);
    assert_eq!(run(&index, must(vec![keyword("tag", &["t1", "t2"])])).unwrap(), [1, 2, 4, 5, 7, 8]);
    assert_eq!(run(&index, must(vec![keyword("tags", &["x3"])])).unwrap(), [3], "an array holds any element");
    assert_eq!(run(&index, must(vec![integer("n", 4)])).unwrap(), [4]);
    assert_eq!(run(&index, must(vec![integer("deep.k", 5)])).unwrap(), [5], "nested objects by path");
    assert_eq!(run(&index, must(vec![even.clone()])).unwrap(), [0, 2, 4, 6, 8]);
    let n = |gt, gte, lt, lte| range(Range { field: "n".into(), gt, gte, lt, lte });
    assert_eq!(run(&index, must(vec![n(number(2.0), None, None, number(5.0))])).unwrap(), [3, 4, 5]);
    assert_eq!(run(&index, must(vec![n(None, number(7.5), None, None)])).unwrap(), [8]);
    assert_eq!(
        run(&index, must(vec![n(None, None, number(5.0), None), n(None, number(5.0), None, None)])).unwrap(),
        Vec::<u32>::new()
    );
    let when = |gte, lt| range(Range { field: "when".into(), gte, lt, ..Default::default() });
    let jan = when(timestamp("2024-01-03T00:00:00Z"), timestamp("2024-01-05T09:00:00+09:00"));
    assert_eq!(run(&index, must(vec![jan])).unwrap(), [2, 3], "09:00+09:00 is midnight UTC, excluded");
    let exists = c(condition::Condition::Exists("tag".into()));
    assert_eq!(run(&index, must(vec![exists.clone()])).unwrap(), (0..9).collect::<Vec<_>>());
    assert_eq!(run(&index, must(vec![c(condition::Condition::Exists("nope".into()))])).unwrap(), Vec::<u32>::new());
    let ids = c(condition::Condition::Ids(Ids { ids: vec!["d1".into(), "d2".into(), "d99".into()] }));
    assert_eq!(run(&index, must(vec![ids])).unwrap(), [1, 2]);
    // must ∧ (should ∨ …) ∧ ¬must_not, nested.
    let inner = Filter { should: vec![keyword("tag", &["t0"]), integer("n", 7)], ..Default::default() };
    let outer =
        Filter { must: vec![c(condition::Condition::Filter(inner))], must_not: vec![even], ..Default::default() };
    assert_eq!(run(&index, outer).unwrap(), [3, 7]);
    let not_tagged = Filter { must_not: vec![exists], ..Default::default() };
    assert_eq!(run(&index, not_tagged).unwrap(), [9], "must_not alone takes from every document");
}

#[test]
fn bad_filters_and_metadata_of_another_kind_are_refused_by_name() {
    let mut index = index();
    for (filter, why) in [
        (must(vec![keyword("n", &["4"])]), "\"n\" with a keyword value, but the field holds number"),
        (
            must(vec![c(condition::Condition::Range(Range {
                field: "tag".into(),
                gt: number(1.0),
                ..Default::default()
            }))]),
            "holds keyword",
        ),
        (must(vec![c(condition::Condition::Range(Range { field: "n".into(), ..Default::default() }))]), "no bound"),
        (
            must(vec![c(condition::Condition::Range(Range {
                field: "n".into(),
                gt: number(1.0),
                gte: number(1.0),
                ..Default::default()
            }))]),
            "one lower bound",
        ),
        (
            must(vec![c(condition::Condition::Range(Range {
                field: "when".into(),
                gt: timestamp("yesterday"),
                ..Default::default()
            }))]),
            "not an RFC 3339",
        ),
        (
            must(vec![c(condition::Condition::Range(Range {
                field: "when".into(),
                gt: timestamp("2024-01-01T00:00:00Z"),
                lt: number(3.0),
                ..Default::default()
            }))]),
            "all numbers or all",
        ),
        (must(vec![keyword("tag", &[])]), "names no value"),
        (must(vec![Condition { condition: None }]), "empty"),
    ] {
        let e = run(&index, filter).unwrap_err();
        assert!(e.contains(why), "{e}");
    }
    let huge = must((0..MAX_CONDITIONS + 1).map(|_| keyword("tag", &["t0"])).collect());
    assert!(run(&index, huge).unwrap_err().contains("conditions"));
    let e = index.check(r#"{"n": "four"}"#).unwrap_err();
    assert!(e.contains("\"n\" is number"), "{e}");
    // A field no document has any more forgets its kind.
    for i in 0..9 {
        index.remove(i);
    }
    assert!(index.check(r#"{"n": "four"}"#).is_ok());
    assert_eq!(run(&index, must(vec![keyword("tag", &["t1"])])).unwrap(), Vec::<u32>::new());
}
