//! Fast binary morphology on bit-packed masks (the `fast` implementation).
//!
//! Border conventions (shared with [`super::naive`], checked against scipy):
//! - [`dilate`]: outside the volume is background.
//! - [`erode`]: outside the volume is foreground (scipy `border_value=1`), so objects
//!   touching the border do not shrink from it.
//! - [`close`]: the closing of the mask in an unbounded space where the outside is
//!   background. Computed like ITK's closing with `SafeBorder` and like
//!   `sarcopenia_ref.closing`: pad by the element radius with background, dilate, erode,
//!   crop. It is extensive (the output contains the input).
//! - [`open`]: the dual: the opening of the mask in an unbounded space where the outside
//!   is foreground (pad with foreground, erode, dilate, crop; ITK's grayscale opening
//!   with `SafeBorder`). It is anti-extensive and `open(m) == !close(!m)`.
//!
//! Closing is *not* "dilate (outside background), then erode (outside foreground)" on
//! the unpadded grid: that composition also fills background voxels lying between an
//! object and the volume border (an object one voxel from the border would grow onto
//! it), which the reference does not do. A test shows the difference.
//!
//! Erosion is the complement of the dilation of the complement; this holds because
//! every [`Element`] is symmetric about its centre.

use voxflow_engine::Mask;

use super::bits::BitVolume;
use super::element::Element;

/// Dilation of `mask` by `element`; outside the volume is background.
pub fn dilate(mask: &Mask, element: &Element) -> Mask {
    let b = BitVolume::from_mask(mask, [0; 3], false);
    b.dilate(element).to_mask([0; 3], mask.geometry().clone())
}

/// Erosion of `mask` by `element`; outside the volume is foreground.
pub fn erode(mask: &Mask, element: &Element) -> Mask {
    let mut b = BitVolume::from_mask(mask, [0; 3], false);
    b.invert();
    let mut d = b.dilate(element);
    d.invert();
    d.to_mask([0; 3], mask.geometry().clone())
}

/// Closing (dilation then erosion) of `mask` by `element`, with the outside of the
/// volume background throughout (see the module docs); extensive.
pub fn close(mask: &Mask, element: &Element) -> Mask {
    let pad = element.radius();
    let b = BitVolume::from_mask(mask, pad, false);
    let mut d = b.dilate(element);
    d.invert();
    let mut e = d.dilate(element);
    e.invert();
    e.to_mask(pad, mask.geometry().clone())
}

/// Opening (erosion then dilation) of `mask` by `element`, with the outside of the
/// volume foreground throughout (see the module docs); anti-extensive.
pub fn open(mask: &Mask, element: &Element) -> Mask {
    let pad = element.radius();
    let mut b = BitVolume::from_mask(mask, pad, true);
    b.invert();
    let mut e = b.dilate(element);
    e.invert();
    e.dilate(element).to_mask(pad, mask.geometry().clone())
}
