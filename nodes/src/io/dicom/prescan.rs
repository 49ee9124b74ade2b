//! A structural walk of a DICOM file's element stream, done before dicom-object parses it.
//!
//! Why by hand: dicom-object 0.10 cannot be told any limit (its `OpenFileOptions` offer
//! `read_until`/`read_to` only). It allocates an element's declared length up front, so a
//! PixelData length of 0xFFFFFFF0 in a 157 KB file asks for 4 GiB per slice, and it
//! recurses once per nested sequence, so 2,000 nested sequences overflow the stack and
//! abort the process. This walk is iterative, allocates nothing (but the inflated copy of
//! a deflated data set, itself capped) and checks every declared length against the
//! bytes that remain in its file, item or sequence, and the nesting depth against
//! [`MAX_SEQUENCE_DEPTH`]. It validates structure only; values are left to dicom-object.

use std::io::Read;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

/// Sequences nested deeper than this are refused. Real files nest a handful of levels
/// (PS3.3 IODs rarely exceed 5); dicom-object recurses per level, and 64 levels stay far
/// below what a 2 MiB thread stack holds.
pub const MAX_SEQUENCE_DEPTH: usize = 64;

/// A deflated data set is inflated at most to this many bytes (a deflate bomb would
/// otherwise expand without bound); slices are a few MiB.
pub const MAX_INFLATED_BYTES: u64 = 256 << 20;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const TRANSFER_SYNTAX: Tag = Tag(0x0002, 0x0010);

/// Transfer syntaxes whose data set (after the file meta group) is deflated.
const DEFLATED: [&str; 2] = ["1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"];
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";

/// What the walk learnt: where dicom-object should start reading.
#[derive(Debug)]
pub struct Layout {
    /// Offset of the `DICM` magic code (128 with a preamble, 0 without).
    pub magic: usize,
}

/// One open level of nesting.
#[derive(Clone, Copy)]
enum Level {
    /// A sequence: holds items whose data sets use `explicit` VR.
    Sequence { end: Option<usize>, explicit: bool },
    /// Encapsulated pixel data: holds items that are raw fragments.
    Fragments,
    /// An item of a sequence: holds elements.
    Item { end: Option<usize>, explicit: bool },
}

impl Level {
    fn end(&self) -> Option<usize> {
        match self {
            Level::Sequence { end, .. } | Level::Item { end, .. } => *end,
            Level::Fragments => None,
        }
    }
}

/// Little or big endian reads at an offset already bounds-checked by the caller.
struct Bytes<'a> {
    buf: &'a [u8],
    big: bool,
}

impl Bytes<'_> {
    fn u16(&self, at: usize) -> u16 {
        let b = [self.buf[at], self.buf[at + 1]];
        if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }
    fn u32(&self, at: usize) -> u32 {
        let b = [
            self.buf[at],
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
        ];
        if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

/// VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length.
fn long_length(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"UC"
            | b"UR"
            | b"UT"
            | b"UN"
            | b"SV"
            | b"UV"
    )
}

/// Whether the standard dictionary says `tag` is a sequence (for implicit VR streams,
/// where the file does not say).
fn is_sequence(tag: Tag) -> bool {
    StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| matches!(e.vr(), VirtualVr::Exact(VR::SQ)))
}

/// Check the file meta group and data set of a whole DICOM file held in `file`.
pub fn check(file: &[u8]) -> Result<Layout, String> {
    let magic = if file.len() >= 132 && &file[128..132] == b"DICM" {
        128
    } else if file.starts_with(b"DICM") {
        0
    } else {
        return Err("no DICM magic code at offset 128 (not a DICOM Part 10 file)".into());
    };
    // File meta group: always explicit VR little endian, group 0002, no sequences.
    let b = Bytes {
        buf: file,
        big: false,
    };
    let mut pos = magic + 4;
    let mut transfer_syntax = None;
    while file.len() - pos >= 8 && b.u16(pos) == 0x0002 {
        let tag = Tag(0x0002, b.u16(pos + 2));
        let vr = &file[pos + 4..pos + 6];
        let (len, head) = if long_length(vr) {
            if file.len() - pos < 12 {
                return Err(format!("file meta element {tag} cut short"));
            }
            (b.u32(pos + 8) as usize, 12)
        } else {
            (b.u16(pos + 6) as usize, 8)
        };
        pos += head;
        if len > file.len() - pos {
            return Err(format!(
                "file meta element {tag} declares {len} bytes but only {} remain in the file",
                file.len() - pos
            ));
        }
        if tag == TRANSFER_SYNTAX {
            let v = String::from_utf8_lossy(&file[pos..pos + len]);
            transfer_syntax = Some(v.trim_end_matches(['\0', ' ']).trim().to_string());
        }
        pos += len;
    }
    let transfer_syntax =
        transfer_syntax.ok_or("file meta group has no TransferSyntaxUID (0002,0010)")?;
    let rest = &file[pos..];
    if DEFLATED.contains(&transfer_syntax.as_str()) {
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(rest)
            .take(MAX_INFLATED_BYTES + 1)
            .read_to_end(&mut inflated)
            .map_err(|e| format!("deflated data set does not inflate: {e}"))?;
        if inflated.len() as u64 > MAX_INFLATED_BYTES {
            return Err(format!(
                "deflated data set inflates beyond {} MiB",
                MAX_INFLATED_BYTES >> 20
            ));
        }
        walk(&inflated, true, false)?;
    } else {
        walk(
            rest,
            transfer_syntax != IMPLICIT_LE,
            transfer_syntax == EXPLICIT_BE,
        )?;
    }
    Ok(Layout { magic })
}

/// Walk a data set's elements, iteratively, checking lengths and depth.
fn walk(buf: &[u8], explicit_root: bool, big: bool) -> Result<(), String> {
    let b = Bytes { buf, big };
    let mut stack: Vec<Level> = Vec::new();
    let mut depth = 0usize; // sequences open
    let mut pos = 0usize;
    loop {
        // Close every defined-length level that ends here.
        while let Some(end) = stack.last().and_then(Level::end) {
            if pos < end {
                break;
            }
            if pos > end {
                return Err(format!(
                    "an element at offset {pos} of the data set runs past the end of its \
                     enclosing item or sequence (offset {end})"
                ));
            }
            if matches!(stack.pop(), Some(Level::Sequence { .. })) {
                depth -= 1;
            }
        }
        if pos == buf.len() {
            if stack.is_empty() {
                return Ok(());
            }
            return Err("the file ends inside an unclosed sequence or item".into());
        }
        // Remaining bytes before the enclosing level's end (or the file's).
        let limit = stack.iter().rev().find_map(Level::end).unwrap_or(buf.len());
        if limit - pos < 8 {
            return Err(format!(
                "element at offset {pos} of the data set is cut short ({} bytes left)",
                limit - pos
            ));
        }
        let tag = Tag(b.u16(pos), b.u16(pos + 2));
        let top = stack.last().copied();
        if tag.0 == 0xFFFE {
            let len = b.u32(pos + 4);
            pos += 8;
            match (tag, top) {
                (ITEM, Some(Level::Fragments)) => {
                    if len == UNDEFINED || len as usize > limit - pos {
                        return Err(format!(
                            "pixel data fragment at offset {} declares {len} bytes but only {} \
                             remain in the file",
                            pos - 8,
                            limit - pos
                        ));
                    }
                    pos += len as usize;
                }
                (ITEM, Some(Level::Sequence { explicit, .. })) => {
                    let end = if len == UNDEFINED {
                        None
                    } else if len as usize > limit - pos {
                        return Err(format!(
                            "sequence item at offset {} declares {len} bytes but only {} remain",
                            pos - 8,
                            limit - pos
                        ));
                    } else {
                        Some(pos + len as usize)
                    };
                    stack.push(Level::Item { end, explicit });
                }
                (ITEM_END, Some(Level::Item { end: None, .. })) => {
                    stack.pop();
                }
                (SEQUENCE_END, Some(Level::Sequence { end: None, .. } | Level::Fragments)) => {
                    stack.pop();
                    depth -= 1;
                }
                _ => {
                    return Err(format!(
                        "unexpected delimiter {tag} at offset {} of the data set",
                        pos - 8
                    ))
                }
            }
            continue;
        }
        if matches!(top, Some(Level::Sequence { .. } | Level::Fragments)) {
            return Err(format!(
                "element {tag} at offset {pos} of the data set sits directly in a sequence \
                 (items expected)"
            ));
        }
        let explicit = match top {
            Some(Level::Item { explicit, .. }) => explicit,
            _ => explicit_root,
        };
        let (vr, len, head): (Option<&[u8]>, u32, usize) = if explicit {
            let vr = &buf[pos + 4..pos + 6];
            if long_length(vr) {
                if limit - pos < 12 {
                    return Err(format!("element {tag} at offset {pos} is cut short"));
                }
                (Some(vr), b.u32(pos + 8), 12)
            } else if vr.iter().all(u8::is_ascii_uppercase) {
                (Some(vr), b.u16(pos + 6) as u32, 8)
            } else {
                return Err(format!(
                    "element {tag} at offset {pos} has no valid VR ({:02X} {:02X})",
                    vr[0], vr[1]
                ));
            }
        } else {
            (None, b.u32(pos + 4), 8)
        };
        pos += head;
        let sequence = match vr {
            Some(vr) => vr == b"SQ",
            None => is_sequence(tag),
        };
        if len == UNDEFINED {
            let level = if tag == PIXEL_DATA && !sequence {
                Level::Fragments
            } else if sequence || vr.is_none() || vr == Some(b"UN") {
                // Implicit VR: undefined length means a sequence; UN of undefined length
                // is a sequence encoded in implicit VR (PS3.5 6.2.2).
                Level::Sequence {
                    end: None,
                    explicit: explicit && vr != Some(b"UN"),
                }
            } else {
                return Err(format!(
                    "element {tag} at offset {} has an undefined length but is no sequence",
                    pos - head
                ));
            };
            depth += 1;
            if depth > MAX_SEQUENCE_DEPTH {
                return Err(format!(
                    "sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels (at offset {})",
                    pos - head
                ));
            }
            stack.push(level);
            continue;
        }
        let len = len as usize;
        if len > limit - pos {
            return Err(format!(
                "element {tag} at offset {} declares {len} bytes but only {} remain in the file",
                pos - head,
                limit - pos
            ));
        }
        if sequence {
            depth += 1;
            if depth > MAX_SEQUENCE_DEPTH {
                return Err(format!(
                    "sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels (at offset {})",
                    pos - head
                ));
            }
            stack.push(Level::Sequence {
                end: Some(pos + len),
                explicit,
            });
        } else {
            pos += len;
        }
    }
}
