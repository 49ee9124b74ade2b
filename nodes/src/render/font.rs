//! A tiny built-in 5x7 bitmap font (digits, letters, some punctuation), so
//! tiles carry their slice number and position and montages a legend without a font
//! crate (and the same pixels on every machine, which tests can check).

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

/// Lower-case letters, x-height 5 rows (no room below the line in 7 rows, so g, j, p,
/// q and y sit a little high); rows as in [`DIGITS`].
const LOWER: [[u8; GLYPH_H]; 26] = [
    // a
    [
        0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111,
    ],
    // b
    [
        0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110,
    ],
    // c
    [
        0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110,
    ],
    // d
    [
        0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111,
    ],
    // e
    [
        0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110,
    ],
    // f
    [
        0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000,
    ],
    // g
    [
        0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110,
    ],
    // h
    [
        0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001,
    ],
    // i
    [
        0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110,
    ],
    // j
    [
        0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100,
    ],
    // k
    [
        0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010,
    ],
    // l
    [
        0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
    ],
    // m
    [
        0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001,
    ],
    // n
    [
        0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001,
    ],
    // o
    [
        0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110,
    ],
    // p
    [
        0b00000, 0b00000, 0b11110, 0b10001, 0b11110, 0b10000, 0b10000,
    ],
    // q
    [
        0b00000, 0b00000, 0b01101, 0b10011, 0b01111, 0b00001, 0b00001,
    ],
    // r
    [
        0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000,
    ],
    // s
    [
        0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110,
    ],
    // t
    [
        0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110,
    ],
    // u
    [
        0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101,
    ],
    // v
    [
        0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100,
    ],
    // w
    [
        0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010,
    ],
    // x
    [
        0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001,
    ],
    // y
    [
        0b00000, 0b00000, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110,
    ],
    // z
    [
        0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111,
    ],
];

/// Upper-case letters and the punctuation captions and legends use (`z=-12.5 mm`,
/// `1 abdominal wall`); rows as in [`DIGITS`].
const OTHERS: [(char, [u8; GLYPH_H]); 38] = [
    (
        'A',
        [
            0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
        ],
    ),
    (
        'B',
        [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110,
        ],
    ),
    (
        'C',
        [
            0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110,
        ],
    ),
    (
        'D',
        [
            0b11110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11110,
        ],
    ),
    (
        'E',
        [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111,
        ],
    ),
    (
        'F',
        [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000,
        ],
    ),
    (
        'G',
        [
            0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111,
        ],
    ),
    (
        'H',
        [
            0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
        ],
    ),
    (
        'I',
        [
            0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
    ),
    (
        'J',
        [
            0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100,
        ],
    ),
    (
        'K',
        [
            0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001,
        ],
    ),
    (
        'L',
        [
            0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111,
        ],
    ),
    (
        'M',
        [
            0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001,
        ],
    ),
    (
        'N',
        [
            0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001,
        ],
    ),
    (
        'O',
        [
            0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
    ),
    (
        'P',
        [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000,
        ],
    ),
    (
        'Q',
        [
            0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101,
        ],
    ),
    (
        'R',
        [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001,
        ],
    ),
    (
        'S',
        [
            0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110,
        ],
    ),
    (
        'T',
        [
            0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100,
        ],
    ),
    (
        'U',
        [
            0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
    ),
    (
        'V',
        [
            0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100,
        ],
    ),
    (
        'W',
        [
            0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010,
        ],
    ),
    (
        'X',
        [
            0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001,
        ],
    ),
    (
        'Y',
        [
            0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100,
        ],
    ),
    (
        'Z',
        [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111,
        ],
    ),
    (
        '.',
        [
            0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100,
        ],
    ),
    (
        ',',
        [
            0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000,
        ],
    ),
    (
        '-',
        [
            0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000,
        ],
    ),
    (
        '+',
        [
            0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000,
        ],
    ),
    (
        ':',
        [
            0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000,
        ],
    ),
    (
        '=',
        [
            0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000,
        ],
    ),
    (
        '/',
        [
            0b00001, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b10000,
        ],
    ),
    (
        '(',
        [
            0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010,
        ],
    ),
    (
        ')',
        [
            0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000,
        ],
    ),
    (
        '_',
        [
            0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111,
        ],
    ),
    (
        '%',
        [
            0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011,
        ],
    ),
    (
        '\'',
        [
            0b00100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000,
        ],
    ),
];

/// The rows of `c`'s glyph: digits, lower- and upper-case letters and [`OTHERS`]'
/// punctuation; `None` for anything else (drawn as a blank).
pub fn glyph(c: char) -> Option<[u8; GLYPH_H]> {
    if let Some(d) = c.to_digit(10) {
        return Some(DIGITS[d as usize]);
    }
    if c.is_ascii_lowercase() {
        return Some(LOWER[usize::from(c as u8 - b'a')]);
    }
    OTHERS.iter().find(|(k, _)| *k == c).map(|(_, rows)| *rows)
}

/// Size in pixels of `text` drawn at `scale`, with one blank column between
/// glyphs and a one-pixel margin all round (the background box).
pub fn text_size(text: &str, scale: usize) -> (usize, usize) {
    let n = text.chars().count();
    (((n * (GLYPH_W + 1)) + 1) * scale, (GLYPH_H + 2) * scale)
}

/// Draw `text` into an RGB buffer of width `width` with its top-left corner at (`x0`,
/// `y0`), each font pixel `scale` x `scale` image pixels, in `color` on a `background`
/// box. Characters without a glyph ([`glyph`]) are blanks; pixels outside the buffer
/// are clipped.
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
    for (k, rows) in text.chars().map(glyph).enumerate() {
        let Some(rows) = rows else { continue };
        let gx = x0 + scale * (1 + k * (GLYPH_W + 1));
        let gy = y0 + scale;
        for (y, row) in rows.iter().enumerate() {
            for x in 0..GLYPH_W {
                if row & (1 << (GLYPH_W - 1 - x)) != 0 {
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

    /// Whether pixel (`x`, `y`) of the glyph of `digit` (0-9) is set.
    fn glyph_pixel(digit: u8, x: usize, y: usize) -> bool {
        glyph(char::from(b'0' + digit)).unwrap()[y] & (1 << (GLYPH_W - 1 - x)) != 0
    }

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
    fn letters_are_distinct_in_both_cases() {
        let all: Vec<char> = ('0'..='9')
            .chain('a'..='z')
            .chain('A'..='Z')
            .chain(OTHERS.iter().map(|o| o.0))
            .collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if a != b {
                    assert_ne!(glyph(*a), glyph(*b), "{a} and {b} look the same");
                }
            }
        }
        assert!(all.iter().all(|&c| glyph(c).is_some()));
        assert!(glyph('?').is_none());
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
