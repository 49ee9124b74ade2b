//! gzip for `.nii.gz`: streaming inflation while the file is read, parallel deflate in
//! independent blocks when writing, and the block index that lets such files be
//! inflated in parallel again.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use flate2::{Compress, Compression, Crc, Decompress, FlushCompress, FlushDecompress, Status};
use rayon::prelude::*;

use super::file::read_parallel;
use super::{try_zeroed, Header, GZIP_BLOCK, GZIP_LEVEL, MAX_DEFLATE_RATIO, WRITE_VOX_OFFSET};

/// What went wrong inflating a `.nii.gz`; shown after the file's name.
#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// The stream ended cleanly with voxel bytes still missing.
    #[error(
        "file too short: the gzip stream ended {missing} bytes before the end of the voxel data"
    )]
    Ended {
        /// Bytes still wanted.
        missing: usize,
    },
    /// zlib refused the data.
    #[error("corrupt gzip data: {0}")]
    Corrupt(flate2::DecompressError),
    /// The stream stops mid-member before the voxels are complete.
    #[error("truncated gzip stream: it ends {missing} bytes before the end of the voxel data")]
    Truncated {
        /// Bytes still wanted.
        missing: usize,
    },
    /// The voxels are complete but the member's trailer is missing.
    #[error(
        "truncated gzip stream: the voxels are complete but the gzip trailer (checksum) is missing"
    )]
    NoTrailer,
    /// A block of voxflow's block index inflates to another size than recorded.
    #[error(
        "corrupt gzip data: a block of the voxflow block index does not decode to its recorded \
         size"
    )]
    BlockSize,
    /// The block index holds another number of voxel bytes than the header needs.
    #[error(
        "corrupt gzip data: the block index holds {held} voxel bytes, the header needs {needed}"
    )]
    IndexSize {
        /// Voxel bytes in the index's blocks.
        held: usize,
        /// Voxel bytes the header needs.
        needed: usize,
    },
    /// CRC or length trailer disagrees with the inflated bytes.
    #[error("corrupt gzip data: checksum mismatch")]
    Checksum,
}

impl GzipError {
    /// Whether the gzip data itself is damaged (corrupt or truncated), rather than
    /// unreadable or simply shorter than what was asked for.
    pub(super) fn is_damage(&self) -> bool {
        !matches!(self, GzipError::Read(_) | GzipError::Ended { .. })
    }
}

/// Compressed bytes read from the file per step.
const READ_CHUNK: usize = 4 << 20;
/// Output bytes inflated per step.
const OUT_STEP: usize = 8 << 20;

/// A `.gz` file inflated in a two-stage pipeline: while the inflater fills one step of
/// the output, another thread reads the next chunk of the file and touches the pages
/// of the next output step (the kernel maps and zeroes fresh pages on first touch,
/// which otherwise costs the inflating thread a fault per 4 KiB). Inflation itself is
/// one zlib-rs stream, so output is identical to a plain read; multi-member files
/// (e.g. bgzip) are handled.
pub(super) struct GzipStream {
    file: File,
    /// The whole compressed file, filled from the front as reading progresses.
    input: Vec<u8>,
    /// Bytes of `input` read from the file so far.
    read: usize,
    /// Bytes of `input` consumed by the inflater.
    pos: usize,
    inflate: Decompress,
    member_done: bool,
}

/// Read up to [`READ_CHUNK`] bytes into the front of `free`; returns the count (0 at
/// the end of the file).
fn read_chunk(file: &mut File, free: &mut [u8]) -> std::io::Result<usize> {
    let n = free.len().min(READ_CHUNK);
    let mut got = 0;
    while got < n {
        match file.read(&mut free[got..n]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Write to one byte per 4 KiB page so the kernel maps the pages now (on this thread).
fn touch_pages(buf: &mut [u8]) {
    for page in buf.chunks_mut(4096) {
        // SAFETY: `page` is a valid, exclusively borrowed, non-empty slice; volatile so
        // the store (the whole point) is not optimised away.
        unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
    }
}

impl GzipStream {
    pub(super) fn new(mut file: File) -> std::io::Result<GzipStream> {
        let len = file.metadata()?.len() as usize;
        file.seek(SeekFrom::Start(0))?;
        let mut s = GzipStream {
            file,
            input: try_zeroed(len)
                .map_err(|m| std::io::Error::new(std::io::ErrorKind::OutOfMemory, m))?,
            read: 0,
            pos: 0,
            inflate: Decompress::new_gzip(15),
            member_done: false,
        };
        s.read_more()?;
        Ok(s)
    }

    /// Read the next chunk on this thread (when the inflater is starved).
    fn read_more(&mut self) -> std::io::Result<()> {
        let got = read_chunk(&mut self.file, &mut self.input[self.read..])?;
        self.got(got);
        Ok(())
    }

    fn got(&mut self, got: usize) {
        self.read += got;
        if got == 0 {
            // The file ended before its reported length (it shrank): stop there.
            self.input.truncate(self.read);
        }
    }

    fn fully_read(&self) -> bool {
        self.read == self.input.len()
    }

    /// Inflate and drop `n` bytes (header extensions), through a small buffer so that a
    /// large `vox_offset` costs no memory.
    pub(super) fn skip(&mut self, mut n: usize) -> Result<(), GzipError> {
        let mut scratch = vec![0u8; n.min(1 << 16)];
        while n > 0 {
            let k = n.min(scratch.len());
            self.read_exact(&mut scratch[..k])?;
            n -= k;
        }
        Ok(())
    }

    /// Fill `out` completely; `Err` says what is wrong.
    pub(super) fn read_exact(&mut self, out: &mut [u8]) -> Result<(), GzipError> {
        let mut filled = 0;
        while filled < out.len() {
            while (self.member_done || self.pos == self.read)
                && self.read - self.pos < 2
                && !self.fully_read()
            {
                self.read_more().map_err(GzipError::Read)?;
            }
            if self.member_done {
                // A gzip file may hold several members back to back (e.g. bgzip).
                if self.read - self.pos >= 2 && self.input[self.pos..self.pos + 2] == [0x1f, 0x8b] {
                    self.inflate = Decompress::new_gzip(15);
                    self.member_done = false;
                } else {
                    return Err(GzipError::Ended {
                        missing: out.len() - filled,
                    });
                }
            }
            let step_end = (filled + OUT_STEP).min(out.len());
            let (cur, rest) = out[filled..].split_at_mut(step_end - filled);
            let next_len = rest.len().min(OUT_STEP);
            let next = &mut rest[..next_len];
            let (avail, free) = self.input.split_at_mut(self.read);
            let avail = &avail[self.pos..];
            let (inflate, file) = (&mut self.inflate, &mut self.file);
            let (inflated, got) = rayon::join(
                move || {
                    let (in0, out0) = (inflate.total_in(), inflate.total_out());
                    let status = inflate.decompress(avail, cur, FlushDecompress::None);
                    status.map(|st| {
                        (
                            st,
                            (inflate.total_in() - in0) as usize,
                            (inflate.total_out() - out0) as usize,
                        )
                    })
                },
                move || {
                    touch_pages(next);
                    if free.is_empty() {
                        Ok(0)
                    } else {
                        read_chunk(file, free)
                    }
                },
            );
            let more = !self.fully_read();
            let got = got.map_err(GzipError::Read)?;
            if more {
                self.got(got);
            }
            let (status, used, made) = inflated.map_err(GzipError::Corrupt)?;
            self.pos += used;
            filled += made;
            match status {
                Status::StreamEnd => self.member_done = true,
                _ if used == 0 && made == 0 && !more => {
                    return Err(GzipError::Truncated {
                        missing: out.len() - filled,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Inflate the rest of the current member, checking its CRC and length trailer
    /// (zlib does when it reaches the end): a file truncated after the voxels, or with a
    /// damaged trailer, is reported rather than silently accepted.
    pub(super) fn finish(&mut self) -> Result<(), GzipError> {
        while !self.fully_read() {
            self.read_more().map_err(GzipError::Read)?;
        }
        let mut scratch = vec![0u8; 1 << 16];
        while !self.member_done {
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(
                    &self.input[self.pos..self.read],
                    &mut scratch,
                    FlushDecompress::None,
                )
                .map_err(GzipError::Corrupt)?;
            let used = (self.inflate.total_in() - in0) as usize;
            let made = (self.inflate.total_out() - out0) as usize;
            self.pos += used;
            match status {
                Status::StreamEnd => self.member_done = true,
                _ if used == 0 && made == 0 => return Err(GzipError::NoTrailer),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The gzip stream of a NIfTI-1 file holding `header` and `voxels` (little-endian), as
/// a list of byte blocks to write in order.
///
/// Compression runs in parallel the way pigz does it: blocks of [`GZIP_BLOCK`] bytes are
/// deflated independently, each ended with a sync flush (the last with a final block),
/// concatenated and wrapped in one gzip member whose CRC is combined from the blocks'.
/// Any gzip reader sees a single ordinary stream.
pub fn encode_gzip(header: &Header, voxels: &ByteSource) -> Vec<Vec<u8>> {
    let head = header.to_bytes();
    let n_blocks = 1 + voxels.blocks();
    let block = |i: usize| -> Cow<'_, [u8]> {
        if i == 0 {
            Cow::Borrowed(&head[..])
        } else {
            voxels.block(i - 1)
        }
    };
    let last = n_blocks - 1;
    let parts: Vec<(Vec<u8>, Crc, usize)> = (0..n_blocks)
        .into_par_iter()
        .map(|i| {
            let block = block(i);
            let mut c = Compress::new(Compression::new(GZIP_LEVEL), false);
            // Room for incompressible data: deflate's worst case is a few bytes per 16 KiB.
            let mut out = Vec::with_capacity(block.len() + block.len() / 1000 + 1024);
            let flush = if i == last {
                FlushCompress::Finish
            } else {
                FlushCompress::Sync
            };
            loop {
                let consumed = c.total_in() as usize;
                let status = c
                    .compress_vec(&block[consumed..], &mut out, flush)
                    .expect("deflate in memory");
                // Done when all input is in and the flush completed (output space left
                // over, or the end of the stream for the last block).
                let flushed = match flush {
                    FlushCompress::Finish => status == Status::StreamEnd,
                    _ => out.len() < out.capacity(),
                };
                if c.total_in() as usize == block.len() && flushed {
                    break;
                }
                out.reserve(out.capacity().max(1024));
            }
            out.shrink_to_fit();
            let mut crc = Crc::new();
            crc.update(&block);
            (out, crc, block.len())
        })
        .collect();
    let mut crc = Crc::new();
    let mut out = Vec::with_capacity(parts.len() + 2);
    let sizes: Vec<(usize, usize)> = parts.iter().map(|(d, _, n)| (d.len(), *n)).collect();
    out.push(gzip_header(&sizes));
    for (data, c, _) in parts {
        crc.combine(&c);
        out.push(data);
    }
    let mut trailer = crc.sum().to_le_bytes().to_vec();
    // ISIZE is the length modulo 2^32.
    trailer.extend_from_slice(&((WRITE_VOX_OFFSET + voxels.len) as u32).to_le_bytes());
    out.push(trailer);
    out
}

/// The voxel bytes of a file to write: a slice, or ranges converted on demand, so that
/// a converted copy of a whole volume (e.g. u16 labels narrowed to u8) never exists
/// at once: the gzip writer converts block by block, the plain writer in chunks.
pub struct ByteSource<'a> {
    len: usize,
    block: Box<dyn Fn(Range<usize>) -> Cow<'a, [u8]> + Sync + 'a>,
}

impl<'a> ByteSource<'a> {
    /// Number of [`GZIP_BLOCK`]-sized blocks (the last may be shorter).
    pub(super) fn blocks(&self) -> usize {
        self.len.div_ceil(GZIP_BLOCK)
    }

    /// Block `k` of [`GZIP_BLOCK`] bytes.
    pub(super) fn block(&self, k: usize) -> Cow<'a, [u8]> {
        let start = k * GZIP_BLOCK;
        (self.block)(start..self.len.min(start + GZIP_BLOCK))
    }

    /// Bytes that already exist.
    pub fn slice(bytes: &'a [u8]) -> Self {
        ByteSource {
            len: bytes.len(),
            block: Box::new(move |r| Cow::Borrowed(&bytes[r])),
        }
    }

    /// `len` bytes, produced range by range by `block`.
    pub fn with(len: usize, block: impl Fn(Range<usize>) -> Vec<u8> + Sync + 'a) -> Self {
        ByteSource {
            len,
            block: Box::new(move |r| Cow::Owned(block(r))),
        }
    }
}

/// Gzip subfield id of voxflow's block index (`VX`) in the header's FEXTRA field.
const INDEX_ID: [u8; 2] = *b"VX";
/// Most blocks an index can list (the FEXTRA field holds at most 65535 bytes).
const INDEX_MAX_BLOCKS: usize = (65535 - 8) / 8;

/// A gzip member header: no mtime (reproducible), unknown OS, and, when the blocks fit,
/// an FEXTRA subfield `VX` (version u32 = 1, then per block its compressed and
/// uncompressed length as u32) that lets voxflow inflate the blocks in parallel. Other
/// readers skip the subfield, as the gzip format prescribes.
fn gzip_header(blocks: &[(usize, usize)]) -> Vec<u8> {
    let fits = blocks.len() <= INDEX_MAX_BLOCKS
        && blocks
            .iter()
            .all(|&(c, u)| c <= u32::MAX as usize && u <= u32::MAX as usize);
    if !fits {
        return vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    }
    let len = 4 + 8 * blocks.len();
    let mut h = vec![0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255];
    h.extend_from_slice(&((len + 4) as u16).to_le_bytes());
    h.extend_from_slice(&INDEX_ID);
    h.extend_from_slice(&(len as u16).to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    for &(c, u) in blocks {
        h.extend_from_slice(&(c as u32).to_le_bytes());
        h.extend_from_slice(&(u as u32).to_le_bytes());
    }
    h
}

/// One block of a gzip block index: (compressed offset, compressed length,
/// uncompressed length).
type Block = (usize, usize, usize);

/// voxflow's block index of a gzip file: where the deflate data starts and each block's
/// (compressed offset, compressed length, uncompressed length). `None` when the file
/// has no index or it does not describe the file exactly (then the file is read as an
/// ordinary stream).
pub(super) fn parse_index(head: &[u8], file_len: usize) -> Option<(usize, Vec<Block>)> {
    if head.len() < 12 || head[..4] != [0x1f, 0x8b, 8, 4] {
        return None; // no FEXTRA, or other flags (name, comment, header CRC) we never write
    }
    let xlen = u16::from_le_bytes([head[10], head[11]]) as usize;
    let extra = head.get(12..12 + xlen)?;
    let mut at = 0;
    while at + 4 <= extra.len() {
        let len = u16::from_le_bytes([extra[at + 2], extra[at + 3]]) as usize;
        let data = extra.get(at + 4..at + 4 + len)?;
        if extra[at..at + 2] == INDEX_ID && len >= 12 && (len - 4) & 7 == 0 {
            let u32_at =
                |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().expect("4 bytes")) as usize;
            if u32_at(0) != 1 {
                return None;
            }
            let start = 12 + xlen;
            let mut offset = start;
            let mut blocks = Vec::with_capacity((len - 4) / 8);
            for b in 0..(len - 4) / 8 {
                let (c, u) = (u32_at(4 + 8 * b), u32_at(8 + 8 * b));
                // A block cannot inflate beyond deflate's ratio (slack for tiny blocks):
                // a damaged index must not size the header buffer.
                if u > c.saturating_mul(MAX_DEFLATE_RATIO) + 1024 {
                    return None;
                }
                blocks.push((offset, c, u));
                offset += c;
            }
            // The blocks must end exactly where the 8-byte trailer begins.
            return (offset + 8 == file_len).then_some((start, blocks));
        }
        at += 4 + len;
    }
    None
}

/// A voxflow-written `.nii.gz` with a block index: the whole file in memory, its blocks
/// inflated in parallel, each straight into its part of the voxel buffer.
pub(super) struct IndexedGzip {
    input: Vec<u8>,
    /// Blocks after the header block: (offset, compressed length, uncompressed length).
    pub(super) blocks: Vec<Block>,
    /// CRC of the bytes before the voxels (header block).
    head_crc: Crc,
}

/// Inflate one independent raw-deflate block into `out`, which it must fill exactly.
fn inflate_block(input: &[u8], out: &mut [u8], last: bool) -> Result<(), GzipError> {
    let mut d = Decompress::new(false);
    let status = d
        .decompress(input, out, FlushDecompress::None)
        .map_err(GzipError::Corrupt)?;
    let complete = d.total_in() as usize == input.len()
        && d.total_out() as usize == out.len()
        && (status == Status::StreamEnd) == last;
    if complete {
        Ok(())
    } else {
        Err(GzipError::BlockSize)
    }
}

impl IndexedGzip {
    /// Read the file (in parallel) and decode its header block; `None` when the index
    /// does not fit this file (the caller then streams it).
    pub(super) fn open(file: &File, len: usize) -> Option<(IndexedGzip, Vec<u8>)> {
        let mut head = vec![0u8; len.min(1 << 16)];
        read_parallel(file, 0, &mut head).ok()?;
        let (_, blocks) = parse_index(&head, len)?;
        let mut input: Vec<u8> = try_zeroed(len).ok()?;
        read_parallel(file, 0, &mut input).ok()?;
        let (first, rest) = blocks.split_first()?;
        let mut header = vec![0u8; first.2];
        inflate_block(
            &input[first.0..first.0 + first.1],
            &mut header,
            rest.is_empty(),
        )
        .ok()?;
        let mut head_crc = Crc::new();
        head_crc.update(&header);
        Some((
            IndexedGzip {
                input,
                blocks: rest.to_vec(),
                head_crc,
            },
            header,
        ))
    }

    /// Inflate every block into `out` in parallel and check the gzip CRC and length.
    pub(super) fn read_exact(self, out: &mut [u8]) -> Result<(), GzipError> {
        let total: usize = self.blocks.iter().map(|b| b.2).sum();
        if total != out.len() {
            return Err(GzipError::IndexSize {
                held: total,
                needed: out.len(),
            });
        }
        let mut parts = Vec::with_capacity(self.blocks.len());
        let mut rest = out;
        for b in &self.blocks {
            let (part, tail) = rest.split_at_mut(b.2);
            parts.push(part);
            rest = tail;
        }
        let last = self.blocks.len() - 1;
        let crcs: Vec<Crc> = parts
            .into_par_iter()
            .zip(self.blocks.par_iter())
            .enumerate()
            .map(|(i, (part, &(off, clen, _)))| {
                inflate_block(&self.input[off..off + clen], part, i == last)?;
                let mut c = Crc::new();
                c.update(part);
                Ok(c)
            })
            .collect::<Result<_, GzipError>>()?;
        let mut crc = self.head_crc;
        for c in &crcs {
            crc.combine(c);
        }
        let t = &self.input[self.input.len() - 8..];
        let want_crc = u32::from_le_bytes(t[..4].try_into().expect("4 bytes"));
        let want_len = u32::from_le_bytes(t[4..].try_into().expect("4 bytes"));
        if crc.sum() != want_crc || crc.amount() != want_len {
            return Err(GzipError::Checksum);
        }
        Ok(())
    }
}
