//! Fixed-width numbers at byte offsets of a little- or big-endian buffer: the DICOM
//! prescan's element headers and the NIfTI header's fields, whose byte order is known
//! only once the file is open (so not a type parameter, as `byteorder`'s would be).

/// A buffer read as little- or big-endian numbers with std's `from_le_bytes` /
/// `from_be_bytes`. The caller bounds-checks the offsets (an offset past the end panics).
#[derive(Clone, Copy, Debug)]
pub struct Endian<'a> {
    buf: &'a [u8],
    big: bool,
}

/// One read per type, each `$t::from_be_bytes` or `$t::from_le_bytes` of the bytes at `at`.
macro_rules! reads {
    ($($t:ident),* $(,)?) => {$(
        #[doc = concat!("The `", stringify!($t), "` at byte `at`.")]
        pub fn $t(&self, at: usize) -> $t {
            let b = self.array(at);
            if self.big {
                $t::from_be_bytes(b)
            } else {
                $t::from_le_bytes(b)
            }
        }
    )*};
}

impl<'a> Endian<'a> {
    /// Read `buf` in the given byte order.
    pub fn new(buf: &'a [u8], big_endian: bool) -> Self {
        Endian {
            buf,
            big: big_endian,
        }
    }

    /// The `N` bytes at `at`, as they stand (e.g. a DICOM VR's two letters).
    pub fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut a = [0; N];
        a.copy_from_slice(&self.buf[at..at + N]);
        a
    }

    reads!(u16, u32, i16, f32);
}

#[cfg(test)]
mod tests {
    use super::Endian;

    #[test]
    fn reads_either_byte_order_at_an_offset() {
        let buf = [0xAA, 0x01, 0x02, 0x03, 0x04];
        let (le, be) = (Endian::new(&buf, false), Endian::new(&buf, true));
        assert_eq!(le.array::<2>(1), [0x01, 0x02]);
        assert_eq!((le.u16(1), be.u16(1)), (0x0201, 0x0102));
        assert_eq!((le.u32(1), be.u32(1)), (0x0403_0201, 0x0102_0304));
        assert_eq!((le.i16(0), be.i16(0)), (0x01AAu16 as i16, 0xAA01u16 as i16));
        let one = 1.5f32;
        let mut b = [0u8; 6];
        b[2..].copy_from_slice(&one.to_be_bytes());
        assert_eq!(Endian::new(&b, true).f32(2), one);
        b[2..].copy_from_slice(&one.to_le_bytes());
        assert_eq!(Endian::new(&b, false).f32(2), one);
    }
}
