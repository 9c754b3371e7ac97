//! Order statistics the benchmarks report: this machine is small and
//! noisy, so figures are medians and percentiles, never means.

/// The `p` quantile (0.0–1.0) of an ascending slice; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The median of `v`, sorted here.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}
