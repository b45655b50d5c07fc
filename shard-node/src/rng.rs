//! A small seeded generator (SplitMix64): sampling for k-means and synthetic benchmark data
//! must be reproducible from a seed, and need nothing stronger.

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let (u, v) = (1.0 - self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }

    /// `count` distinct indices of `0..n` (count ≤ n), in random order.
    pub fn sample(&mut self, n: usize, count: usize) -> Vec<usize> {
        let mut picked = std::collections::HashSet::with_capacity(count);
        let mut order = Vec::with_capacity(count);
        if count * 2 > n {
            let mut all: Vec<usize> = (0..n).collect();
            for i in 0..count {
                let j = i + self.below(n - i);
                all.swap(i, j);
            }
            all.truncate(count);
            return all;
        }
        while order.len() < count {
            let i = self.below(n);
            if picked.insert(i) {
                order.push(i);
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_distinct_and_in_range() {
        let mut rng = Rng::new(3);
        for (n, count) in [(10, 10), (1000, 7), (100, 60)] {
            let s = rng.sample(n, count);
            let unique: std::collections::HashSet<_> = s.iter().collect();
            assert_eq!((s.len(), unique.len()), (count, count));
            assert!(s.iter().all(|&i| i < n));
        }
        let mean = (0..10_000).map(|_| rng.normal()).sum::<f32>() / 10_000.0;
        assert!(mean.abs() < 0.05, "{mean}");
    }
}
