//! Synthetic collections for tests and `shard-bench`: L2-normalised token vectors drawn around
//! a few thousand random centres, and queries made of perturbed tokens of a random target
//! document. Reproducible from a seed.

use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct Spec {
    pub docs: usize,
    pub tokens_per_doc: usize,
    pub centres: usize,
    pub dim: usize,
    /// Norm of the noise added to a centre to make a token (before normalising).
    pub noise: f32,
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec { docs: 1000, tokens_per_doc: 100, centres: 2048, dim: 128, noise: 0.6, seed: 1 }
    }
}

pub struct Collection {
    pub dim: usize,
    /// All tokens, document after document: `[tokens, dim]`.
    pub vectors: Vec<f32>,
    /// Document i is tokens `offsets[i]..offsets[i + 1]`.
    pub offsets: Vec<usize>,
}

fn push_normalised(out: &mut Vec<f32>, v: impl Iterator<Item = f32>) {
    let start = out.len();
    out.extend(v);
    let norm = out[start..].iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    out[start..].iter_mut().for_each(|x| *x /= norm);
}

impl Collection {
    /// Each document draws its tokens around a handful of centres (a topic), each token's
    /// length varying ±50% around `tokens_per_doc`.
    pub fn generate(spec: &Spec) -> Collection {
        let mut rng = Rng::new(spec.seed);
        let dim = spec.dim;
        let mut centres = Vec::with_capacity(spec.centres * dim);
        for _ in 0..spec.centres {
            push_normalised(&mut centres, (0..dim).map(|_| rng.normal()));
        }
        let sigma = spec.noise / (dim as f32).sqrt();
        let (mut vectors, mut offsets) = (Vec::new(), vec![0]);
        for _ in 0..spec.docs {
            let len = (spec.tokens_per_doc / 2 + rng.below(spec.tokens_per_doc + 1)).max(1);
            let topic: Vec<usize> = (0..8).map(|_| rng.below(spec.centres)).collect();
            for _ in 0..len {
                let c = topic[rng.below(topic.len())] * dim;
                let noise: Vec<f32> = (0..dim).map(|_| sigma * rng.normal()).collect();
                push_normalised(&mut vectors, (0..dim).map(|d| centres[c + d] + noise[d]));
            }
            offsets.push(vectors.len() / dim);
        }
        Collection { dim, vectors, offsets }
    }

    /// The first `docs` documents: the very collection `generate` makes with `docs` documents
    /// (they are drawn one after another from one stream), so `shard-bench` can measure a
    /// growing shard at a smaller size on the data and queries a run of that size would use.
    pub fn prefix(&self, docs: usize) -> Collection {
        let docs = docs.min(self.len());
        Collection {
            dim: self.dim,
            vectors: self.vectors[..self.offsets[docs] * self.dim].to_vec(),
            offsets: self.offsets[..=docs].to_vec(),
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn tokens(&self) -> usize {
        self.vectors.len() / self.dim
    }

    pub fn doc(&self, i: usize) -> &[f32] {
        &self.vectors[self.offsets[i] * self.dim..self.offsets[i + 1] * self.dim]
    }

    /// `count` queries of `length` tokens, each a random document's tokens (sampled with
    /// replacement) plus noise of norm `noise`: `(target document, [length, dim])`.
    pub fn queries(&self, count: usize, length: usize, noise: f32, seed: u64) -> Vec<(usize, Vec<f32>)> {
        let mut rng = Rng::new(seed ^ 0x5eed);
        let sigma = noise / (self.dim as f32).sqrt();
        (0..count)
            .map(|_| {
                let target = rng.below(self.len());
                let doc = self.doc(target);
                let mut q = Vec::with_capacity(length * self.dim);
                for _ in 0..length {
                    let t = rng.below(doc.len() / self.dim) * self.dim;
                    let noise: Vec<f32> = (0..self.dim).map(|_| sigma * rng.normal()).collect();
                    push_normalised(&mut q, (0..self.dim).map(|d| doc[t + d] + noise[d]));
                }
                (target, q)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_the_smaller_collection_and_draws_its_queries() {
        let spec = Spec { docs: 40, tokens_per_doc: 12, centres: 16, dim: 8, ..Default::default() };
        let (whole, small) = (Collection::generate(&spec), Collection::generate(&Spec { docs: 15, ..spec }));
        let prefix = whole.prefix(15);
        assert_eq!(prefix.offsets, small.offsets);
        assert_eq!(prefix.vectors, small.vectors);
        assert_eq!(prefix.queries(6, 4, 0.3, 2), small.queries(6, 4, 0.3, 2));
        assert!(prefix.len() < whole.len() && whole.prefix(1000).len() == whole.len());
    }
}
