//! Median / min / max of repeated, interleaved measurements.
use serde_json::{json, Value};

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub samples: Vec<f64>,
}

impl Summary {
    pub fn new() -> Summary {
        Summary::default()
    }

    pub fn of(samples: Vec<f64>) -> Summary {
        Summary { samples }
    }

    pub fn push(&mut self, v: f64) {
        self.samples.push(v);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut s: Vec<f64> = self
            .samples
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        s
    }

    pub fn median(&self) -> f64 {
        let s = self.sorted();
        if s.is_empty() {
            return f64::NAN;
        }
        let n = s.len();
        if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Per-sample ratio self[i] / other[i] (samples taken in the same rounds).
    pub fn ratio(&self, other: &Summary) -> Summary {
        Summary::of(
            self.samples
                .iter()
                .zip(&other.samples)
                .map(|(a, b)| a / b)
                .collect(),
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "median": round(self.median(), 4),
            "min": round(self.min(), 4),
            "max": round(self.max(), 4),
            "n": self.samples.len(),
            "samples": self.samples.iter().map(|v| round(*v, 4)).collect::<Vec<_>>(),
        })
    }

    /// "median (min-max)" with `prec` decimals.
    pub fn show(&self, prec: usize) -> String {
        if self.is_empty() {
            return "-".into();
        }
        format!(
            "{:.p$} ({:.p$}-{:.p$})",
            self.median(),
            self.min(),
            self.max(),
            p = prec
        )
    }
}

pub fn round(v: f64, digits: i32) -> Value {
    if !v.is_finite() {
        return Value::Null;
    }
    let m = 10f64.powi(digits);
    json!((v * m).round() / m)
}

/// A small deterministic PRNG (xorshift64*), so frame sets are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
