//! Mirroring: how the data module fills everything that lies outside an image.
//!
//! Convention: numpy's `np.pad(mode="reflect")`, i.e. reflection about the edge pixel, which is
//! *not* repeated. For a row `a b c d` the padded row reads `... c b | a b c d | c b a ...`.
//! Padding wider than the image keeps reflecting back and forth (period `2 (n - 1)`), exactly as
//! numpy does. A 1-pixel-wide axis has nothing to reflect: every index maps to that one pixel
//! (numpy gives the same result).

use super::grid::Grid;

/// Maps any (possibly negative or too large) index onto `0..n` by mirror reflection.
///
/// `n` must be at least 1.
#[inline]
pub fn reflect_index(i: isize, n: usize) -> usize {
    debug_assert!(n > 0, "reflect_index on an empty axis");
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    // First half of a period walks forward, second half walks back.
    if m < n as isize {
        m as usize
    } else {
        (period - m) as usize
    }
}

/// Cuts the `width x height` window whose top-left corner is at (`x0`, `y0`) in image
/// coordinates. The window may lie partly or wholly outside the image: those pixels are mirrored.
pub fn crop_mirrored<T: Copy>(
    grid: &Grid<T>,
    x0: isize,
    y0: isize,
    width: usize,
    height: usize,
) -> Grid<T> {
    let columns: Vec<usize> = (0..width)
        .map(|dx| reflect_index(x0 + dx as isize, grid.width))
        .collect();
    let mut data = Vec::with_capacity(width * height);
    for dy in 0..height {
        let row = grid.row(reflect_index(y0 + dy as isize, grid.height));
        data.extend(columns.iter().map(|&x| row[x]));
    }
    Grid {
        width,
        height,
        data,
    }
}

/// Pads a plane by mirroring: `top`/`bottom` rows and `left`/`right` columns, any amount
/// (including more than the image size).
pub fn mirror_pad<T: Copy>(
    grid: &Grid<T>,
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
) -> Grid<T> {
    crop_mirrored(
        grid,
        -(left as isize),
        -(top as isize),
        grid.width + left + right,
        grid.height + top + bottom,
    )
}
