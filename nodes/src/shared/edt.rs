//! Exact Euclidean distance transforms (Felzenszwalb–Huttenlocher), anisotropic.
//!
//! The transform is separable: the squared distance to the nearest feature voxel is a
//! minimum of `sx²dx² + sy²dy² + sz²dz²`, which is computed one axis at a time. The
//! first pass (z) only needs the distance to the nearest feature in the same column,
//! a two-sweep scan over whole slices (vectorised, cache friendly). The y and x passes
//! then work slice by slice, so each rayon task keeps one slice in cache and no pass
//! walks memory with a large stride. The x pass builds the lower envelope of parabolas
//! of a row and evaluates it only at the voxels asked for (metrics sample the distance
//! map at surface voxels only, so most rows and slices are skipped entirely).
//!
//! Distances are between voxel centres, in millimetres. All arithmetic inside a line is
//! in `f64` on local indices, so results are exact up to rounding (checked against a
//! brute-force transform by a property test).

use rayon::prelude::*;

/// Column distance (in voxels) meaning "no feature in this column".
const NO_FEATURE: u16 = u16::MAX;

/// The lower envelope of the parabolas `w (p - q)² + f(q)` of one line.
///
/// Buffers are sized once per task and reused for every line (no allocation, no
/// push/pop in the hot loop); the divisions of the intersection formula are replaced by
/// a table of `1 / (2 w d)` for the integer apex distances `d`.
struct Envelope {
    /// Weight `w`: the squared voxel spacing along the line (mm²).
    w: f64,
    /// `recip[d] = 1 / (2 w d)`.
    recip: Vec<f64>,
    /// Apex positions (indices along the line) of the parabolas on the envelope.
    pos: Vec<usize>,
    /// Apex heights `f(q)`.
    height: Vec<f64>,
    /// `f(q) + w q²`, cached for the intersections.
    lifted: Vec<f64>,
    /// Left boundary of each parabola's interval; one more than the parabolas.
    start: Vec<f64>,
    /// Parabolas on the envelope.
    len: usize,
}

impl Envelope {
    /// An envelope for lines of `n` voxels with squared spacing `w`.
    fn new(n: usize, w: f64) -> Self {
        let recip = (0..n.max(1))
            .map(|d| {
                if d == 0 {
                    0.0
                } else {
                    1.0 / (2.0 * w * d as f64)
                }
            })
            .collect();
        Envelope {
            w,
            recip,
            pos: vec![0; n],
            height: vec![0.0; n],
            lifted: vec![0.0; n],
            start: vec![0.0; n + 1],
            len: 0,
        }
    }

    /// Build the envelope of the finite values of `f` (infinite values are "no feature"
    /// and take no part). Returns false when `f` has no finite value.
    #[inline]
    fn build(&mut self, f: &[f64]) -> bool {
        let n = f.len();
        let w = self.w;
        let (pos, height, lifted) = (
            &mut self.pos[..n],
            &mut self.height[..n],
            &mut self.lifted[..n],
        );
        let start = &mut self.start[..n + 1];
        let recip = &self.recip[..n];
        let mut k = 0usize;
        for (q, &fq) in f.iter().enumerate() {
            if fq == f64::INFINITY {
                continue;
            }
            let qf = q as f64;
            let lq = fq + w * qf * qf;
            let mut s = f64::NEG_INFINITY;
            while k > 0 {
                let t = (lq - lifted[k - 1]) * recip[q - pos[k - 1]];
                if t <= start[k - 1] {
                    k -= 1;
                } else {
                    s = t;
                    break;
                }
            }
            start[k] = s;
            pos[k] = q;
            height[k] = fq;
            lifted[k] = lq;
            k += 1;
        }
        self.len = k;
        if k == 0 {
            return false;
        }
        start[k] = f64::INFINITY;
        true
    }

    /// Evaluate the envelope at every index of `out` (ascending), writing squared
    /// distances.
    #[inline]
    fn eval_all(&self, out: &mut [f64]) {
        let w = self.w;
        let (pos, height, start) = (
            &self.pos[..self.len],
            &self.height[..self.len],
            &self.start[..self.len + 1],
        );
        let mut k = 0;
        for (p, o) in out.iter_mut().enumerate() {
            let pf = p as f64;
            while start[k + 1] < pf {
                k += 1;
            }
            let d = pf - pos[k] as f64;
            *o = w * d * d + height[k];
        }
    }
}

/// Most lookups a query's local search may make before it is handed to the separable
/// transform (about the cost of one slice row of it).
pub const SEARCH_LIMIT: usize = 4096;

/// How distances are computed; both are exact and give the same values (up to the
/// last bits of rounding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EdtMethod {
    /// Local search per query with the separable transform as fallback (fast when the
    /// queries lie near the features, as surfaces of similar masks do).
    #[default]
    Hybrid,
    /// The separable Felzenszwalb-Huttenlocher transform on every slice with a query
    /// (cost independent of how far apart the masks are).
    Separable,
    /// [`EdtMethod::Hybrid`] with another search limit (tests: a small one makes most
    /// searches give up and fall back).
    #[cfg(test)]
    HybridWithLimit(usize),
}

impl EdtMethod {
    /// Most lookups a query's local search may make (0: separable transform only).
    fn search_limit(self) -> usize {
        match self {
            EdtMethod::Hybrid => SEARCH_LIMIT,
            EdtMethod::Separable => 0,
            #[cfg(test)]
            EdtMethod::HybridWithLimit(limit) => limit,
        }
    }
}

/// Squared distances (mm²) from voxels of a box to the nearest feature voxel, visited
/// only at query voxels, computed by `method`.
///
/// `codes` holds one byte per voxel of a box of size `dims` (x fastest); a voxel is a
/// feature when `code & feature_bits != 0`, and is visited when `is_query(code)`.
/// `visit(acc, index, code, d2)` is called once for each query voxel (`index` its
/// linear index in the box), with `d2` the squared
/// Euclidean distance in mm² to the nearest feature (infinite when the box has none),
/// on accumulators made by `init()`. Returns the accumulators (one per part of the
/// work, in no meaningful order; callers merge them). Work runs in parallel.
///
/// Voxels outside the box take no part: features outside it are not seen. Callers
/// that measure between two masks use a box holding both, which makes the result
/// exact for them.
///
/// How ([`EdtMethod::Hybrid`]): metrics sample distance maps only at surface voxels,
/// which mostly lie close to the other surface. So each query first searches outwards
/// over rows `(y', z')`, using the precomputed distance to the nearest feature along x
/// in each row, and stops as soon as no unvisited row can be closer (exact). Queries
/// whose search would exceed [`SEARCH_LIMIT`] lookups (masks far apart) are finished by
/// the exact separable transform ([`fh_sample_sq_edt`]), run only on the slices and rows
/// holding them.
#[allow(clippy::too_many_arguments)]
pub fn sample_sq_edt_with<A, Q, I, V>(
    method: EdtMethod,
    codes: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
    feature_bits: u8,
    is_query: Q,
    init: I,
    visit: V,
) -> Vec<A>
where
    A: Send,
    Q: Fn(u8) -> bool + Sync,
    I: Fn() -> A + Sync,
    V: Fn(&mut A, usize, u8, f64) + Sync,
{
    let limit = method.search_limit();
    let [nx, ny, nz] = dims;
    let plane = nx * ny;
    assert_eq!(codes.len(), plane * nz, "codes must cover the box");
    if plane * nz == 0 {
        return Vec::new();
    }
    if !codes.iter().any(|&c| c & feature_bits != 0) {
        // No feature: every distance is infinite (and searches would never stop early).
        let mut acc = init();
        for (i, &c) in codes.iter().enumerate() {
            if is_query(c) {
                visit(&mut acc, i, c, f64::INFINITY);
            }
        }
        return vec![acc];
    }
    if limit == 0 || nx >= u16::MAX as usize {
        return fh_sample_sq_edt(
            codes,
            dims,
            spacing,
            feature_bits,
            |_, c| is_query(c),
            init,
            visit,
        );
    }
    let rows = row_distances(codes, dims, feature_bits);
    let steps = Steps::new(dims, spacing);
    let queries = QueryTable::new(&is_query);
    // Per slice: searched queries visited, the rest listed for the fallback. A slice
    // stops searching once its failed searches have cost about as much as running the
    // separable transform on it.
    let budget = 4 * plane;
    let parts: Vec<(A, Vec<usize>)> = (0..nz)
        .into_par_iter()
        .filter_map(|z| {
            let mut acc: Option<A> = None;
            let mut unresolved = Vec::new();
            let mut wasted = 0usize;
            // Results of neighbouring queries bound this one: d(x, y) <= d(x - 1, y) + sx
            // and d(x, y) <= d(x, y - 1) + sy (inflated a little against rounding), so
            // searches far from the features stop early. `last[x]` holds the distance
            // (mm) found at column x and the row it was found in.
            let mut last: Vec<(usize, f64)> = vec![(usize::MAX, 0.0); nx];
            let grow = |d: f64, step: f64| {
                let b = d + step;
                b * b * (1.0 + 1e-9) + 1e-12
            };
            for y in 0..ny {
                let base = z * plane + y * nx;
                let mut left: Option<(usize, f64)> = None;
                queries.for_each(&codes[base..base + nx], |x, c| {
                    let acc = acc.get_or_insert_with(&init);
                    if wasted > budget {
                        unresolved.push(base + x);
                        return;
                    }
                    let mut bound = f64::INFINITY;
                    if y > 0 && last[x].0 == y - 1 {
                        bound = grow(last[x].1, spacing[1]);
                    }
                    if let Some((lx, d)) = left {
                        if lx + 1 == x {
                            bound = bound.min(grow(d, spacing[0]));
                        }
                    }
                    match search(&rows, dims, &steps, [x, y, z], bound, limit) {
                        Some(d2) => {
                            visit(acc, base + x, c, d2);
                            let d = d2.sqrt();
                            left = Some((x, d));
                            last[x] = (y, d);
                        }
                        None => {
                            wasted += limit;
                            unresolved.push(base + x);
                            left = None;
                        }
                    }
                });
            }
            acc.map(|a| (a, unresolved))
        })
        .collect();
    let mut out = Vec::with_capacity(parts.len() + nz);
    let mut pending: Vec<usize> = Vec::new();
    for (acc, u) in parts {
        out.push(acc);
        pending.extend(u);
    }
    #[cfg(test)]
    FALLBACK_QUERIES.fetch_add(pending.len(), std::sync::atomic::Ordering::Relaxed);
    if !pending.is_empty() {
        let mut flag = vec![false; codes.len()];
        for i in pending {
            flag[i] = true;
        }
        out.extend(fh_sample_sq_edt(
            codes,
            dims,
            spacing,
            feature_bits,
            |i, _| flag[i],
            &init,
            &visit,
        ));
    }
    out
}

/// Queries answered by the separable transform after their search gave up (tests
/// check that the fallback is exercised).
#[cfg(test)]
pub(crate) static FALLBACK_QUERIES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Squared step lengths (mm²) along each axis, so the search does no conversions.
struct Steps {
    /// `wx d²` for `d` in `0..nx`, then infinity for "no feature in the row" (`d = nx`).
    x: Vec<f64>,
    /// `wy d²` for `d` in `0..ny`.
    y: Vec<f64>,
    /// `wz d²` for `d` in `0..nz`.
    z: Vec<f64>,
}

impl Steps {
    fn new(dims: [usize; 3], spacing: [f64; 3]) -> Self {
        let sq = |n: usize, s: f64| {
            (0..n)
                .map(|d| (d as f64 * s) * (d as f64 * s))
                .collect::<Vec<f64>>()
        };
        let mut x = sq(dims[0], spacing[0]);
        x.push(f64::INFINITY);
        Steps {
            x,
            y: sq(dims[1], spacing[1]),
            z: sq(dims[2], spacing[2]),
        }
    }
}

/// Exact squared distance from voxel `p` to the nearest feature, by an outward search
/// over rows (`dz` = 0, ±1, ...; within each, `dy` = 0, ±1, ...) using the distance
/// along x to the nearest feature of each row (`rows`, `nx` meaning none). Stops when
/// the next rows cannot be closer than the best found; `None` after `limit` lookups.
///
/// `bound` must exceed the squared distance to some feature (or be infinite): rows that
/// cannot beat it are skipped, and that feature is still found, so the result is exact.
#[inline]
fn search(
    rows: &[u16],
    dims: [usize; 3],
    steps: &Steps,
    p: [usize; 3],
    bound: f64,
    limit: usize,
) -> Option<f64> {
    let [nx, ny, nz] = dims;
    let [x, y, z] = p;
    let mut best = bound;
    let mut lookups = 0usize;
    let mut look = |zz: usize, cz: f64, best: &mut f64| -> bool {
        let col = &rows[x + nx * ny * zz..];
        for dy in 0..ny {
            let cy = cz + steps.y[dy];
            if cy >= *best {
                break;
            }
            let up = y + dy < ny;
            let down = dy > 0 && dy <= y;
            if !up && dy > y {
                break; // out of the box both ways
            }
            if up {
                let c = cy + steps.x[col[nx * (y + dy)] as usize];
                *best = best.min(c);
                lookups += 1;
            }
            if down {
                let c = cy + steps.x[col[nx * (y - dy)] as usize];
                *best = best.min(c);
                lookups += 1;
            }
            if lookups > limit {
                return false;
            }
        }
        true
    };
    for dz in 0..nz {
        let cz = steps.z[dz];
        if cz >= best || (dz > z && z + dz >= nz) {
            break;
        }
        if z + dz < nz && !look(z + dz, cz, &mut best) {
            return None;
        }
        if dz > 0 && dz <= z && !look(z - dz, cz, &mut best) {
            return None;
        }
    }
    Some(best)
}

/// Which codes are queries, as a table, plus a bit mask every query code shares, so
/// scans can skip 8 voxels at a time when none of them can be a query.
struct QueryTable {
    is_query: [bool; 256],
    /// Every query code has one of these bits.
    any_of: u8,
}

impl QueryTable {
    fn new(is_query: impl Fn(u8) -> bool) -> Self {
        let table: [bool; 256] = std::array::from_fn(|c| is_query(c as u8));
        let all = |m: u8| {
            (0..=255u8)
                .filter(|&c| table[c as usize])
                .all(|c| c & m != 0)
        };
        // A single bit shared by all query codes skips most; else any non-zero byte.
        let any_of = (0..8).map(|b| 1u8 << b).find(|&m| all(m)).unwrap_or(0xff);
        QueryTable {
            is_query: table,
            any_of: if table[0] { 0 } else { any_of },
        }
    }

    /// Call `f(index, code)` for each query voxel of `codes`, in order.
    #[inline]
    fn for_each(&self, codes: &[u8], mut f: impl FnMut(usize, u8)) {
        let splat = u64::from_ne_bytes([self.any_of; 8]);
        let mut chunks = codes.chunks_exact(8);
        let mut base = 0;
        for chunk in &mut chunks {
            let w = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            if self.any_of == 0 || w & splat != 0 {
                for (k, &c) in chunk.iter().enumerate() {
                    if self.is_query[c as usize] {
                        f(base + k, c);
                    }
                }
            }
            base += 8;
        }
        for (k, &c) in chunks.remainder().iter().enumerate() {
            if self.is_query[c as usize] {
                f(base + k, c);
            }
        }
    }
}

/// Distance in voxels from each voxel to the nearest feature in its x row (`nx` when
/// the row has none), slices in parallel. Needs `nx < u16::MAX`. Each gap between two
/// features is filled from both ends with independent writes (vectorised), rather
/// than by a sweep carrying a dependency from voxel to voxel.
fn row_distances(codes: &[u8], dims: [usize; 3], feature_bits: u8) -> Vec<u16> {
    let nx = dims[0];
    let none = nx as u16;
    let mut d = vec![none; codes.len()];
    d.par_chunks_mut(nx * dims[1])
        .zip(codes.par_chunks(nx * dims[1]))
        .for_each(|(ds, cs)| {
            for (out, row) in ds.chunks_mut(nx).zip(cs.chunks(nx)) {
                let mut prev: Option<usize> = None;
                for_each_feature(row, feature_bits, |f| {
                    match prev {
                        None => fill_down(&mut out[..=f], f),
                        Some(p) => {
                            let mid = (p + f) / 2;
                            fill_up(&mut out[p..=mid]);
                            fill_down(&mut out[mid + 1..=f], f - mid - 1);
                        }
                    }
                    prev = Some(f);
                });
                if let Some(p) = prev {
                    fill_up(&mut out[p..]);
                }
            }
        });
    d
}

/// Call `f(x)` for each `x` (ascending) where `row[x] & bits != 0`, testing 8 voxels
/// at a time (features are sparse).
#[inline]
fn for_each_feature(row: &[u8], bits: u8, mut f: impl FnMut(usize)) {
    let splat = u64::from_le_bytes([bits; 8]);
    let mut chunks = row.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut m = u64::from_le_bytes(chunk.try_into().expect("8 bytes")) & splat;
        while m != 0 {
            let k = (m.trailing_zeros() / 8) as usize;
            f(base + k);
            m &= !(0xffu64 << (8 * k));
        }
        base += 8;
    }
    for (k, &c) in chunks.remainder().iter().enumerate() {
        if c & bits != 0 {
            f(base + k);
        }
    }
}

/// `out[i] = i`: distances to a feature just before the slice.
#[inline]
fn fill_up(out: &mut [u16]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = i as u16;
    }
}

/// `out[i] = last - i`: distances to a feature at index `last` of the slice's end.
#[inline]
fn fill_down(out: &mut [u16], last: usize) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = (last - i) as u16;
    }
}

/// [`sample_sq_edt_with`] by the separable transform alone (no local search); the
/// query predicate also gets the voxel's linear index in the box. Used as the
/// fallback of the hybrid and as its reference in tests.
///
/// Squared distances (mm²) from voxels of a box to the nearest feature voxel, visited
/// only at query voxels.
///
/// `codes` holds one byte per voxel of a box of size `dims` (x fastest); a voxel is a
/// feature when `code & feature_bits != 0`, and is visited when `is_query(code)`.
/// For every slice `z` with a query voxel, `init()` makes an accumulator and `visit(acc,
/// index, code, d2)` is called for each query voxel of the slice in x-fastest order, with
/// `d2` the squared Euclidean distance in mm² to the nearest feature (infinite when
/// the box has no feature). Returns the accumulators of the slices visited, in `z`
/// order (slices run in parallel).
///
/// Voxels outside the box take no part: features outside it are not seen. Callers
/// that measure between two masks use a box holding both, which makes the result
/// exact for them.
pub fn fh_sample_sq_edt<A, Q, I, V>(
    codes: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
    feature_bits: u8,
    is_query: Q,
    init: I,
    visit: V,
) -> Vec<A>
where
    A: Send,
    Q: Fn(usize, u8) -> bool + Sync,
    I: Fn() -> A + Sync,
    V: Fn(&mut A, usize, u8, f64) + Sync,
{
    let [nx, ny, nz] = dims;
    let plane = nx * ny;
    assert_eq!(codes.len(), plane * nz, "codes must cover the box");
    if plane * nz == 0 {
        return Vec::new();
    }
    let column = column_distances(codes, dims, feature_bits);
    let [wx, wy, wz] = spacing.map(|s| s * s);
    (0..nz)
        .into_par_iter()
        .filter_map(|z| {
            let cs = &codes[z * plane..(z + 1) * plane];
            let base = z * plane;
            if !cs.iter().enumerate().any(|(i, &c)| is_query(base + i, c)) {
                return None;
            }
            let zd = &column[z * plane..(z + 1) * plane];
            let mut acc = init();
            // Pass 2 input: squared distance along z, per voxel of the slice.
            let mut g: Vec<f64> = zd
                .iter()
                .map(|&d| {
                    if d == NO_FEATURE {
                        f64::INFINITY
                    } else {
                        wz * (d as f64) * (d as f64)
                    }
                })
                .collect();
            let mut env_y = Envelope::new(ny, wy);
            let mut env_x = Envelope::new(nx, wx);
            let mut line = vec![0.0f64; ny];
            // Pass along y, one column of the slice at a time.
            for x in 0..nx {
                for (y, l) in line.iter_mut().enumerate() {
                    *l = g[x + nx * y];
                }
                if env_y.build(&line) {
                    env_y.eval_all(&mut line);
                }
                for (y, l) in line.iter().enumerate() {
                    g[x + nx * y] = *l;
                }
            }
            // Pass along x, evaluated at the query voxels only.
            for y in 0..ny {
                let row_codes = &cs[y * nx..(y + 1) * nx];
                let row_base = base + y * nx;
                if !row_codes
                    .iter()
                    .enumerate()
                    .any(|(x, &c)| is_query(row_base + x, c))
                {
                    continue;
                }
                let row = &g[y * nx..(y + 1) * nx];
                if !env_x.build(row) {
                    for (x, &c) in row_codes.iter().enumerate() {
                        if is_query(row_base + x, c) {
                            visit(&mut acc, row_base + x, c, f64::INFINITY);
                        }
                    }
                    continue;
                }
                let mut k = 0;
                for (x, &c) in row_codes.iter().enumerate() {
                    if !is_query(row_base + x, c) {
                        continue;
                    }
                    let pf = x as f64;
                    while env_x.start[k + 1] < pf {
                        k += 1;
                    }
                    let d = pf - env_x.pos[k] as f64;
                    visit(&mut acc, row_base + x, c, wx * d * d + env_x.height[k]);
                }
            }
            Some(acc)
        })
        .collect()
}

/// Distance in voxels from each voxel to the nearest feature in its z column
/// ([`NO_FEATURE`] when the column has none): a forward and a backward sweep over
/// whole slices, each slice split among threads.
fn column_distances(codes: &[u8], dims: [usize; 3], feature_bits: u8) -> Vec<u16> {
    let [nx, ny, nz] = dims;
    let plane = nx * ny;
    const CHUNK: usize = 1 << 14;
    let mut d = vec![NO_FEATURE; plane * nz];
    for z in 0..nz {
        let (before, rest) = d.split_at_mut(z * plane);
        let cur = &mut rest[..plane];
        let cs = &codes[z * plane..(z + 1) * plane];
        if z == 0 {
            cur.par_chunks_mut(CHUNK)
                .zip(cs.par_chunks(CHUNK))
                .for_each(|(o, c)| {
                    for (o, &c) in o.iter_mut().zip(c) {
                        *o = if c & feature_bits != 0 { 0 } else { NO_FEATURE };
                    }
                });
        } else {
            let prev = &before[(z - 1) * plane..];
            cur.par_chunks_mut(CHUNK)
                .zip(cs.par_chunks(CHUNK))
                .zip(prev.par_chunks(CHUNK))
                .for_each(|((o, c), p)| {
                    for ((o, &c), &p) in o.iter_mut().zip(c).zip(p) {
                        // NO_FEATURE saturates; finite distances stay below nz < u16::MAX.
                        *o = if c & feature_bits != 0 {
                            0
                        } else {
                            p.saturating_add(1)
                        };
                    }
                });
        }
    }
    for z in (0..nz.saturating_sub(1)).rev() {
        let (head, tail) = d.split_at_mut((z + 1) * plane);
        let cur = &mut head[z * plane..];
        let next = &tail[..plane];
        cur.par_chunks_mut(CHUNK)
            .zip(next.par_chunks(CHUNK))
            .for_each(|(o, n)| {
                for (o, &n) in o.iter_mut().zip(n) {
                    *o = (*o).min(n.saturating_add(1));
                }
            });
    }
    d
}

/// The full squared distance map (mm²) of the feature voxels of a box, for tests and
/// tools that need every value; infinite everywhere when there is no feature.
pub fn sq_edt(features: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    sq_edt_with(features, dims, spacing, EdtMethod::Hybrid)
}

fn sq_edt_with(
    features: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    method: EdtMethod,
) -> Vec<f64> {
    let codes: Vec<u8> = features.iter().map(|&f| u8::from(f)).collect();
    let parts = sample_sq_edt_with(
        method,
        &codes,
        dims,
        spacing,
        1,
        |_| true,
        Vec::new,
        |acc: &mut Vec<(usize, f64)>, i, _, d2| acc.push((i, d2)),
    );
    let mut out = vec![f64::NAN; features.len()];
    for (i, d2) in parts.into_iter().flatten() {
        out[i] = d2;
    }
    out
}

/// The same map by brute force over all feature voxels (O(n²)), the reference for
/// tests.
pub fn sq_edt_brute_force(features: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let [nx, ny, _] = dims;
    let coords = |i: usize| [i % nx, (i / nx) % ny, i / (nx * ny)];
    let feats: Vec<[usize; 3]> = features
        .iter()
        .enumerate()
        .filter(|(_, &f)| f)
        .map(|(i, _)| coords(i))
        .collect();
    (0..features.len())
        .map(|i| {
            let p = coords(i);
            feats
                .iter()
                .map(|q| {
                    (0..3)
                        .map(|a| {
                            let d = (p[a] as f64 - q[a] as f64) * spacing[a];
                            d * d
                        })
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a.is_infinite() && b.is_infinite()) || (a - b).abs() <= 1e-9 * (1.0 + b.abs())
    }

    #[test]
    fn single_feature_distances_follow_spacing() {
        let dims = [5, 4, 3];
        let spacing = [0.5, 2.0, 3.0];
        let mut f = vec![false; 60];
        f[0] = true;
        let d = sq_edt(&f, dims, spacing);
        // Voxel (4, 3, 2): 4*0.5, 3*2, 2*3 mm away.
        let want = (2.0f64).powi(2) + 6.0f64.powi(2) + 6.0f64.powi(2);
        assert!(close(d[4 + 5 * (3 + 4 * 2)], want));
        assert_eq!(d[0], 0.0);
    }

    #[test]
    fn no_feature_gives_infinity() {
        let d = sq_edt(&[false; 8], [2, 2, 2], [1.0, 1.0, 1.0]);
        assert!(d.iter().all(|v| v.is_infinite()));
    }

    #[test]
    fn queries_skip_other_voxels() {
        let dims = [6, 1, 1];
        let codes = [1u8, 0, 2, 0, 2, 0];
        let got = sample_sq_edt_with(
            EdtMethod::Hybrid,
            &codes,
            dims,
            [2.0, 1.0, 1.0],
            1,
            |c| c & 2 != 0,
            Vec::new,
            |a, i, _, d| a.push((i, d)),
        );
        assert_eq!(got, vec![vec![(2, 16.0), (4, 64.0)]]);
    }

    #[test]
    fn long_rows_with_far_features_stay_exact() {
        // Long rows with features far apart along x and in other rows.
        let dims = [700, 3, 3];
        let mut f = vec![false; 700 * 9];
        for (x, y, z) in [(0, 0, 0), (699, 2, 1), (350, 1, 2), (20, 2, 2)] {
            f[x + 700 * (y + 3 * z)] = true;
        }
        let spacing = [0.3, 4.0, 5.0];
        let slow = sq_edt_brute_force(&f, dims, spacing);
        for method in [EdtMethod::Hybrid, EdtMethod::Separable] {
            let fast = sq_edt_with(&f, dims, spacing, method);
            for i in 0..f.len() {
                assert!(
                    close(fast[i], slow[i]),
                    "{method:?}, voxel {i}: {} vs {}",
                    fast[i],
                    slow[i]
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_brute_force(
            nx in 1usize..12, ny in 1usize..12, nz in 1usize..12,
            sx in 0.2f64..3.0, sy in 0.2f64..3.0, sz in 0.2f64..3.0,
            density in 0.0f64..0.4,
            seed in any::<u64>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let n = nx * ny * nz;
            let f: Vec<bool> = (0..n).map(|_| rng.random_bool(density)).collect();
            let dims = [nx, ny, nz];
            let spacing = [sx, sy, sz];
            let slow = sq_edt_brute_force(&f, dims, spacing);
            // Local search only (large limit), separable transform only, and a mix
            // where most searches give up and fall back (limit 2).
            for method in [EdtMethod::Hybrid, EdtMethod::Separable, EdtMethod::HybridWithLimit(2)] {
                let fast = sq_edt_with(&f, dims, spacing, method);
                prop_assert_eq!(fast.len(), n);
                for i in 0..n {
                    prop_assert!(close(fast[i], slow[i]), "{:?}, voxel {}: {} vs {}", method, i, fast[i], slow[i]);
                }
            }
        }
    }
}
