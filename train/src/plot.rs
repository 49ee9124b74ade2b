//! `loss.png`: the training curve at a glance, redrawn at each validation.
//!
//! Drawn with plotters into an RGB buffer and encoded by [`write_png`]. Text (title, axis
//! names, tick numbers, legend) uses the bundled Roboto font through plotters' `ab_glyph`
//! backend: plotters' default text path needs fontconfig and system fonts, which a headless
//! training box may not have. Left axis: training loss per step (light) and its moving
//! average over 1% of the steps; right axis: validation Dice per class on 0..1.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use voxflow_nodes::render::png::write_png;

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

const W: u32 = 900;
const H: u32 = 500;
const FONT: &str = "sans-serif";
/// Dice colours per class (1, 2, 3, ...); the loss is blue.
const COLOURS: [RGBColor; 4] = [
    RGBColor(220, 40, 40),
    RGBColor(30, 160, 60),
    RGBColor(240, 140, 0),
    RGBColor(150, 60, 200),
];
const LOSS: RGBColor = RGBColor(40, 90, 220);
const LOSS_RAW: RGBColor = RGBColor(170, 190, 240);

/// Why the loss plot could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlotError {
    /// The font compiled into the binary was refused by ab_glyph.
    #[error("the bundled font does not load")]
    Font,
    /// plotters failed (its message).
    #[error("drawing the loss plot: {0}")]
    Draw(String),
}

/// Register the bundled font once; plotters looks fonts up by family name.
fn font() -> Result<(), PlotError> {
    static DONE: OnceLock<Result<(), PlotError>> = OnceLock::new();
    DONE.get_or_init(|| {
        register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../assets/Roboto-Regular.ttf"),
        )
        .map_err(|_| PlotError::Font)
    })
    .clone()
}

/// Draw `h` into `path` (atomically).
pub fn write(path: &Path, h: &History) -> std::io::Result<()> {
    let rgb = render(h).map_err(std::io::Error::other)?;
    voxflow_engine::fsutil::write_atomic(path, |w| write_png(w, W as usize, H as usize, &rgb))
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The plot as `W x H` RGB bytes.
pub fn render(h: &History) -> Result<Vec<u8>, PlotError> {
    font()?;
    let mut rgb = vec![255u8; (W * H * 3) as usize];
    draw(&mut rgb, h).map_err(|e| PlotError::Draw(e.to_string()))?;
    Ok(rgb)
}

fn draw(rgb: &mut [u8], h: &History) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(rgb, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let last = h
        .losses
        .last()
        .map(|l| l.0)
        .into_iter()
        .chain(h.validations.last().map(|v| v.iteration))
        .max()
        .unwrap_or(1)
        .max(1);
    // Training loss smoothed over 1% of the steps.
    let win = (h.losses.len() / 100).max(1);
    let smooth: Vec<(u64, f64)> = h
        .losses
        .windows(win)
        .map(|w| {
            (
                w[w.len() - 1].0,
                w.iter().map(|l| l.1).sum::<f64>() / w.len() as f64,
            )
        })
        .collect();
    let max_loss = h
        .losses
        .iter()
        .map(|l| l.1)
        .filter(|l| l.is_finite())
        .fold(0.0, f64::max);
    let top = if max_loss > 0.0 { max_loss * 1.05 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Training loss and validation Dice (step {last})"),
            (FONT, 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0u64..last, 0.0..top)?
        .set_secondary_coord(0u64..last, 0.0..1.0);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("validation Dice")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()?;
    if !h.losses.is_empty() {
        chart
            .draw_series(LineSeries::new(h.losses.iter().copied(), LOSS_RAW))?
            .label("loss per step")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], LOSS_RAW));
        chart
            .draw_series(LineSeries::new(smooth, LOSS.stroke_width(2)))?
            .label(format!("loss, mean of {win} steps"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], LOSS.stroke_width(2)));
    }
    let classes = h
        .validations
        .iter()
        .map(|v| v.dice.len())
        .max()
        .unwrap_or(0);
    for k in 0..classes {
        let colour = COLOURS[k % COLOURS.len()];
        let name = h
            .validations
            .iter()
            .find_map(|v| v.dice.get(k).map(|d| d.0.clone()))
            .unwrap_or_default();
        let pts: Vec<(u64, f64)> = h
            .validations
            .iter()
            .filter_map(|v| Some((v.iteration, v.dice.get(k)?.1?)))
            .collect();
        chart.draw_secondary_series(LineSeries::new(pts.iter().copied(), colour))?;
        chart
            .draw_secondary_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))?
            .label(format!("Dice {name}"))
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        let losses = (1..=2000u64)
            .map(|i| {
                (
                    i,
                    1.5 * (-(i as f64) / 400.0).exp() + 0.05 * ((i % 7) as f64),
                )
            })
            .collect();
        let validations = (0..=2000u64)
            .step_by(200)
            .map(|i| Validation {
                iteration: i,
                dice: vec![
                    (
                        "abdominal_wall_muscles".into(),
                        Some(1.0 - (-(i as f64) / 500.0).exp()),
                    ),
                    (
                        "paravertebral_muscles".into(),
                        Some(0.9 - 0.8 * (-(i as f64) / 300.0).exp()),
                    ),
                ],
                mean_dice: 0.0,
            })
            .collect();
        History {
            losses,
            validations,
        }
    }

    /// Text is drawn: the title band and the tick-number columns beside both axes hold
    /// dark pixels (without a font they would stay white). The picture is kept as
    /// `target/artifacts/loss.png` to look at.
    #[test]
    fn plot_has_title_ticks_and_legend_text() {
        let h = history();
        let rgb = render(&h).unwrap();
        let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
            let mut n = 0;
            for y in y0..y1 {
                for x in x0..x1 {
                    let i = ((y * W + x) * 3) as usize;
                    if rgb[i..i + 3].iter().all(|&c| c < 100) {
                        n += 1;
                    }
                }
            }
            n
        };
        assert!(dark(200, 700, 0, 40) > 100, "no title");
        assert!(dark(0, 60, 60, H - 60) > 100, "no left tick numbers");
        assert!(dark(W - 60, W, 60, H - 60) > 100, "no right tick numbers");
        assert!(dark(80, W - 80, H - 40, H) > 100, "no step numbers");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir.join("loss.png"), &h).unwrap();
        let empty = render(&History::default()).unwrap();
        assert_eq!(empty.len(), (W * H * 3) as usize);
    }
}
