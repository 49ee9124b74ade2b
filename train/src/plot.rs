//! `loss.png`: the training curve at a glance, redrawn at each validation.
//!
//! Drawn by hand with the `png` encoder (a few lines and dots): plotters needs system font
//! libraries for any text, and a headless training box should not need fontconfig. Hence
//! no text: the legend is fixed and documented — blue: training loss (moving average over
//! 1% of the steps, scaled so its maximum touches the top), red, green, orange...:
//! validation Dice of class 1, 2, 3... on 0..1; grey lines at Dice 0.25, 0.5, 0.75; the
//! x axis spans iteration 0 to the last step.

use std::io::Write;
use std::path::Path;

use crate::trainer::Validation;

/// Curve data, also rebuilt from `metrics.jsonl` on resume.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// `(iteration, loss)` per step.
    pub losses: Vec<(u64, f64)>,
    /// Validations in order.
    pub validations: Vec<Validation>,
}

impl History {
    /// Steps and validations from a `metrics.jsonl` (empty when it does not exist).
    pub fn read(path: &Path) -> History {
        let mut h = History::default();
        let Ok(text) = std::fs::read_to_string(path) else {
            return h;
        };
        for v in text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            let Some(it) = v.get("iteration").and_then(|i| i.as_u64()) else {
                continue;
            };
            if let Some(l) = v.get("loss").and_then(|l| l.as_f64()) {
                h.losses.push((it, l));
            }
            if let Some(obj) = v.get("validation").and_then(|d| d.as_object()) {
                h.validations.push(Validation {
                    iteration: it,
                    dice: obj.iter().map(|(k, d)| (k.clone(), d.as_f64())).collect(),
                    mean_dice: v.get("mean_dice").and_then(|m| m.as_f64()).unwrap_or(0.0),
                });
            }
        }
        h
    }
}

const W: usize = 640;
const H: usize = 320;
const MARGIN: usize = 10;
const COLOURS: [[u8; 3]; 4] = [[220, 40, 40], [30, 160, 60], [240, 140, 0], [150, 60, 200]];

struct Canvas {
    rgb: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            let i = (y as usize * W + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Bresenham line.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
}

/// Draw `h` into `path` (atomically).
pub fn write(path: &Path, h: &History) -> std::io::Result<()> {
    let mut c = Canvas {
        rgb: vec![255; W * H * 3],
    };
    let (pw, ph) = ((W - 2 * MARGIN) as f64, (H - 2 * MARGIN) as f64);
    let last = h
        .losses
        .last()
        .map(|l| l.0)
        .into_iter()
        .chain(h.validations.last().map(|v| v.iteration))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let px = |it: f64| (MARGIN as f64 + it / last * pw).round() as i64;
    let py = |frac: f64| (MARGIN as f64 + (1.0 - frac.clamp(0.0, 1.0)) * ph).round() as i64;
    for frac in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let grey = if frac == 0.0 || frac == 1.0 { 120 } else { 210 };
        c.line((px(0.0), py(frac)), (px(last), py(frac)), [grey; 3]);
    }
    c.line((px(0.0), py(0.0)), (px(0.0), py(1.0)), [120; 3]);
    // Training loss, smoothed.
    let win = (h.losses.len() / 100).max(1);
    let smooth: Vec<(f64, f64)> = h
        .losses
        .windows(win)
        .map(|w| {
            let it = w[w.len() - 1].0 as f64;
            (it, w.iter().map(|l| l.1).sum::<f64>() / w.len() as f64)
        })
        .collect();
    let max = smooth.iter().map(|s| s.1).fold(0.0, f64::max);
    if max > 0.0 {
        for pair in smooth.windows(2) {
            let a = (px(pair[0].0), py(pair[0].1 / max));
            let b = (px(pair[1].0), py(pair[1].1 / max));
            c.line(a, b, [40, 90, 220]);
        }
    }
    // Validation Dice per class.
    let classes = h
        .validations
        .iter()
        .map(|v| v.dice.len())
        .max()
        .unwrap_or(0);
    for k in 0..classes {
        let colour = COLOURS[k % COLOURS.len()];
        let pts: Vec<(i64, i64)> = h
            .validations
            .iter()
            .filter_map(|v| {
                let d = v.dice.get(k)?.1?;
                Some((px(v.iteration as f64), py(d)))
            })
            .collect();
        for p in &pts {
            for (dx, dy) in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)] {
                c.set(p.0 + dx, p.1 + dy, colour);
            }
        }
        for pair in pts.windows(2) {
            c.line(pair[0], pair[1], colour);
        }
    }
    voxflow_engine::fsutil::write_atomic(path, |w| write_png(w, W, H, &c.rgb))
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Encode 8-bit RGB (`width * height * 3` bytes, rows top to bottom) as PNG; also the
/// encoder of the overlay montages.
pub fn write_png(
    w: &mut dyn Write,
    width: usize,
    height: usize,
    rgb: &[u8],
) -> std::io::Result<()> {
    let err = |e: png::EncodingError| std::io::Error::other(e.to_string());
    let mut enc = png::Encoder::new(w, width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)
}
