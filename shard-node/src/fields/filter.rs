//! A `Filter` (proto) over the field index: the set of internal ids it allows. `must` are
//! intersected, `should` united (when any), `must_not` taken away from what is left (all live
//! documents when nothing else was given). A condition on a field no document has matches
//! nothing; one whose values are of another kind than the field's is refused, naming it.

use std::collections::HashSet;
use std::ops::Bound as Edge;

use proto::v1::{bound, condition, value, Bound, Condition, Filter, Range};

use super::metadata::{Kind, Scalar};
use super::{time, Field, FieldIndex};
use crate::{Error, Result};

/// Most conditions one filter may hold, all levels together.
pub const MAX_CONDITIONS: usize = 1024;

/// What a filter needs of the shard besides the field index: every live document, and the
/// internal ids of external ones (unknown ids left out).
pub struct Context<'a> {
    pub live: &'a dyn Fn() -> HashSet<u32>,
    pub ids: &'a dyn Fn(&[String]) -> Result<HashSet<u32>>,
}

impl FieldIndex {
    /// The internal ids `filter` allows.
    pub fn evaluate(&self, filter: &Filter, cx: &Context) -> Result<HashSet<u32>> {
        let n = count(filter);
        if n > MAX_CONDITIONS {
            return Err(Error::BadInput(format!("the filter has {n} conditions; the limit is {MAX_CONDITIONS}")));
        }
        self.filter(filter, cx)
    }

    fn filter(&self, filter: &Filter, cx: &Context) -> Result<HashSet<u32>> {
        let mut acc: Option<HashSet<u32>> = None;
        for c in &filter.must {
            let set = self.condition(c, cx)?;
            acc = Some(match acc {
                None => set,
                Some(a) => a.intersection(&set).copied().collect(),
            });
        }
        if !filter.should.is_empty() {
            let mut any = HashSet::new();
            for c in &filter.should {
                any.extend(self.condition(c, cx)?);
            }
            acc = Some(match acc {
                None => any,
                Some(a) => a.intersection(&any).copied().collect(),
            });
        }
        let mut acc = acc.unwrap_or_else(|| (cx.live)());
        for c in &filter.must_not {
            let set = self.condition(c, cx)?;
            acc.retain(|d| !set.contains(d));
        }
        Ok(acc)
    }

    fn condition(&self, c: &Condition, cx: &Context) -> Result<HashSet<u32>> {
        let empty = HashSet::new;
        match c.condition.as_ref() {
            None => Err(Error::BadInput("a filter condition is empty".into())),
            Some(condition::Condition::Filter(f)) => self.filter(f, cx),
            Some(condition::Condition::Ids(ids)) => (cx.ids)(&ids.ids),
            Some(condition::Condition::Exists(field)) => {
                Ok(self.fields.get(field).map_or_else(empty, |f| f.present.clone()))
            }
            Some(condition::Condition::Match(m)) => {
                if m.any.is_empty() {
                    return Err(Error::BadInput(format!("match on {:?} names no value", m.field)));
                }
                let mut out = HashSet::new();
                for v in &m.any {
                    let scalar = match v.kind.as_ref() {
                        Some(value::Kind::Keyword(s)) => Scalar::Keyword(s.clone()),
                        Some(value::Kind::Integer(i)) => Scalar::number(*i as f64),
                        Some(value::Kind::Boolean(b)) => Scalar::Bool(*b),
                        None => return Err(Error::BadInput(format!("match on {:?} has an empty value", m.field))),
                    };
                    if let Some(field) = self.field(&m.field, scalar.kind(), "match")? {
                        out.extend(field.postings.get(&scalar).into_iter().flatten());
                    }
                }
                Ok(out)
            }
            Some(condition::Condition::Range(r)) => self.range(r),
        }
    }

    /// The field at `path` when documents have it, checked to be of `kind`.
    fn field(&self, path: &str, kind: Kind, what: &str) -> Result<Option<&Field>> {
        let Some(field) = self.fields.get(path) else { return Ok(None) };
        match field.kind {
            Some(k) if k != kind => Err(Error::BadInput(format!(
                "{what} on field {path:?} with a {} value, but the field holds {} values",
                kind.name(),
                k.name()
            ))),
            _ => Ok(Some(field)),
        }
    }

    fn range(&self, r: &Range) -> Result<HashSet<u32>> {
        let bad = |why: &str| Error::BadInput(format!("range on {:?}: {why}", r.field));
        if r.gt.is_some() && r.gte.is_some() || r.lt.is_some() && r.lte.is_some() {
            return Err(bad("give one lower bound (gt or gte) and one upper bound (lt or lte)"));
        }
        let lower = r.gt.as_ref().map(|b| (b, true)).or(r.gte.as_ref().map(|b| (b, false)));
        let upper = r.lt.as_ref().map(|b| (b, true)).or(r.lte.as_ref().map(|b| (b, false)));
        let bounds: Vec<&Bound> = lower.iter().chain(upper.iter()).map(|(b, _)| *b).collect();
        if bounds.is_empty() {
            return Err(bad("no bound given"));
        }
        let timestamps = bounds.iter().filter(|b| matches!(b.value, Some(bound::Value::Timestamp(_)))).count();
        if bounds.iter().any(|b| b.value.is_none()) || (timestamps > 0 && timestamps < bounds.len()) {
            return Err(bad("bounds are all numbers or all RFC 3339 timestamps"));
        }
        let mut out = HashSet::new();
        if timestamps > 0 {
            let ms = |b: &Bound| match &b.value {
                Some(bound::Value::Timestamp(t)) => {
                    time::unix_ms(t).ok_or_else(|| bad(&format!("{t:?} is not an RFC 3339 timestamp")))
                }
                _ => unreachable!("all bounds are timestamps"),
            };
            let edge = |e: Option<(&Bound, bool)>| -> Result<Edge<i64>> {
                Ok(match e {
                    None => Edge::Unbounded,
                    Some((b, true)) => Edge::Excluded(ms(b)?),
                    Some((b, false)) => Edge::Included(ms(b)?),
                })
            };
            let (from, to) = (edge(lower)?, edge(upper)?);
            if let Some(field) = self.field(&r.field, Kind::Keyword, "a timestamp range")? {
                if valid(&from, &to) {
                    out.extend(field.times.range((from, to)).flat_map(|(_, ids)| ids));
                }
            }
        } else {
            let number = |b: &Bound| match b.value {
                Some(bound::Value::Number(x)) if !x.is_nan() => Ok(Scalar::number(x)),
                _ => Err(bad("a bound is not a number")),
            };
            let edge = |e: Option<(&Bound, bool)>, open: Scalar| -> Result<Edge<Scalar>> {
                Ok(match e {
                    None => Edge::Included(open),
                    Some((b, true)) => Edge::Excluded(number(b)?),
                    Some((b, false)) => Edge::Included(number(b)?),
                })
            };
            let from = edge(lower, Scalar::number(f64::NEG_INFINITY))?;
            let to = edge(upper, Scalar::number(f64::INFINITY))?;
            if let Some(field) = self.field(&r.field, Kind::Number, "a number range")? {
                if valid(&from, &to) {
                    out.extend(field.postings.range((from, to)).flat_map(|(_, ids)| ids));
                }
            }
        }
        Ok(out)
    }
}

/// Whether `from..to` is a range a BTreeMap takes (it panics on an inverted one).
fn valid<T: Ord>(from: &Edge<T>, to: &Edge<T>) -> bool {
    match (from, to) {
        (Edge::Included(a), Edge::Included(b)) => a <= b,
        (Edge::Included(a) | Edge::Excluded(a), Edge::Included(b) | Edge::Excluded(b)) => a < b,
        _ => true,
    }
}

/// The conditions of `filter`, nested ones included.
fn count(filter: &Filter) -> usize {
    let all = filter.must.iter().chain(&filter.should).chain(&filter.must_not);
    all.map(|c| match &c.condition {
        Some(condition::Condition::Filter(f)) => 1 + count(f),
        _ => 1,
    })
    .sum()
}
