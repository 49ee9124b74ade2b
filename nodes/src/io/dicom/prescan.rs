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

use crate::shared::bytes::Endian;

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

/// What is structurally wrong with a DICOM file; shown after "not a DICOM file: ".
#[derive(Debug, thiserror::Error)]
pub enum PrescanError {
    /// Neither a preamble and `DICM` nor `DICM` at the start.
    #[error("no DICM magic code at offset 128 (not a DICOM Part 10 file)")]
    NoMagic,
    /// A file meta element whose 12-byte header does not fit.
    #[error("file meta element {0} cut short")]
    MetaCutShort(Tag),
    /// A file meta element longer than the file.
    #[error("file meta element {tag} declares {len} bytes but only {left} remain in the file")]
    MetaLength {
        /// The element.
        tag: Tag,
        /// Its declared length.
        len: usize,
        /// Bytes left in the file.
        left: usize,
    },
    /// No (0002,0010) in the file meta group.
    #[error("file meta group has no TransferSyntaxUID (0002,0010)")]
    NoTransferSyntax,
    /// A deflated data set that does not inflate.
    #[error("deflated data set does not inflate: {0}")]
    Inflate(std::io::Error),
    /// A deflated data set that inflates beyond [`MAX_INFLATED_BYTES`].
    #[error("deflated data set inflates beyond {} MiB", MAX_INFLATED_BYTES >> 20)]
    InflatedTooLarge,
    /// An element that ends after the defined-length item or sequence holding it.
    #[error(
        "an element at offset {pos} of the data set runs past the end of its enclosing item or \
         sequence (offset {end})"
    )]
    PastEnd {
        /// Where the walk stands.
        pos: usize,
        /// Where the enclosing level ends.
        end: usize,
    },
    /// The data set ends with a sequence or item still open.
    #[error("the file ends inside an unclosed sequence or item")]
    Unclosed,
    /// Fewer than 8 bytes (a tag and a length) left for an element.
    #[error("element at offset {pos} of the data set is cut short ({left} bytes left)")]
    ElementCutShort {
        /// The element's offset.
        pos: usize,
        /// Bytes left before the enclosing level's end.
        left: usize,
    },
    /// An encapsulated pixel data fragment of undefined length or longer than what remains.
    #[error(
        "pixel data fragment at offset {at} declares {len} bytes but only {left} remain in the \
         file"
    )]
    FragmentLength {
        /// The fragment's offset.
        at: usize,
        /// Its declared length.
        len: u32,
        /// Bytes left.
        left: usize,
    },
    /// A sequence item longer than what remains.
    #[error("sequence item at offset {at} declares {len} bytes but only {left} remain")]
    ItemLength {
        /// The item's offset.
        at: usize,
        /// Its declared length.
        len: u32,
        /// Bytes left.
        left: usize,
    },
    /// An item or delimitation tag where none can be.
    #[error("unexpected delimiter {tag} at offset {at} of the data set")]
    Delimiter {
        /// The tag.
        tag: Tag,
        /// Its offset.
        at: usize,
    },
    /// An element directly in a sequence, outside any item.
    #[error(
        "element {tag} at offset {pos} of the data set sits directly in a sequence (items \
         expected)"
    )]
    NotInItem {
        /// The element.
        tag: Tag,
        /// Its offset.
        pos: usize,
    },
    /// An explicit-VR element whose 12-byte header does not fit.
    #[error("element {tag} at offset {pos} is cut short")]
    HeaderCutShort {
        /// The element.
        tag: Tag,
        /// Its offset.
        pos: usize,
    },
    /// An explicit-VR element whose VR is not two upper-case letters.
    #[error("element {tag} at offset {pos} has no valid VR ({:02X} {:02X})", .vr[0], .vr[1])]
    Vr {
        /// The element.
        tag: Tag,
        /// Its offset.
        pos: usize,
        /// The two bytes where the VR should be.
        vr: [u8; 2],
    },
    /// Undefined length on an element that cannot hold items.
    #[error("element {tag} at offset {at} has an undefined length but is no sequence")]
    UndefinedLength {
        /// The element.
        tag: Tag,
        /// Its offset.
        at: usize,
    },
    /// More than [`MAX_SEQUENCE_DEPTH`] nested sequences.
    #[error("sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels (at offset {at})")]
    TooDeep {
        /// Offset of the element opening the level too many.
        at: usize,
    },
    /// An element longer than what remains of its file, item or sequence.
    #[error(
        "element {tag} at offset {at} declares {len} bytes but only {left} remain in the file"
    )]
    ElementLength {
        /// The element.
        tag: Tag,
        /// Its offset.
        at: usize,
        /// Its declared length.
        len: usize,
        /// Bytes left.
        left: usize,
    },
}

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
pub fn check(file: &[u8]) -> Result<Layout, PrescanError> {
    let magic = if file.len() >= 132 && &file[128..132] == b"DICM" {
        128
    } else if file.starts_with(b"DICM") {
        0
    } else {
        return Err(PrescanError::NoMagic);
    };
    // File meta group: always explicit VR little endian, group 0002, no sequences.
    let b = Endian::new(file, false);
    let mut pos = magic + 4;
    let mut transfer_syntax = None;
    while file.len() - pos >= 8 && b.u16(pos) == 0x0002 {
        let tag = Tag(0x0002, b.u16(pos + 2));
        let vr = &file[pos + 4..pos + 6];
        let (len, head) = if long_length(vr) {
            if file.len() - pos < 12 {
                return Err(PrescanError::MetaCutShort(tag));
            }
            (b.u32(pos + 8) as usize, 12)
        } else {
            (b.u16(pos + 6) as usize, 8)
        };
        pos += head;
        if len > file.len() - pos {
            return Err(PrescanError::MetaLength {
                tag,
                len,
                left: file.len() - pos,
            });
        }
        if tag == TRANSFER_SYNTAX {
            let v = String::from_utf8_lossy(&file[pos..pos + len]);
            transfer_syntax = Some(v.trim_end_matches(['\0', ' ']).trim().to_string());
        }
        pos += len;
    }
    let transfer_syntax = transfer_syntax.ok_or(PrescanError::NoTransferSyntax)?;
    let rest = &file[pos..];
    if DEFLATED.contains(&transfer_syntax.as_str()) {
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(rest)
            .take(MAX_INFLATED_BYTES + 1)
            .read_to_end(&mut inflated)
            .map_err(PrescanError::Inflate)?;
        if inflated.len() as u64 > MAX_INFLATED_BYTES {
            return Err(PrescanError::InflatedTooLarge);
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
fn walk(buf: &[u8], explicit_root: bool, big: bool) -> Result<(), PrescanError> {
    let mut w = Walker {
        b: Endian::new(buf, big),
        explicit_root,
        stack: Vec::new(),
        depth: 0,
        pos: 0,
    };
    loop {
        w.close_ended_levels()?;
        if w.pos == buf.len() {
            if w.stack.is_empty() {
                return Ok(());
            }
            return Err(PrescanError::Unclosed);
        }
        // Remaining bytes before the enclosing level's end (or the file's).
        let limit = w
            .stack
            .iter()
            .rev()
            .find_map(Level::end)
            .unwrap_or(buf.len());
        if limit - w.pos < 8 {
            return Err(PrescanError::ElementCutShort {
                pos: w.pos,
                left: limit - w.pos,
            });
        }
        let tag = Tag(w.b.u16(w.pos), w.b.u16(w.pos + 2));
        if tag.0 == 0xFFFE {
            w.delimiter(tag, limit)?;
        } else {
            w.element(tag, limit)?;
        }
    }
}

/// The state of [`walk`]: where it stands in the data set and which levels are open.
struct Walker<'a> {
    b: Endian<'a>,
    /// Whether the data set's own elements use explicit VR.
    explicit_root: bool,
    stack: Vec<Level>,
    /// Sequences (and encapsulated pixel data) open.
    depth: usize,
    pos: usize,
}

impl Walker<'_> {
    /// Close every defined-length level that ends here; an element that ran past a
    /// level's end is an error.
    fn close_ended_levels(&mut self) -> Result<(), PrescanError> {
        while let Some(end) = self.stack.last().and_then(Level::end) {
            if self.pos < end {
                break;
            }
            if self.pos > end {
                return Err(PrescanError::PastEnd { pos: self.pos, end });
            }
            if matches!(self.stack.pop(), Some(Level::Sequence { .. })) {
                self.depth -= 1;
            }
        }
        Ok(())
    }

    /// An item or delimitation tag (group FFFE) at `pos`: a pixel data fragment is
    /// skipped, a sequence item opened, an undefined-length item or sequence closed.
    fn delimiter(&mut self, tag: Tag, limit: usize) -> Result<(), PrescanError> {
        let len = self.b.u32(self.pos + 4);
        let at = self.pos;
        self.pos += 8;
        let left = limit - self.pos;
        match (tag, self.stack.last().copied()) {
            (ITEM, Some(Level::Fragments)) => {
                if len == UNDEFINED || len as usize > left {
                    return Err(PrescanError::FragmentLength { at, len, left });
                }
                self.pos += len as usize;
            }
            (ITEM, Some(Level::Sequence { explicit, .. })) => {
                let end = if len == UNDEFINED {
                    None
                } else if len as usize > left {
                    return Err(PrescanError::ItemLength { at, len, left });
                } else {
                    Some(self.pos + len as usize)
                };
                self.stack.push(Level::Item { end, explicit });
            }
            (ITEM_END, Some(Level::Item { end: None, .. })) => {
                self.stack.pop();
            }
            (SEQUENCE_END, Some(Level::Sequence { end: None, .. } | Level::Fragments)) => {
                self.stack.pop();
                self.depth -= 1;
            }
            _ => return Err(PrescanError::Delimiter { tag, at }),
        }
        Ok(())
    }

    /// A data element at `pos`: a sequence (or encapsulated pixel data) is opened, any
    /// other value skipped once its length is known to fit.
    fn element(&mut self, tag: Tag, limit: usize) -> Result<(), PrescanError> {
        let top = self.stack.last().copied();
        if matches!(top, Some(Level::Sequence { .. } | Level::Fragments)) {
            return Err(PrescanError::NotInItem { tag, pos: self.pos });
        }
        let explicit = match top {
            Some(Level::Item { explicit, .. }) => explicit,
            _ => self.explicit_root,
        };
        let (vr, len, head) = self.element_header(tag, limit, explicit)?;
        let at = self.pos;
        self.pos += head;
        let sequence = match vr {
            Some(vr) => vr == *b"SQ",
            None => is_sequence(tag),
        };
        if len == UNDEFINED {
            let level = if tag == PIXEL_DATA && !sequence {
                Level::Fragments
            } else if sequence || vr.is_none() || vr == Some(*b"UN") {
                // Implicit VR: undefined length means a sequence; UN of undefined length
                // is a sequence encoded in implicit VR (PS3.5 6.2.2).
                Level::Sequence {
                    end: None,
                    explicit: explicit && vr != Some(*b"UN"),
                }
            } else {
                return Err(PrescanError::UndefinedLength { tag, at });
            };
            return self.open(level, at);
        }
        let len = len as usize;
        let left = limit - self.pos;
        if len > left {
            return Err(PrescanError::ElementLength { tag, at, len, left });
        }
        if sequence {
            let end = Some(self.pos + len);
            self.open(Level::Sequence { end, explicit }, at)
        } else {
            self.pos += len;
            Ok(())
        }
    }

    /// The VR (`None` in implicit VR), value length and header size of the element at
    /// `pos`.
    fn element_header(
        &self,
        tag: Tag,
        limit: usize,
        explicit: bool,
    ) -> Result<(Option<[u8; 2]>, u32, usize), PrescanError> {
        let pos = self.pos;
        if !explicit {
            return Ok((None, self.b.u32(pos + 4), 8));
        }
        let vr: [u8; 2] = self.b.array(pos + 4);
        if long_length(&vr) {
            if limit - pos < 12 {
                return Err(PrescanError::HeaderCutShort { tag, pos });
            }
            Ok((Some(vr), self.b.u32(pos + 8), 12))
        } else if vr.iter().all(u8::is_ascii_uppercase) {
            Ok((Some(vr), self.b.u16(pos + 6) as u32, 8))
        } else {
            Err(PrescanError::Vr { tag, pos, vr })
        }
    }

    /// Open a sequence or encapsulated pixel data, within [`MAX_SEQUENCE_DEPTH`]; `at` is
    /// the offset of the element that opens it.
    fn open(&mut self, level: Level, at: usize) -> Result<(), PrescanError> {
        self.depth += 1;
        if self.depth > MAX_SEQUENCE_DEPTH {
            return Err(PrescanError::TooDeep { at });
        }
        self.stack.push(level);
        Ok(())
    }
}
