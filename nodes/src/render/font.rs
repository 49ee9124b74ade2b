//! A tiny built-in 5x7 bitmap font for digits, so tiles can carry their slice number
//! without a font crate.

/// Glyph width in pixels.
pub const GLYPH_W: usize = 5;
/// Glyph height in pixels.
pub const GLYPH_H: usize = 7;

/// Rows of each digit, top first; bit 4 is the leftmost pixel.
const DIGITS: [[u8; GLYPH_H]; 10] = [
    [
        0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110,
    ],
    [
        0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
    ],
    [
        0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111,
    ],
    [
        0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110,
    ],
    [
        0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010,
    ],
    [
        0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110,
    ],
    [
        0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110,
    ],
    [
        0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000,
    ],
    [
        0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110,
    ],
    [
        0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100,
    ],
];

/// Whether pixel (`x`, `y`) of the glyph of `digit` (0-9) is set.
pub fn glyph_pixel(digit: u8, x: usize, y: usize) -> bool {
    x < GLYPH_W && y < GLYPH_H && DIGITS[digit as usize % 10][y] & (1 << (GLYPH_W - 1 - x)) != 0
}

/// Size in pixels of `text` (digits) drawn at `scale`, with one blank column between
/// glyphs and a one-pixel margin all round (the background box).
pub fn text_size(text: &str, scale: usize) -> (usize, usize) {
    let n = text.chars().count();
    (((n * (GLYPH_W + 1)) + 1) * scale, (GLYPH_H + 2) * scale)
}

/// Draw the digits of `text` into an RGB buffer of width `width` with their top-left
/// corner at (`x0`, `y0`), each font pixel `scale` x `scale` image pixels, in `color`
/// on a `background` box. Non-digits are skipped; pixels outside the buffer are
/// clipped.
#[allow(clippy::too_many_arguments)]
pub fn draw_text(
    rgb: &mut [u8],
    width: usize,
    x0: usize,
    y0: usize,
    text: &str,
    scale: usize,
    color: [u8; 3],
    background: [u8; 3],
) {
    let height = rgb.len() / 3 / width.max(1);
    let (tw, th) = text_size(text, scale);
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        if x < width && y < height {
            let i = 3 * (x + width * y);
            rgb[i..i + 3].copy_from_slice(&c);
        }
    };
    for y in 0..th {
        for x in 0..tw {
            put(x0 + x, y0 + y, background);
        }
    }
    for (k, d) in text.chars().filter_map(|c| c.to_digit(10)).enumerate() {
        let gx = x0 + scale * (1 + k * (GLYPH_W + 1));
        let gy = y0 + scale;
        for y in 0..GLYPH_H {
            for x in 0..GLYPH_W {
                if glyph_pixel(d as u8, x, y) {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(gx + x * scale + dx, gy + y * scale + dy, color);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_are_distinct_and_one_is_narrow() {
        let bits = |d: u8| -> Vec<bool> {
            (0..GLYPH_H)
                .flat_map(|y| (0..GLYPH_W).map(move |x| glyph_pixel(d, x, y)))
                .collect()
        };
        for a in 0..10 {
            for b in a + 1..10 {
                assert_ne!(bits(a), bits(b), "{a} and {b} look the same");
            }
        }
        // "1" never uses the outer columns.
        assert!((0..GLYPH_H).all(|y| !glyph_pixel(1, 0, y) && !glyph_pixel(1, 4, y)));
    }

    #[test]
    fn draws_scaled_digits_in_a_box() {
        let (w, h) = (40, 20);
        let mut rgb = vec![0u8; w * h * 3];
        draw_text(&mut rgb, w, 1, 1, "17", 2, [255, 255, 255], [10, 10, 10]);
        let px = |x: usize, y: usize| {
            [
                rgb[3 * (x + w * y)],
                rgb[3 * (x + w * y) + 1],
                rgb[3 * (x + w * y) + 2],
            ]
        };
        // Box corner is background, outside the box untouched.
        assert_eq!(px(1, 1), [10, 10, 10]);
        assert_eq!(px(0, 0), [0, 0, 0]);
        // Top row of "1": only its middle pixel (font x=2) is set, drawn 2x2 at
        // (1 + 2*(1 + 2), 1 + 2) = (7, 3).
        assert_eq!(px(7, 3), [255, 255, 255]);
        assert_eq!(px(8, 4), [255, 255, 255]);
        assert_eq!(px(5, 3), [10, 10, 10]);
        // Top row of "7" is full: starts at x = 1 + 2*(1 + 6) = 15.
        assert!((15..25).all(|x| px(x, 3) == [255, 255, 255]));
        let (tw, th) = text_size("17", 2);
        assert_eq!((tw, th), (26, 18));
    }
}
