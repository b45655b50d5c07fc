//! Special tokens and transformers' added-token split (`tokens_trie.split`): they are cut out of
//! the raw text before NFKC and MeCab, so a literal "[MASK]" in user text is id 4, while a
//! full-width "［ＭＡＳＫ］" only becomes "[MASK]" after NFKC and is tokenised as text.

use std::path::Path;

use serde_json::Value;

use super::wordpiece::{Vocab, UNK_TOKEN};
use super::Chunk;
use crate::error::{Error, Result};

/// The five BERT roles, with transformers' defaults.
const ROLES: [(&str, &str); 5] = [
    ("unk_token", UNK_TOKEN),
    ("sep_token", "[SEP]"),
    ("pad_token", "[PAD]"),
    ("cls_token", "[CLS]"),
    ("mask_token", "[MASK]"),
];

#[derive(Debug, Clone)]
pub struct SpecialTokens {
    /// Every token that is split out of raw text, with its id, longest first.
    tokens: Vec<(String, u32)>,
    /// Bytes that start some special token: most positions are ruled out with one look-up.
    first_bytes: [bool; 256],
    pub unk: u32,
    pub sep: u32,
    pub pad: u32,
    pub cls: u32,
    pub mask: u32,
}

impl SpecialTokens {
    /// Reads the roles from `special_tokens_map.json` / `tokenizer_config.json` (either may be
    /// missing; BERT's defaults fill in) and any `additional_special_tokens` or
    /// `added_tokens_decoder` entries. Every one must be in the vocab.
    pub fn load(model_dir: &Path, vocab: &Vocab) -> Result<SpecialTokens> {
        let mut configs = Vec::new();
        for name in ["special_tokens_map.json", "tokenizer_config.json"] {
            let path = model_dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => configs.push(serde_json::from_slice::<Value>(&bytes).map_err(|e| Error::Vocab {
                    path: path.clone(),
                    reason: format!("{name} is not valid JSON: {e}"),
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        let mut roles = Vec::new();
        for (key, default) in ROLES {
            let configured = configs.iter().find_map(|c| c.get(key).and_then(token_content));
            roles.push(configured.unwrap_or_else(|| default.to_owned()));
        }
        let mut extra = Vec::new();
        for config in &configs {
            if let Some(list) = config.get("additional_special_tokens").and_then(Value::as_array) {
                extra.extend(list.iter().filter_map(token_content));
            }
            if let Some(map) = config.get("added_tokens_decoder").and_then(Value::as_object) {
                extra.extend(map.values().filter_map(token_content));
            }
        }
        SpecialTokens::new(vocab, &roles, &extra)
            .map_err(|reason| Error::Vocab { path: model_dir.to_path_buf(), reason })
    }

    /// `roles` = [unk, sep, pad, cls, mask]; `extra` = other added tokens.
    pub fn new(vocab: &Vocab, roles: &[String], extra: &[String]) -> std::result::Result<SpecialTokens, String> {
        let id = |token: &str| vocab.id(token).ok_or_else(|| format!("special token {token:?} is not in vocab.txt"));
        let [unk, sep, pad, cls, mask] = roles else {
            return Err(format!("expected 5 special-token roles, got {}", roles.len()));
        };
        let mut tokens = Vec::new();
        for token in roles.iter().chain(extra).filter(|t| !t.is_empty()) {
            if !tokens.iter().any(|(t, _)| t == token) {
                tokens.push((token.clone(), id(token)?));
            }
        }
        tokens.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        let mut first_bytes = [false; 256];
        for (t, _) in &tokens {
            first_bytes[t.as_bytes()[0] as usize] = true;
        }
        Ok(SpecialTokens {
            tokens,
            first_bytes,
            unk: id(unk)?,
            sep: id(sep)?,
            pad: id(pad)?,
            cls: id(cls)?,
            mask: id(mask)?,
        })
    }

    /// The BERT defaults: [UNK] [SEP] [PAD] [CLS] [MASK].
    pub fn bert_defaults(vocab: &Vocab) -> std::result::Result<SpecialTokens, String> {
        SpecialTokens::new(vocab, &ROLES.map(|(_, t)| t.to_owned()), &[])
    }

    /// Splits raw text into special tokens and the text between them, taking at each position
    /// the leftmost, then longest, match (as transformers' trie does).
    pub fn split<'t>(&self, text: &'t str) -> Vec<Chunk<'t>> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for (at, _) in text.char_indices() {
            if at < start || !self.first_bytes[text.as_bytes()[at] as usize] {
                continue;
            }
            let rest = &text[at..];
            if let Some((token, id)) = self.tokens.iter().find(|(t, _)| rest.starts_with(t.as_str())) {
                if at > start {
                    chunks.push(Chunk::Text(&text[start..at]));
                }
                chunks.push(Chunk::Special(&text[at..at + token.len()], *id));
                start = at + token.len();
            }
        }
        if start < text.len() {
            chunks.push(Chunk::Text(&text[start..]));
        }
        chunks
    }
}

/// A token given as a plain string or as an AddedToken object `{"content": …}`.
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials() -> SpecialTokens {
        let vocab = Vocab::from_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n[unused0]\n").unwrap();
        SpecialTokens::new(&vocab, &ROLES.map(|(_, t)| t.to_owned()), &["[unused0]".into()]).unwrap()
    }

    #[test]
    fn splits_special_tokens_out_of_text() {
        let s = specials();
        assert_eq!(
            s.split("梅雨 [SEP] 梅雨[MASK]"),
            vec![Chunk::Text("梅雨 "), Chunk::Special("[SEP]", 3), Chunk::Text(" 梅雨"), Chunk::Special("[MASK]", 4)]
        );
        assert_eq!(s.split("[unused0][CLS]"), vec![Chunk::Special("[unused0]", 5), Chunk::Special("[CLS]", 2)]);
        assert_eq!(s.split("[SEP"), vec![Chunk::Text("[SEP")]);
        assert_eq!(s.split("［ＳＥＰ］"), vec![Chunk::Text("［ＳＥＰ］")]);
        assert!(s.split("").is_empty());
    }

    #[test]
    fn roles_must_be_in_the_vocab() {
        let vocab = Vocab::from_text("[UNK]\n").unwrap();
        let err = SpecialTokens::bert_defaults(&vocab).unwrap_err();
        assert!(err.contains("not in vocab.txt"), "{err}");
    }
}
