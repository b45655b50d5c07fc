//! Match explanations put together: a shard (or the encoder's Score) knows, per query token,
//! which document token matched and how well; the encoder's Tokenize knows what each token
//! is and where it came from. Both sides index the same rows of the embeddings.

use crate::v1::{Explanation, TokenMatch, TokenSource};

impl Explanation {
    /// From `(document token, similarity)` per query token, in query order (what
    /// `kernels::cpu::maxsim_matches` gives); texts and spans are left for `describe`.
    pub fn from_matches(matches: impl IntoIterator<Item = (u32, f32)>) -> Explanation {
        let matches = matches
            .into_iter()
            .enumerate()
            .map(|(q, (d, similarity))| TokenMatch {
                query_token: q as u32,
                document_token: d,
                similarity,
                ..TokenMatch::default()
            })
            .collect();
        Explanation { matches }
    }

    /// Fills in each match's texts, spans and expansion flag from the query's and the
    /// document's tokens (one per embedding row). False if a position is out of range
    /// (the two sides disagree on the embeddings, e.g. a document rewritten in between).
    pub fn describe(&mut self, query: &[TokenSource], document: &[TokenSource]) -> bool {
        for m in &mut self.matches {
            let (Some(q), Some(d)) = (query.get(m.query_token as usize), document.get(m.document_token as usize))
            else {
                return false;
            };
            m.query_text.clone_from(&q.text);
            m.query_span = q.span;
            m.expansion = q.expansion;
            m.document_text.clone_from(&d.text);
            m.span = d.span;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Span;

    fn token(text: &str, span: Option<(u32, u32)>, expansion: bool) -> TokenSource {
        TokenSource { text: text.into(), span: span.map(|(start, end)| Span { start, end }), expansion }
    }

    #[test]
    fn matches_take_the_texts_and_spans_of_their_rows() {
        let query = [token("[CLS]", None, false), token("東京", Some((0, 2)), false), token("[MASK]", None, true)];
        let doc = [token("[CLS]", None, false), token("[D]", None, false), token("東京", Some((3, 5)), false)];
        let mut e = Explanation::from_matches([(0, 0.9), (2, 0.8), (2, 0.5)]);
        assert!(e.describe(&query, &doc));
        let m = &e.matches[1];
        assert_eq!((m.query_token, m.query_text.as_str(), m.document_text.as_str()), (1, "東京", "東京"));
        assert_eq!(
            (m.query_span, m.span, m.similarity),
            (Some(Span { start: 0, end: 2 }), Some(Span { start: 3, end: 5 }), 0.8)
        );
        assert!(e.matches[2].expansion && !e.matches[1].expansion);
        // A row past the document's tokens: the two sides disagree.
        assert!(!Explanation::from_matches([(0, 0.1), (3, 0.1)]).describe(&query, &doc));
    }
}
