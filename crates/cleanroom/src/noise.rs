//! The noise of differential privacy, sampled exactly with integers: the discrete Laplace
//! distribution, `P(y) ∝ exp(-|y| / scale)` over the integers, for a rational scale `t / s`.
//!
//! The algorithm is Canonne, Kamath and Steinke's ("The Discrete Gaussian for Differential
//! Privacy", NeurIPS 2020, Algorithms 1 and 2): Bernoulli trials of `exp(-γ)` for rational γ
//! built from uniform integers, a geometric variable from them, and a sign. No floating point
//! is involved, so the noise has no low-order bits that tell the true value apart (Mironov,
//! "On Significance of the Least Significant Bits for Differential Privacy", CCS 2012): a
//! value is noised as an integer and only then turned into the result's type.
//!
//! OpenDP's Rust core implements the same algorithm; it was not taken because its samplers
//! draw from their own generator (no seeded source for the goodness-of-fit tests here) and
//! bring a big-number library and a proof-tooling tree with them for these sixty lines.

use confide_crypto::random;

/// A source of uniform integers.
pub trait Uniform {
    /// A uniform integer in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64;
}

/// Uniform integers from the operating system's generator, drawn 4 KiB at a time, by
/// rejection (no modulo bias).
pub struct SystemUniform {
    pool: Vec<u8>,
    at: usize,
}

impl SystemUniform {
    /// A source with an empty pool.
    pub fn new() -> Self {
        Self {
            pool: vec![0; 4096],
            at: 4096,
        }
    }

    fn next_u64(&mut self) -> u64 {
        if self.at + 8 > self.pool.len() {
            // The generator failing is not a state to run on: no noise, no result.
            #[allow(clippy::panic)]
            if random::fill(&mut self.pool).is_err() {
                panic!("the system random generator is unavailable");
            }
            self.at = 0;
        }
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.pool[self.at..self.at + 8]);
        self.at += 8;
        u64::from_le_bytes(bytes)
    }
}

impl std::fmt::Debug for SystemUniform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool is future noise: never shown.
        f.write_str("SystemUniform")
    }
}

impl Default for SystemUniform {
    fn default() -> Self {
        Self::new()
    }
}

impl Uniform for SystemUniform {
    fn below(&mut self, n: u64) -> u64 {
        uniform_below(n, || self.next_u64())
    }
}

/// A uniform integer in `0..n` from uniform 64-bit words, rejecting the words of the last,
/// partial run of `n`.
pub fn uniform_below(n: u64, mut word: impl FnMut() -> u64) -> u64 {
    assert!(n > 0, "a uniform integer below 0");
    let zone = u64::MAX - (u64::MAX - n + 1) % n;
    loop {
        let w = word();
        if w <= zone {
            return w % n;
        }
    }
}

/// A Bernoulli trial with success `n / d` (`n <= d`, `d > 0`).
fn bernoulli(rng: &mut impl Uniform, n: u64, d: u64) -> bool {
    rng.below(d) < n
}

/// A Bernoulli trial with success `exp(-n / d)` (CKS20, Algorithm 1).
fn bernoulli_exp(rng: &mut impl Uniform, n: u64, d: u64) -> bool {
    let (whole, n) = (n / d, n % d);
    for _ in 0..whole {
        if !bernoulli_exp_below_one(rng, 1, 1) {
            return false;
        }
    }
    bernoulli_exp_below_one(rng, n, d)
}

/// `exp(-n / d)` for `n / d` in `[0, 1]`: the number of successive successes of trials with
/// odds `γ / k`, k = 1, 2, …, is odd with probability `exp(-γ)`.
fn bernoulli_exp_below_one(rng: &mut impl Uniform, n: u64, d: u64) -> bool {
    let mut k: u64 = 1;
    loop {
        // Odds γ / k = (n / d) · (1 / k), as two trials: no product to overflow.
        if !(bernoulli(rng, n, d) && bernoulli(rng, 1, k)) {
            return k % 2 == 1;
        }
        k += 1;
    }
}

/// A sample of the discrete Laplace distribution of scale `t / s` (CKS20, Algorithm 2):
/// `P(y) = (1 - q) / (1 + q) · q^|y|` with `q = exp(-s / t)`.
pub fn discrete_laplace(rng: &mut impl Uniform, s: u64, t: u64) -> i64 {
    assert!(s > 0 && t > 0, "a discrete Laplace scale of 0");
    loop {
        let u = rng.below(t);
        if !bernoulli_exp(rng, u, t) {
            continue;
        }
        let mut v: u64 = 0;
        while bernoulli_exp(rng, 1, 1) {
            v += 1;
        }
        let x = u.saturating_add(t.saturating_mul(v));
        let y = i64::try_from(x / s).unwrap_or(i64::MAX);
        let negative = rng.below(2) == 1;
        if negative && y == 0 {
            continue;
        }
        return if negative { -y } else { y };
    }
}

/// The noise for a value one individual moves by at most `sensitivity`, in a run that spends
/// `epsilon_micros` millionths of ε on it: discrete Laplace of scale `sensitivity / ε`.
/// `sensitivity` is at most [`MAX_SENSITIVITY`] (the plan refuses more), so the scale's
/// numerator cannot overflow.
pub fn laplace_for(rng: &mut impl Uniform, sensitivity: u64, epsilon_micros: u64) -> i64 {
    let t = sensitivity.min(MAX_SENSITIVITY) * 1_000_000;
    discrete_laplace(rng, epsilon_micros, t.max(1))
}

/// The largest sensitivity noise is calibrated to (rows × bound): 2^43, with room for the
/// millionths of ε in 64 bits.
pub const MAX_SENSITIVITY: u64 = 1 << 43;

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded source for reproducible statistics (never for noise itself).
    struct Seeded(crate::SplitMix);

    impl Seeded {
        fn new(seed: u64) -> Self {
            Self(crate::SplitMix(seed))
        }
    }

    impl Uniform for Seeded {
        fn below(&mut self, n: u64) -> u64 {
            uniform_below(n, || self.0.next())
        }
    }

    /// Pearson's χ² of `draws` samples of scale `t / s` against the distribution's own
    /// probabilities, over the values with at least 5 expected draws and one bin for the
    /// tails; with the degrees of freedom.
    fn chi_square(seed: u64, s: u64, t: u64, draws: usize) -> (f64, usize) {
        let mut rng = Seeded::new(seed);
        let q = (-(s as f64) / t as f64).exp();
        let p = |y: i64| (1.0 - q) / (1.0 + q) * q.powi(y.unsigned_abs() as i32);
        let mut limit = 0i64;
        while p(limit + 1) * draws as f64 >= 5.0 {
            limit += 1;
        }
        let mut counts = vec![0usize; (2 * limit + 2) as usize];
        for _ in 0..draws {
            let y = discrete_laplace(&mut rng, s, t);
            let bin = if y.abs() > limit {
                counts.len() - 1
            } else {
                (y + limit) as usize
            };
            counts[bin] += 1;
        }
        let inside: f64 = (-limit..=limit).map(p).sum();
        let mut stat = 0.0;
        for (bin, &seen) in counts.iter().enumerate() {
            let expected = if bin == counts.len() - 1 {
                (1.0 - inside) * draws as f64
            } else {
                p(bin as i64 - limit) * draws as f64
            };
            stat += (seen as f64 - expected).powi(2) / expected;
        }
        (stat, counts.len() - 1)
    }

    #[test]
    fn the_noise_has_the_discrete_laplace_distribution() {
        // Scales 0.5, 3 and 40/3, each from three seeds: χ² under the 99.9th percentile of its
        // degrees of freedom (Wilson–Hilferty), which a wrong distribution (another scale, a
        // bias, a missing sign) exceeds by far at 200,000 draws.
        for (s, t) in [(2, 1), (1, 3), (3, 40)] {
            for seed in [1, 2, 3] {
                let (stat, df) = chi_square(seed, s, t, 200_000);
                let k = df as f64;
                let z = 3.09;
                let critical = k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3);
                assert!(
                    stat < critical,
                    "scale {t}/{s}, seed {seed}: χ² {stat:.1} over {df} degrees of freedom \
                     (critical {critical:.1})"
                );
            }
        }
    }

    #[test]
    fn a_wrong_scale_fails_the_same_test() {
        // The test above can fail: samples of scale 3 read as scale 3.3 do.
        let mut rng = Seeded::new(7);
        let q = (-1.0f64 / 3.3).exp();
        let p = |y: i64| (1.0 - q) / (1.0 + q) * q.powi(y.unsigned_abs() as i32);
        let draws = 200_000;
        let mut counts = [0usize; 21];
        for _ in 0..draws {
            let y = discrete_laplace(&mut rng, 1, 3).clamp(-10, 10);
            counts[(y + 10) as usize] += 1;
        }
        let stat: f64 = (-9..=9)
            .map(|y| {
                let e = p(y) * draws as f64;
                (counts[(y + 10) as usize] as f64 - e).powi(2) / e
            })
            .sum();
        assert!(stat > 100.0, "χ² {stat:.1}: a wrong scale passed");
    }

    #[test]
    fn mean_and_variance_match_and_the_system_source_draws() {
        let mut rng = Seeded::new(11);
        let (s, t) = (1u64, 5u64);
        let n = 100_000;
        let draws: Vec<f64> = (0..n)
            .map(|_| discrete_laplace(&mut rng, s, t) as f64)
            .collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let q = (-(s as f64) / t as f64).exp();
        let expected = 2.0 * q / (1.0 - q).powi(2);
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!(
            (var / expected - 1.0).abs() < 0.03,
            "variance {var}, expected {expected}"
        );

        // The system source gives values that vary, of the right order.
        let mut system = SystemUniform::new();
        let drawn: Vec<i64> = (0..2000)
            .map(|_| laplace_for(&mut system, 1, 1_000_000))
            .collect();
        let distinct: std::collections::BTreeSet<i64> = drawn.iter().copied().collect();
        assert!(distinct.len() > 5, "{distinct:?}");
        assert!(drawn.iter().all(|y| y.abs() < 40));
    }

    #[test]
    fn uniform_integers_have_no_modulo_bias() {
        // Words that would bias `% 3` toward 0 are rejected: u64::MAX is one of them.
        let mut words = [u64::MAX, 4].into_iter();
        assert_eq!(uniform_below(3, || words.next().unwrap()), 1);
        let mut rng = Seeded::new(5);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[rng.below(3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
    }
}
