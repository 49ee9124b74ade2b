//! PNG encoding of 8-bit RGB pictures: the overlay montages here, and the training
//! crate's loss plot (one encoder for every picture voxflow writes).

use std::io::Write;

/// Encode 8-bit RGB (`width * height * 3` bytes, rows top to bottom) as PNG.
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
