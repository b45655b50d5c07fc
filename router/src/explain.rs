//! Explained hits: the shards say, per query token, which document token matched (they hold
//! the vectors); an encoder says what each token is and where it is in the texts (it holds the
//! tokenizer). One Tokenize call for all the hits of a search; no second forward pass.

use std::time::Instant;

use proto::v1::encoder_client::EncoderClient;
use proto::v1::{Hit, Include, TokenizeRequest};
use tonic::transport::Channel;

use crate::{Error, Router};

/// Hits' texts per Tokenize call (an encoder takes 256 by default).
const TEXTS_PER_CALL: usize = 64;

impl Router {
    /// Completes the shards' explanations of `hits` (which carry their texts, as shards send
    /// them when asked to explain), then drops what `include` did not ask for.
    pub(crate) async fn describe(
        &self,
        query: String,
        hits: &mut [Hit],
        include: Include,
        deadline: Instant,
    ) -> Result<(), Error> {
        let (_, view) = self.gate.current();
        // Within what an encoder takes in one request.
        for hits in hits.chunks_mut(TEXTS_PER_CALL) {
            let texts: Vec<String> =
                hits.iter().map(|h| h.document.as_ref().map(|d| d.text.clone()).unwrap_or_default()).collect();
            let call = |mut encoder: EncoderClient<Channel>, time| {
                let mut request = proto::trace::traced(TokenizeRequest { query: query.clone(), texts: texts.clone() });
                request.set_timeout(time);
                async move { encoder.tokenize(request).await }
            };
            let tokens = view.encoders.call("while explaining", texts.len(), deadline, &self.counters, call).await?;
            for (hit, doc) in hits.iter_mut().zip(&tokens.documents) {
                if let Some(e) = &mut hit.explanation {
                    if !e.describe(&tokens.query, &doc.tokens) {
                        return Err(Error::Precondition(format!(
                            "cannot explain {:?}: its stored vectors have tokens its text does not give with \
                             this encoder's model (was it indexed with another model or doc_maxlen?)",
                            hit.id
                        )));
                    }
                }
            }
        }
        for hit in hits {
            match &mut hit.document {
                Some(_) if !include.text && !include.metadata => hit.document = None,
                Some(d) if !include.text => d.text.clear(),
                _ => {}
            }
        }
        Ok(())
    }
}
