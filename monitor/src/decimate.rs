//! Server-side decimation of long series that never drops an extreme.
//!
//! A million loss points are too many to send or draw; a chart is a few thousand pixels
//! wide. TensorBoard keeps a reservoir sample of about 1,000 scalars per series and MLflow
//! draws about 320, so a loss spike (a bad batch, a diverging step) can vanish from the
//! curve. Here [`minmax_lttb`] first keeps the minimum and maximum of many small buckets
//! (MinMax), picks the visually largest triangles among them (LTTB, Steinarsson 2013)
//! for half the budget, and fills the other half with the minimum and maximum of equal
//! segments: the extremes of every segment, and so every isolated spike, are drawn.
//!
//! [`Chunked`] makes updates cheap while a run grows: points are cut into fixed chunks of
//! [`CHUNK`] points; a full chunk is decimated once and cached, and only the open last
//! chunk is recomputed at each update. Serving then decimates the cached points again to
//! the page's budget, which again keeps each chunk's extremes.

/// Raw points per chunk.
pub const CHUNK: usize = 4096;
/// Points kept per chunk (before the serving pass).
pub const PER_CHUNK: usize = 256;

/// A point: `(x, y)`.
pub type Point = (f64, f64);

/// Reduce `pts` (sorted by strictly increasing x) to at most `n` points (`n` >= 4),
/// keeping the first and last points and the minimum and maximum of each of `n / 4`
/// equal segments.
pub fn minmax_lttb(pts: &[Point], n: usize) -> Vec<Point> {
    let n = n.max(4);
    if pts.len() <= n {
        return pts.to_vec();
    }
    // MinMax preselection: min and max of 2n buckets over the inner points.
    let inner = &pts[1..pts.len() - 1];
    let buckets = (n * 2).min(inner.len());
    let mut pre = Vec::with_capacity(buckets * 2 + 2);
    pre.push(pts[0]);
    for b in 0..buckets {
        let s = b * inner.len() / buckets;
        let e = ((b + 1) * inner.len() / buckets).max(s + 1);
        let (lo, hi) = extremes(&inner[s..e]);
        if lo <= hi {
            pre.push(inner[s + lo]);
            if hi != lo {
                pre.push(inner[s + hi]);
            }
        } else {
            pre.push(inner[s + hi]);
            pre.push(inner[s + lo]);
        }
    }
    pre.push(pts[pts.len() - 1]);
    // LTTB over half the budget, then the minimum and maximum of each of n/4 equal
    // segments of the input put back where LTTB left them out: an extreme of any
    // segment (a spike) is always drawn.
    let mut out = lttb(&pre, n / 2);
    let segments = n / 4;
    let mut missing = Vec::new();
    for k in 0..segments {
        let s = k * pts.len() / segments;
        let e = (k + 1) * pts.len() / segments;
        let (lo, hi) = extremes(&pts[s..e]);
        for p in [pts[s + lo], pts[s + hi]] {
            if !missing.contains(&p) {
                missing.push(p);
            }
        }
    }
    missing.retain(|p| out.binary_search_by(|q| q.0.total_cmp(&p.0)).is_err());
    out.extend(missing);
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Indices of the minimum and maximum y (NaN ignored; `(0, 0)` when all are NaN).
fn extremes(pts: &[Point]) -> (usize, usize) {
    let (mut lo, mut hi) = (0, 0);
    for (i, p) in pts.iter().enumerate() {
        if p.1 < pts[lo].1 || pts[lo].1.is_nan() {
            lo = i;
        }
        if p.1 > pts[hi].1 || pts[hi].1.is_nan() {
            hi = i;
        }
    }
    (lo, hi)
}

/// Largest-Triangle-Three-Buckets down to `n` points (first and last kept).
fn lttb(pts: &[Point], n: usize) -> Vec<Point> {
    if pts.len() <= n || n < 3 {
        return pts.to_vec();
    }
    let mut out = Vec::with_capacity(n);
    out.push(pts[0]);
    let every = (pts.len() - 2) as f64 / (n - 2) as f64;
    let mut a = 0usize;
    for i in 0..n - 2 {
        let s = (i as f64 * every) as usize + 1;
        let e = (((i + 1) as f64 * every) as usize + 1).min(pts.len() - 1);
        // The next bucket's average (the last point for the last bucket).
        let ns = e;
        let ne = (((i + 2) as f64 * every) as usize + 1).min(pts.len());
        let next = &pts[ns..ne.max(ns + 1)];
        let (ax, ay) = next
            .iter()
            .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1));
        let (ax, ay) = (ax / next.len() as f64, ay / next.len() as f64);
        let (px, py) = pts[a];
        let mut best = s;
        let mut best_area = -1.0;
        for (j, p) in pts.iter().enumerate().take(e.max(s + 1)).skip(s) {
            let area = ((px - ax) * (p.1 - py) - (px - p.0) * (ay - py)).abs();
            if area > best_area {
                best_area = area;
                best = j;
            }
        }
        out.push(pts[best]);
        a = best;
    }
    out.push(pts[pts.len() - 1]);
    out
}

/// A growing series decimated chunk by chunk (see the module docs).
#[derive(Default, Debug, Clone)]
pub struct Chunked {
    raw: Vec<Point>,
    /// Decimated full chunks, in order.
    closed: Vec<Vec<Point>>,
    /// The decimated open chunk.
    open: Vec<Point>,
}

impl Chunked {
    /// Append points (x increasing) and redo what changed: newly full chunks once, the
    /// open chunk always.
    pub fn extend(&mut self, pts: &[Point]) {
        self.raw.extend_from_slice(pts);
        let full = self.raw.len() / CHUNK;
        while self.closed.len() < full {
            let c = self.closed.len();
            let chunk = &self.raw[c * CHUNK..(c + 1) * CHUNK];
            self.closed.push(minmax_lttb(chunk, PER_CHUNK));
        }
        self.open = minmax_lttb(&self.raw[full * CHUNK..], PER_CHUNK);
    }

    /// All raw points.
    pub fn raw(&self) -> &[Point] {
        &self.raw
    }

    /// The whole series in about `n` points (each chunk's extremes kept).
    pub fn overview(&self, n: usize) -> Vec<Point> {
        let cached: Vec<Point> = self
            .closed
            .iter()
            .flatten()
            .chain(&self.open)
            .copied()
            .collect();
        if cached.len() <= n {
            return cached;
        }
        // Decimate per group of chunks so each chunk's extremes survive the second pass.
        let groups = self.closed.len() + usize::from(!self.open.is_empty());
        let per = (n / groups.max(1)).max(4);
        self.closed
            .iter()
            .chain(std::iter::once(&self.open).filter(|o| !o.is_empty()))
            .flat_map(|c| minmax_lttb(c, per))
            .collect()
    }

    /// Points with `from <= x <= to`: raw when at most `n`, else decimated.
    pub fn range(&self, from: f64, to: f64, n: usize) -> Vec<Point> {
        let s = self.raw.partition_point(|p| p.0 < from);
        let e = self.raw.partition_point(|p| p.0 <= to);
        minmax_lttb(&self.raw[s..e.max(s)], n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A noisy series with sharp single-point spikes up and down.
    fn spiky(n: usize) -> Vec<Point> {
        let mut state = 12345u64;
        (0..n)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                let noise = (state >> 33) as f64 / (1u64 << 31) as f64;
                let mut y = 1.0 / (1.0 + i as f64 / 1000.0) + 0.05 * noise;
                if i % 9973 == 17 {
                    y += 5.0 + (i % 3) as f64;
                }
                if i % 12007 == 5 {
                    y -= 3.0;
                }
                (i as f64, y)
            })
            .collect()
    }

    #[test]
    fn extremes_survive_minmax_lttb() {
        let pts = spiky(200_000);
        let out = minmax_lttb(&pts, 1000);
        assert!(out.len() <= 1000, "{}", out.len());
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "not in x order");
        for p in pts.iter().filter(|p| p.1 > 4.0 || p.1 < -1.0) {
            assert!(out.contains(p), "spike {p:?} dropped");
        }
        assert_eq!(out[0], pts[0]);
        assert_eq!(out[out.len() - 1], pts[pts.len() - 1]);
    }

    #[test]
    fn chunked_keeps_every_chunk_extreme_and_matches_a_full_rebuild() {
        let pts = spiky(300_000);
        let mut grown = Chunked::default();
        for part in pts.chunks(7_777) {
            grown.extend(part);
        }
        let mut once = Chunked::default();
        once.extend(&pts);
        assert_eq!(grown.overview(2000), once.overview(2000));
        let view = grown.overview(2000);
        assert!(view.len() <= 2000, "{}", view.len());
        for chunk in pts.chunks(CHUNK) {
            let (lo, hi) = extremes(chunk);
            assert!(view.contains(&chunk[lo]) && view.contains(&chunk[hi]));
        }
    }

    #[test]
    fn zoomed_in_ranges_are_raw() {
        let pts = spiky(100_000);
        let mut c = Chunked::default();
        c.extend(&pts);
        assert_eq!(c.range(500.0, 1499.0, 2000), pts[500..1500].to_vec());
        assert!(c.range(0.0, 1e9, 2000).len() <= 2000);
        assert!(c.range(5.0, 4.0, 10).is_empty());
    }

    #[test]
    fn short_and_nan_series() {
        assert!(minmax_lttb(&[], 10).is_empty());
        let p = vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)];
        assert_eq!(minmax_lttb(&p, 10).len(), 3);
        let nan: Vec<Point> = (0..100).map(|i| (i as f64, f64::NAN)).collect();
        assert!(!minmax_lttb(&nan, 10).is_empty());
    }
}
