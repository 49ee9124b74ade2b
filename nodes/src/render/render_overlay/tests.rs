use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use voxflow_engine::{
    Cell, Geometry, Image, Labels, Mask, NodeContext, NodeError, NodeType, Table, Value, Volume,
};

use super::*;
use crate::render::font::draw_text;
use crate::render::kernels::{
    blend, label_colour, tile_caption, DisplayAxes, BLUE, LEGEND_BACKGROUND, LEGEND_GREY, MAGENTA,
    RED,
};

/// A decoded PNG: width, height, RGB bytes.
struct Png {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Png {
    fn read(path: &Path) -> Png {
        let bytes = std::fs::read(path).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        Png {
            w: info.width as usize,
            h: info.height as usize,
            rgb: buf,
        }
    }

    fn px(&self, x: usize, y: usize) -> [u8; 3] {
        let i = 3 * (x + self.w * y);
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Centroid (x, y) of the pixels in a rectangle that satisfy `pred`.
    fn centroid(
        &self,
        x0: usize,
        y0: usize,
        w: usize,
        h: usize,
        pred: impl Fn([u8; 3]) -> bool,
    ) -> Option<(f64, f64)> {
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                if pred(self.px(x, y)) {
                    sx += x as f64;
                    sy += y as f64;
                    n += 1.0;
                }
            }
        }
        (n > 0.0).then(|| (sx / n, sy / n))
    }
}

// Colours blended half and half over any grey keep these channel differences.
fn is_blue(c: [u8; 3]) -> bool {
    let [r, g, b] = c.map(i32::from);
    b - r > 60 && b - g > 30
}

fn is_red(c: [u8; 3]) -> bool {
    let [r, g, b] = c.map(i32::from);
    r - b > 60 && r - g > 60
}

fn is_magenta(c: [u8; 3]) -> bool {
    let [r, g, b] = c.map(i32::from);
    r - g > 60 && b - g > 60
}

fn is_yellow(c: [u8; 3]) -> bool {
    let [r, g, b] = c.map(i32::from);
    r - b > 60 && g - b > 60
}

fn volume<T: Clone>(g: &Geometry, f: impl Fn(usize, usize, usize) -> T) -> Volume<T> {
    let [nx, ny, nz] = g.dims;
    let mut v = Vec::with_capacity(g.len());
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                v.push(f(x, y, z));
            }
        }
    }
    Volume::from_vec(g.clone(), v).unwrap()
}

fn run(
    params: serde_json::Value,
    inputs: Vec<(&str, Value)>,
    dir: &Path,
) -> Result<(PathBuf, Table), NodeError> {
    let node = RenderOverlay
        .build(&params, "cpu")
        .map_err(|e| NodeError::Other(format!("{e:?}")))?;
    let mut ctx = NodeContext::standalone("RenderOverlay", dir);
    for (port, v) in inputs {
        ctx = ctx.with_input(port, v);
    }
    node.run(&mut ctx)?;
    let out = ctx.take_outputs();
    let Some(Value::Table(t)) = out.get("slices") else {
        panic!("no slices table")
    };
    Ok((
        ctx.output_path(params["path"].as_str().unwrap()),
        (**t).clone(),
    ))
}

fn ct(g: &Geometry) -> Value {
    // A soft-tissue disc (40 HU) in air, so the grey level is known.
    let [nx, ny, _] = g.dims;
    Value::Image(Arc::new(Image::I16(volume(g, |x, y, _| {
        let (dx, dy) = (x as f64 - nx as f64 / 2.0, y as f64 - ny as f64 / 2.0);
        if dx * dx + dy * dy < (nx.min(ny) as f64 / 1.5).powi(2) {
            40
        } else {
            -1000
        }
    }))))
}

fn mask(m: Volume<u8>) -> Value {
    Value::Mask(Arc::new(
        Mask::from_bytes(m.geometry().clone(), m.as_slice()).unwrap(),
    ))
}

/// [`run`] over the phantom CT on `g` with one mask, `a`.
fn run_one(
    params: serde_json::Value,
    g: &Geometry,
    a: Volume<u8>,
    dir: &Path,
) -> Result<(PathBuf, Table), NodeError> {
    run(params, vec![("image", ct(g)), ("a", mask(a))], dir)
}

#[test]
fn montage_dimensions_and_colours() {
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::new([20, 16, 5], [1.0, 1.0, 2.0]);
    // a: x in 4..10, b: x in 7..13, same rows 1..5 (low on screen, clear of the slice
    // number in the top-left corner), on every slice.
    let a = volume(&g, |x, y, _| {
        u8::from((4..10).contains(&x) && (1..5).contains(&y))
    });
    let b = volume(&g, |x, y, _| {
        u8::from((7..13).contains(&x) && (1..5).contains(&y))
    });
    let (path, table) = run(
        json!({"path": "sub/o.png", "slices": [1, 3, 4], "columns": 2, "zoom": 1}),
        vec![("image", ct(&g)), ("a", mask(a)), ("b", mask(b))],
        dir.path(),
    )
    .unwrap();
    let png = Png::read(&path);
    // 2 columns x 2 rows of 20x16 tiles with 2-pixel gaps, the legend band below.
    assert_eq!(png.w, 2 * 20 + 2);
    assert!(png.h > 2 * 16 + 2, "legend band below the tiles");
    // Identity affine: voxel x runs right-to-left on screen, y bottom-to-top.
    let screen = |x: usize, y: usize| (19 - x, 15 - y);
    let (ax, ay) = screen(5, 2);
    assert!(is_blue(png.px(ax, ay)), "a only: {:?}", png.px(ax, ay));
    let (bx, by) = screen(11, 2);
    assert!(is_red(png.px(bx, by)), "b only: {:?}", png.px(bx, by));
    let (cx, cy) = screen(8, 2);
    assert!(is_magenta(png.px(cx, cy)), "both: {:?}", png.px(cx, cy));
    // Outside the masks: plain grey of 40 HU in a 400/40 window = 127.5 -> 128.
    let (gx, gy) = screen(4, 8);
    assert_eq!(png.px(gx, gy), [128, 128, 128]);
    // Blending keeps the CT visible: half grey, half colour.
    let blend = |c: [u8; 3]| c.map(|c| ((127.5 + f64::from(c)) / 2.0).round() as u8);
    assert_eq!(png.px(ax, ay), blend(BLUE));
    assert_eq!(png.px(bx, by), blend(RED));
    assert_eq!(png.px(cx, cy), blend(MAGENTA));
    // The second tile (slice 3) starts after the gap; the fourth cell stays background.
    assert!(is_blue(png.px(22 + ax, ay)));
    assert_eq!(png.px(22 + 10, 18 + 8), [40, 40, 40]);
    // Table: one row per tile with its voxel counts.
    assert_eq!(table.rows.len(), 3);
    // z_mm: slice 4 of 2 mm slices from the world origin.
    assert_eq!(
        table.rows[2],
        vec![
            Cell::Int(4),
            Cell::Int(1),
            Cell::Int(0),
            Cell::Int(24),
            Cell::Int(24),
            Cell::Float(8.0)
        ]
    );
    // The legend names a, b and both by their colours (as they show over grey).
    let band: Vec<[u8; 3]> = (34..png.h)
        .flat_map(|y| (0..png.w).map(move |x| (x, y)))
        .map(|(x, y)| png.px(x, y))
        .collect();
    for c in [BLUE, RED, MAGENTA] {
        assert!(
            band.contains(&crate::render::kernels::blend(c, LEGEND_GREY)),
            "swatch {c:?}"
        );
    }
    assert!(band.contains(&[255, 255, 255]), "legend text");
}

/// `text` drawn at scale 1 in white on `background` on its own: its size and its white
/// pixels (x fastest), what a legend entry or a caption must show.
fn text_pixels(text: &str, background: [u8; 3]) -> ((usize, usize), Vec<(usize, usize)>) {
    let (w, h) = crate::render::font::text_size(text, 1);
    let mut rgb = vec![0u8; w * h * 3];
    draw_text(&mut rgb, w, 0, 0, text, 1, [255; 3], background);
    let white = rgb
        .chunks(3)
        .enumerate()
        .filter(|(_, p)| p == &[255, 255, 255])
        .map(|(i, _)| (i % w, i / w))
        .collect();
    ((w, h), white)
}

#[test]
fn labels_are_named_in_a_legend_with_their_colours() {
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::new([60, 40, 3], [1.0, 1.0, 2.5]);
    // Label 1 on the left half of rows 1..5, label 2 on the right; label 3 nowhere.
    let labels = volume(&g, |x, y, _| match (x, (1..5).contains(&y)) {
        (0..=29, true) => 1u16,
        (30.., true) => 2,
        _ => 0,
    });
    let (path, _) = run(
        json!({"path": "l.png", "slices": [2], "zoom": 1,
               "label_names": [[1, "abdominal wall"], [2, "paravertebral"], [3, "psoas"]]}),
        vec![
            ("image", ct(&g)),
            ("a", Value::Labels(Arc::new(labels.clone()))),
        ],
        dir.path(),
    )
    .unwrap();
    let png = Png::read(&path);
    // Tiles: each label in its own colour (voxels x 20 and 40, y 2: inside the 40 HU
    // disc).
    let grey = 127.5;
    assert_eq!(png.px(59 - 20, 39 - 2), blend(label_colour(1), grey));
    assert_eq!(png.px(59 - 40, 39 - 2), blend(label_colour(2), grey));
    assert_ne!(label_colour(1), label_colour(2));
    // Legend under the 40-pixel tile: swatches of labels 1 and 2, none of 3 (not shown).
    let band = |pred: &dyn Fn([u8; 3]) -> bool| {
        (40..png.h)
            .flat_map(|y| (0..png.w).map(move |x| (x, y)))
            .filter(|&(x, y)| pred(png.px(x, y)))
            .count()
    };
    for l in [1u16, 2] {
        let c = blend(label_colour(l), LEGEND_GREY);
        assert!(band(&|p| p == c) > 0, "swatch of label {l}");
    }
    let c3 = blend(label_colour(3), LEGEND_GREY);
    assert_eq!(band(&|p| p == c3), 0, "label 3 is not on the tiles");
    // The legend's white text is exactly "1 abdominal wall" and "2 paravertebral" (the
    // tile caption sits above the band), whole: the 60-pixel montage is widened to the
    // longer entry (swatch 9 + 1, text 97, margins 4).
    assert_eq!(png.w, 111);
    let white = band(&|p| p == [255, 255, 255]);
    assert_eq!(
        white,
        text_pixels("1 abdominal wall", LEGEND_BACKGROUND).1.len()
            + text_pixels("2 paravertebral", LEGEND_BACKGROUND).1.len()
    );
    // With `b` the swatches are a, b and both, and the names follow as one key on a
    // second legend line (2 lines of 11 pixels and a 2-pixel margin under the tile).
    let (path, _) = run(
        json!({"path": "ab.png", "slices": [2], "zoom": 1, "a_name": "truth",
               "b_name": "net", "label_names": [[1, "abdominal wall"], [2, "paravertebral"]]}),
        vec![
            ("image", ct(&g)),
            ("a", Value::Labels(Arc::new(labels.clone()))),
            ("b", Value::Labels(Arc::new(labels))),
        ],
        dir.path(),
    )
    .unwrap();
    let png = Png::read(&path);
    assert_eq!(png.h, 40 + 2 * 11 + 2);
    let white = (40..png.h)
        .flat_map(|y| (0..png.w).map(move |x| (x, y)))
        .filter(|&(x, y)| png.px(x, y) == [255, 255, 255])
        .count();
    assert_eq!(
        white,
        [
            "truth",
            "net",
            "both",
            "labels: 1 abdominal wall, 2 paravertebral"
        ]
        .map(|t| text_pixels(t, LEGEND_BACKGROUND).1.len())
        .iter()
        .sum::<usize>()
    );
    // Unnamed labels are "label N".
    let (path, _) = run(
        json!({"path": "u.png", "slices": [2], "zoom": 1}),
        vec![
            ("image", ct(&g)),
            (
                "a",
                Value::Labels(Arc::new(volume(&g, |x, _, _| u16::from(x == 3) * 7))),
            ),
        ],
        dir.path(),
    )
    .unwrap();
    let png = Png::read(&path);
    let white = (40..png.h)
        .flat_map(|y| (0..png.w).map(move |x| (x, y)))
        .filter(|&(x, y)| png.px(x, y) == [255, 255, 255])
        .count();
    assert_eq!(white, text_pixels("label 7", LEGEND_BACKGROUND).1.len());
    // Label 0 or a label named twice is a param error.
    for bad in [json!([[0, "bg"]]), json!([[1, "a"], [1, "b"]])] {
        assert!(RenderOverlay
            .build(&json!({"path": "x.png", "label_names": bad}), "cpu")
            .is_err());
    }
}

/// White pixels in rows `0..rows` of a PNG, as (x, y).
fn white_pixels(png: &Png, rows: usize) -> Vec<(usize, usize)> {
    (0..rows)
        .flat_map(|y| (0..png.w).map(move |x| (x, y)))
        .filter(|&(x, y)| png.px(x, y) == [255; 3])
        .collect()
}

#[test]
fn slice_numbers_are_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::new([100, 30, 12], [1.0; 3]);
    let a = volume(&g, |_, _, _| 0u8);
    let (path, _) = run_one(
        json!({"path": "n.png", "slices": [11], "zoom": 1}),
        &g,
        a,
        dir.path(),
    )
    .unwrap();
    let png = Png::read(&path);
    // The caption: slice number and the world z of the slice (1 mm slices from the
    // origin: slice 11 at 11 mm), white at the top-left corner (the CT has no white).
    assert_eq!(tile_caption(&g, 11), "11 z=11.0 mm");
    let shifted = Geometry::from_affine(g.dims, {
        let mut a = g.affine;
        a[2][3] = -40.25;
        a
    });
    assert_eq!(tile_caption(&shifted, 11), "11 z=-29.2 mm");
    // Pixel for pixel the caption text, drawn at (2, 2) of the 100-pixel tile.
    let (_, want) = text_pixels("11 z=11.0 mm", [0; 3]);
    let want: Vec<(usize, usize)> = want.iter().map(|&(x, y)| (2 + x, 2 + y)).collect();
    assert_eq!(white_pixels(&png, 30), want, "caption pixels");
    assert!(want.len() > 100, "more than the two digits");

    // A tile too narrow for the caption (40 pixels < 73) shows the slice number alone
    // rather than a caption clipped mid-word.
    let g = Geometry::new([40, 30, 12], [1.0; 3]);
    let a = volume(&g, |_, _, _| 0u8);
    let (path, _) = run_one(
        json!({"path": "narrow.png", "slices": [11], "zoom": 1}),
        &g,
        a,
        dir.path(),
    )
    .unwrap();
    let png = Png::read(&path);
    let white = white_pixels(&png, 30);
    let ((nw, nh), number) = text_pixels("11", [0; 3]);
    assert!(
        white.iter().all(|&(x, y)| x < 2 + nw && y < 2 + nh),
        "{white:?}"
    );
    assert_eq!(white.len(), number.len());
}

/// A blob on the patient's left and anterior must show on the image's right and top,
/// for an identity affine and for a flipped (LPS-like stored) one.
#[test]
fn orientation_is_radiological() {
    let dims = [30, 24, 3];
    let identity = Geometry::new(dims, [1.0, 1.0, 2.0]);
    let mut affine = identity.affine;
    affine[0][0] = -1.0;
    affine[1][1] = -1.0;
    affine[0][3] = 100.0;
    affine[1][3] = 50.0;
    let flipped = Geometry::from_affine(dims, affine);
    // Also axes swapped: voxel x runs along world y (anterior), voxel y along world -x.
    let mut swapped = [[0.0; 4]; 4];
    swapped[1][0] = 1.0;
    swapped[0][1] = -1.0;
    swapped[2][2] = 2.0;
    swapped[3][3] = 1.0;
    let swapped = Geometry::from_affine(dims, swapped);
    for (name, g) in [
        ("identity", identity),
        ("flipped", flipped),
        ("swapped", swapped),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // World-space blob: left of the centre (smaller world x) and anterior (larger y).
        let centre = g.to_world([(dims[0] - 1) as f64 / 2.0, (dims[1] - 1) as f64 / 2.0, 1.0]);
        let blob = volume(&g, |x, y, z| {
            let w = g.to_world([x as f64, y as f64, z as f64]);
            u8::from(w[0] < centre[0] - 3.0 && w[1] > centre[1] + 2.0)
        });
        assert!(blob.as_slice().iter().any(|&v| v != 0));
        let (path, _) = run_one(
            json!({"path": "o.png", "slices": [1], "zoom": 1}),
            &g,
            blob,
            dir.path(),
        )
        .unwrap();
        let png = Png::read(&path);
        // Within the tile (the legend's blue swatch lies below it).
        let (tw, th) = DisplayAxes::from_geometry(&g).size(dims);
        let (cx, cy) = png.centroid(0, 0, tw, th, is_blue).expect("blob visible");
        assert!(
            cx > tw as f64 / 2.0,
            "{name}: patient left must be on the image right, centroid x {cx}"
        );
        assert!(
            cy < th as f64 / 2.0,
            "{name}: anterior must be at the top, centroid y {cy}"
        );
    }
}

#[test]
fn difference_mode_shows_only_disagreement() {
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::new([20, 20, 2], [1.0; 3]);
    let lab =
        |f: fn(usize) -> u16| -> Value { Value::Labels(Arc::new(volume(&g, move |x, _, _| f(x)))) };
    let a: fn(usize) -> u16 = |x| if (2..10).contains(&x) { 1 } else { 0 };
    let b: fn(usize) -> u16 = |x| {
        if (2..8).contains(&x) {
            1
        } else if (8..14).contains(&x) {
            2
        } else {
            0
        }
    };
    let (path, _) = run(
        json!({"path": "d.png", "mode": "difference", "slices": [0], "zoom": 1}),
        vec![("image", ct(&g)), ("a", lab(a)), ("b", lab(b))],
        dir.path(),
    )
    .unwrap();
    let png = Png::read(&path);
    // Screen column of voxel x is 19 - x; check the middle row, away from the label.
    let y = 15;
    for x in 0..20 {
        let c = png.px(19 - x, y);
        let coloured = c[0] != c[1] || c[1] != c[2];
        match x {
            2..=7 => assert!(!coloured, "x={x}: agreement must stay grey, got {c:?}"),
            8..=9 => assert!(is_yellow(c), "x={x}: 1 vs 2 must be yellow, {c:?}"),
            10..=13 => assert!(is_red(c), "x={x}: b only must be red, {c:?}"),
            _ => assert!(!coloured, "x={x}: background, got {c:?}"),
        }
    }
    // Difference without b is an error.
    let err = run(
        json!({"path": "d.png", "mode": "difference"}),
        vec![("image", ct(&g)), ("a", lab(a))],
        dir.path(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("difference"), "{err}");
}

#[test]
fn automatic_slices_follow_the_masks() {
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::new([12, 12, 60], [1.0; 3]);
    let a = volume(&g, |x, y, z| {
        u8::from((10..=40).contains(&z) && x == 5 && y == 5)
    });
    let (_, t) = run_one(json!({"path": "a.png"}), &g, a.clone(), dir.path()).unwrap();
    let zs: Vec<i64> = t
        .rows
        .iter()
        .map(|r| if let Cell::Int(z) = r[0] { z } else { panic!() })
        .collect();
    assert_eq!(zs.len(), 9);
    assert!(zs.iter().all(|&z| (10..=40).contains(&z)), "{zs:?}");
    assert!(zs.windows(2).all(|w| w[1] > w[0]));
    // Centred on the centre of mass (z = 25).
    assert!((zs[4] - 25).abs() <= 1, "{zs:?}");
    // `every` takes 0, n, 2n, ...
    let (_, t) = run_one(
        json!({"path": "e.png", "every": 20}),
        &g,
        a.clone(),
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        t.rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        vec![Cell::Int(0), Cell::Int(20), Cell::Int(40)]
    );
    // A slice that does not exist is an error, and nothing is written.
    let err = run_one(json!({"path": "x.png", "slices": [60]}), &g, a, dir.path()).unwrap_err();
    assert!(err.to_string().contains("slice 60 does not exist"), "{err}");
    assert!(!dir.path().join("x.png").exists());
}

#[test]
fn grids_must_match_and_writes_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::new([8, 8, 2], [1.0; 3]);
    let other = Geometry::new([8, 8, 2], [2.0, 1.0, 1.0]);
    let a = volume(&other, |_, _, _| 1u8);
    let err = run_one(json!({"path": "g.png"}), &g, a, dir.path()).unwrap_err();
    assert!(matches!(err, NodeError::GridMismatch { .. }), "{err}");
    // Writing onto a folder fails with a file error and leaves no temporary file.
    std::fs::create_dir(dir.path().join("taken.png")).unwrap();
    let a = volume(&g, |_, _, _| 1u8);
    let err = run_one(json!({"path": "taken.png"}), &g, a, dir.path()).unwrap_err();
    assert!(matches!(err, NodeError::File { .. }), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn build_rejects_bad_params() {
    for p in [
        json!({}),
        json!({"path": "x.jpg"}),
        json!({"path": "x.png", "slices": [1], "every": 2}),
        json!({"path": "x.png", "every": 0}),
        json!({"path": "x.png", "window": 0}),
        json!({"path": "x.png", "columns": 0}),
        json!({"path": "x.png", "zoom": 0}),
        json!({"path": "x.png", "mode": "blend"}),
        json!({"path": "x.png", "colour": "red"}),
    ] {
        assert!(RenderOverlay.build(&p, "cpu").is_err(), "accepted {p}");
    }
    // The missing path is said the way every node says a required param is missing.
    let Err(errs) = RenderOverlay.build(&json!({}), "cpu") else {
        panic!("accepted no path")
    };
    assert_eq!(
        errs,
        vec![ParamError::field(
            "path",
            "is required: the PNG file to write, e.g. \"overlay.png\""
        )]
    );
    assert!(RenderOverlay
        .build(
            &json!({"path": "x.PNG", "mode": "difference", "every": 2}),
            "cpu"
        )
        .is_ok());
}

#[test]
fn summary_fits_one_line() {
    // Param defaults are node_params!'s (checked for every node by the registry tests).
    let spec = RenderOverlay.spec();
    assert!(spec.summary.len() <= 79 && spec.summary.ends_with('.'));
}

/// ct_sm with the U-Net-like prediction (label 1 abdominal muscle) against the
/// skeletal muscle mask. Set `VOXFLOW_RENDER_DIR` to keep the PNGs for a look.
#[test]
fn renders_real_ct() {
    let Some(data) = crate::testdata::shared_data("RenderOverlay on ct_sm") else {
        return;
    };
    use crate::metrics::test_nifti::{load_image, load_labels};
    let image = load_image(&data.join("ct_sm.nii.gz"));
    let muscle = load_labels(&data.join("ct_sm_tissue_skeletal_muscle.nii.gz"));
    let pred: Labels = load_labels(&data.join("ct_sm_prediction.nii.gz"));
    let keep = std::env::var_os("VOXFLOW_RENDER_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    for (name, mode) in [
        ("ct_sm_overlay.png", "overlay"),
        ("ct_sm_difference.png", "difference"),
    ] {
        let (path, t) = run(
            json!({"path": name, "mode": mode}),
            vec![
                ("image", Value::Image(Arc::new(image.clone()))),
                ("a", Value::Labels(Arc::new(muscle.clone()))),
                ("b", Value::Labels(Arc::new(pred.clone()))),
            ],
            &dir,
        )
        .unwrap();
        let png = Png::read(&path);
        // 9 tiles of 122x101 voxels, zoom 2, in 3 columns.
        assert_eq!(t.rows.len(), 9);
        assert_eq!(png.w, 3 * 244 + 4);
        assert!(png.h > 3 * 202 + 4, "legend below the tiles");
        assert!(
            png.centroid(0, 0, png.w, png.h, is_red).is_some(),
            "{mode}: b visible"
        );
        if let Some(k) = &keep {
            eprintln!("kept {}", k.join(name).display());
        }
    }
}
