//! A small HDR-style latency histogram.
//!
//! Values (nanoseconds) below 2048 are counted exactly; above that each power-of-two range is split into 1024
//! linear buckets, so every recorded value is known to within 1/1024 (~0.1 %) — the same guarantee as an
//! HdrHistogram with 3 significant digits. Values above [`MAX_TRACKABLE`] (~18 minutes) are clamped.

/// Number of exactly-counted small values, and twice the number of buckets per power of two.
const EXACT: u64 = 2048;
const HALF: u64 = EXACT / 2;
/// Highest value bit tracked; larger values are clamped into the top bucket.
const MAX_BIT: u32 = 40;
/// Largest value that is recorded without clamping (2^40 - 1 ns, ~18 minutes).
pub const MAX_TRACKABLE: u64 = (1 << MAX_BIT) - 1;
const BUCKETS: usize = (EXACT + (MAX_BIT as u64 - 11) * HALF) as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index_of(v: u64) -> usize {
    let v = v.min(MAX_TRACKABLE);
    if v < EXACT {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros() as u64; // >= 11
    let shift = msb - 10;
    (EXACT + (shift - 1) * HALF + ((v >> shift) - HALF)) as usize
}

/// Highest value that maps to bucket `idx` (what HdrHistogram reports for a percentile).
fn highest_of(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < EXACT {
        return idx;
    }
    let k = idx - EXACT;
    let shift = k / HALF + 1;
    let low = (HALF + k % HALF) << shift;
    low + (1u64 << shift) - 1
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(index_of(v)) {
            *c += 1;
        }
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn min(&self) -> u64 {
        if self.total == 0 { 0 } else { self.min }
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Value at quantile `q` in [0, 1]: the smallest bucket bound below which at least `q` of the samples lie,
    /// capped at the exact observed maximum.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (idx, c) in self.counts.iter().enumerate() {
            seen += *c;
            if seen >= rank {
                return highest_of(idx).min(self.max).max(self.min());
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_within_precision() {
        let mut v = 1u64;
        while v < MAX_TRACKABLE {
            for x in [v, v + 1, v + v / 3, v * 2 - 1] {
                let x = x.min(MAX_TRACKABLE);
                let hi = highest_of(index_of(x));
                assert!(hi >= x, "{x} -> {hi}");
                assert!((hi - x) as f64 <= x as f64 / 1000.0 + 1.0, "{x} -> {hi}");
            }
            v *= 2;
        }
        assert_eq!(index_of(MAX_TRACKABLE), BUCKETS - 1);
        assert_eq!(index_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn indices_are_monotonic() {
        let mut last = 0;
        for v in (0..5_000_000u64).step_by(7) {
            let i = index_of(v);
            assert!(i >= last);
            last = i;
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 50_000_000.0).abs() / 50_000_000.0 < 0.002, "{p50}");
        assert!((p99 - 99_000_000.0).abs() / 99_000_000.0 < 0.002, "{p99}");
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert_eq!(h.max(), 100_000_000);
        let mut g = Histogram::new();
        g.record(5);
        g.merge(&h);
        assert_eq!(g.len(), 100_001);
        assert_eq!(g.min(), 5);
    }
}
