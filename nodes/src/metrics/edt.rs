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
/// Reused between lines of a task to avoid allocations.
#[derive(Default)]
struct Envelope {
    /// Apex positions (indices along the line) of the parabolas on the envelope.
    pos: Vec<f64>,
    /// Apex heights `f(q)`.
    height: Vec<f64>,
    /// `f(q) + w q²`, cached for the intersections.
    lifted: Vec<f64>,
    /// Left boundary of each parabola's interval; one more than the parabolas.
    start: Vec<f64>,
}

impl Envelope {
    /// Build the envelope of the finite values of `f` (infinite values are "no feature"
    /// and take no part). Returns false when `f` has no finite value.
    fn build(&mut self, f: &[f64], w: f64) -> bool {
        self.pos.clear();
        self.height.clear();
        self.lifted.clear();
        self.start.clear();
        let two_w = 2.0 * w;
        for (q, &fq) in f.iter().enumerate() {
            if !fq.is_finite() {
                continue;
            }
            let qf = q as f64;
            let lifted = fq + w * qf * qf;
            loop {
                let Some(&p) = self.pos.last() else {
                    self.start.push(f64::NEG_INFINITY);
                    break;
                };
                let s = (lifted - self.lifted[self.lifted.len() - 1]) / (two_w * (qf - p));
                if s <= self.start[self.start.len() - 1] {
                    self.pos.pop();
                    self.height.pop();
                    self.lifted.pop();
                    self.start.pop();
                } else {
                    self.start.push(s);
                    break;
                }
            }
            self.pos.push(qf);
            self.height.push(fq);
            self.lifted.push(lifted);
        }
        if self.pos.is_empty() {
            return false;
        }
        self.start.push(f64::INFINITY);
        true
    }

    /// Evaluate the envelope at every index of `out` (ascending), writing squared
    /// distances.
    fn eval_all(&self, out: &mut [f64], w: f64) {
        let mut k = 0;
        for (p, o) in out.iter_mut().enumerate() {
            let pf = p as f64;
            while self.start[k + 1] < pf {
                k += 1;
            }
            let d = pf - self.pos[k];
            *o = w * d * d + self.height[k];
        }
    }
}

/// Squared distances (mm²) from voxels of a box to the nearest feature voxel, visited
/// only at query voxels.
///
/// `codes` holds one byte per voxel of a box of size `dims` (x fastest); a voxel is a
/// feature when `code & feature_bits != 0`, and is visited when `is_query(code)`.
/// For every slice `z` with a query voxel, `init()` makes an accumulator and `visit(acc,
/// code, d2)` is called for each query voxel of the slice in x-fastest order, with
/// `d2` the squared Euclidean distance in mm² to the nearest feature (infinite when
/// the box has no feature). Returns the accumulators of the slices visited, in `z`
/// order (slices run in parallel).
///
/// Voxels outside the box take no part: features outside it are not seen. Callers
/// that measure between two masks use a box holding both, which makes the result
/// exact for them.
pub fn sample_sq_edt<A, Q, I, V>(
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
    V: Fn(&mut A, u8, f64) + Sync,
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
            if !cs.iter().any(|&c| is_query(c)) {
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
            let mut env = Envelope::default();
            let mut line = vec![0.0f64; ny];
            // Pass along y, one column of the slice at a time.
            for x in 0..nx {
                for (y, l) in line.iter_mut().enumerate() {
                    *l = g[x + nx * y];
                }
                if env.build(&line, wy) {
                    env.eval_all(&mut line, wy);
                }
                for (y, l) in line.iter().enumerate() {
                    g[x + nx * y] = *l;
                }
            }
            // Pass along x, evaluated at the query voxels only.
            for y in 0..ny {
                let row_codes = &cs[y * nx..(y + 1) * nx];
                if !row_codes.iter().any(|&c| is_query(c)) {
                    continue;
                }
                let row = &g[y * nx..(y + 1) * nx];
                if !env.build(row, wx) {
                    for &c in row_codes.iter().filter(|&&c| is_query(c)) {
                        visit(&mut acc, c, f64::INFINITY);
                    }
                    continue;
                }
                let mut k = 0;
                for (x, &c) in row_codes.iter().enumerate() {
                    if !is_query(c) {
                        continue;
                    }
                    let pf = x as f64;
                    while env.start[k + 1] < pf {
                        k += 1;
                    }
                    let d = pf - env.pos[k];
                    visit(&mut acc, c, wx * d * d + env.height[k]);
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
    let codes: Vec<u8> = features.iter().map(|&f| u8::from(f)).collect();
    let plane = dims[0] * dims[1];
    let slices = sample_sq_edt(
        &codes,
        dims,
        spacing,
        1,
        |_| true,
        Vec::new,
        |acc: &mut Vec<f64>, _, d2| acc.push(d2),
    );
    let out: Vec<f64> = slices.into_iter().flatten().collect();
    debug_assert_eq!(out.len(), plane * dims[2]);
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
        let got = sample_sq_edt(
            &codes,
            dims,
            [2.0, 1.0, 1.0],
            1,
            |c| c & 2 != 0,
            Vec::new,
            |a, _, d| a.push(d),
        );
        assert_eq!(got, vec![vec![16.0, 64.0]]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_brute_force(
            nx in 1usize..9, ny in 1usize..9, nz in 1usize..9,
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
            let fast = sq_edt(&f, dims, spacing);
            let slow = sq_edt_brute_force(&f, dims, spacing);
            prop_assert_eq!(fast.len(), n);
            for i in 0..n {
                prop_assert!(close(fast[i], slow[i]), "voxel {}: {} vs {}", i, fast[i], slow[i]);
            }
        }
    }
}
