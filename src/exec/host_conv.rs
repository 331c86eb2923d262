//! Inference convolution on the CPU without burn-flex's per-tile overheads: each image is
//! unfolded (im2col, in NCHW order, so the PyTorch-layout weight `[out, in·kh·kw]` is the
//! left matrix as it is) and multiplied in one `gemm` call whose result is the image's NCHW
//! output; images run in parallel on the calling rayon pool. burn-flex's own conv converts
//! the batch to NHWC on one thread, re-packs the weight for every 512-pixel tile and scatters
//! the tile back; on the shapes of the zoo (batch 64) this is 1.3–1.8× faster per layer.
//! Small maps (the last stages of a CIFAR VGG) are multiplied for the whole batch at once.
//! The backward pass is the same unfolding: the weight gradient is the output gradient times
//! the unfolded input, the input gradient the transposed weight times the output gradient,
//! folded back (col2im). These are the kernels; `conv_op` makes them a burn operation.

use gemm::Parallelism;
use rayon::prelude::*;

/// Output maps with fewer pixels than this are multiplied as one batch: a per-image
/// multiply with a handful of columns wastes the matrix kernel.
const BATCHED_BELOW: usize = 64;

/// Geometry of one dense (ungrouped) convolution.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvShape {
    /// Input channels, height and width.
    pub input: [usize; 3],
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Zero padding `[ph, pw]` on each side.
    pub padding: [usize; 2],
}

impl ConvShape {
    /// Output height and width.
    pub fn output(&self) -> [usize; 2] {
        let [_, h, w] = self.input;
        let out = |size: usize, k: usize, s: usize, p: usize| (size + 2 * p - k) / s + 1;
        [
            out(h, self.kernel[0], self.stride[0], self.padding[0]),
            out(w, self.kernel[1], self.stride[1], self.padding[1]),
        ]
    }

    /// The output columns `[first, last)` whose input column `x·sw + kx − pw` is inside the
    /// image, for kernel column `kx`.
    fn columns_inside(&self, kx: usize) -> (usize, usize) {
        let (w, sw, pw, ow) = (self.input[2], self.stride[1], self.padding[1], self.output()[1]);
        let first = pw.saturating_sub(kx).div_ceil(sw).min(ow);
        (first, ((w + pw).saturating_sub(kx).div_ceil(sw)).clamp(first, ow))
    }

    fn columns(&self) -> usize {
        self.input[0] * self.kernel[0] * self.kernel[1]
    }
}

/// Zeroes a slice. The short ones (a kernel's columns past a row's edge: one or two values
/// per output row) are written directly, where a call to `memset` costs more than the stores.
fn zero(values: &mut [f32]) {
    match values {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => (*a, *b) = (0.0, 0.0),
        [a, b, c] => (*a, *b, *c) = (0.0, 0.0, 0.0),
        _ => values.fill(0.0),
    }
}

/// Unfolds one `C × H × W` image into `col` (`[C·kh·kw, OH·OW]`, row-major), whose rows
/// start `row_stride` values apart (`OH·OW` for one image's own buffer; wider when the
/// image is one block of a batch's side-by-side columns).
fn im2col(image: &[f32], shape: &ConvShape, col: &mut [f32], row_stride: usize) {
    let [c, h, w] = shape.input;
    let [oh, ow] = shape.output();
    let ([kh, kw], [sh, sw], [ph, pw]) = (shape.kernel, shape.stride, shape.padding);
    let l = oh * ow;
    for ci in 0..c {
        let plane = &image[ci * h * w..(ci + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut col[((ci * kh + ky) * kw + kx) * row_stride..][..l];
                if [sh, sw] == [1, 1] && ow == w {
                    shifted_plane(plane, [h, w], [ky as isize - ph as isize, kx as isize - pw as isize], oh, row);
                    continue;
                }
                for (y, dst) in row.chunks_exact_mut(ow).enumerate() {
                    let iy = (y * sh + ky) as isize - ph as isize;
                    if iy < 0 || iy >= h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * w..][..w];
                    let (first, last) = shape.columns_inside(kx);
                    zero(&mut dst[..first]);
                    zero(&mut dst[last..]);
                    if first == last {
                        continue;
                    }
                    let start = first * sw + kx - pw;
                    if sw == 1 {
                        dst[first..last].copy_from_slice(&src[start..start + (last - first)]);
                    } else {
                        for (d, &v) in dst[first..last].iter_mut().zip(src[start..].iter().step_by(sw)) {
                            *d = v;
                        }
                    }
                }
            }
        }
    }
}

/// The row of one kernel offset `[dy, dx]` for a stride-1 convolution whose output is as
/// wide as its input: `row[y·w + x] = plane[y + dy][x + dx]` (zero outside the plane),
/// written as one block copy of the plane shifted by `dy·w + dx`, then the columns that
/// wrapped around a row edge and the rows outside the plane zeroed.
fn shifted_plane(plane: &[f32], [h, w]: [usize; 2], [dy, dx]: [isize; 2], oh: usize, row: &mut [f32]) {
    let (h, w, oh) = (h as isize, w as isize, oh as isize);
    // Output rows whose input row is inside the plane.
    let (first, last) = ((-dy).clamp(0, oh), (h - dy).clamp(0, oh));
    row[..(first * w) as usize].fill(0.0);
    row[(last * w) as usize..].fill(0.0);
    if first < last {
        // Flat output positions [lo, hi) read plane[position + dy·w + dx] where that exists.
        let shift = dy * w + dx;
        let (lo, hi) = (first * w, last * w);
        let (src_lo, src_hi) = ((lo + shift).max(0), (hi + shift).min(h * w));
        let (dst_lo, dst_hi) = (src_lo - shift, src_hi - shift);
        zero(&mut row[lo as usize..dst_lo as usize]);
        zero(&mut row[dst_hi as usize..hi as usize]);
        row[dst_lo as usize..dst_hi as usize].copy_from_slice(&plane[src_lo as usize..src_hi as usize]);
        // Columns whose input column x + dx is outside the row read a neighbouring row.
        let wrapped = if dx > 0 { (w - dx).max(0)..w } else { 0..(-dx).min(w) };
        for y in first..last {
            zero(&mut row[(y * w + wrapped.start) as usize..(y * w + wrapped.end) as usize]);
        }
    }
}

/// The transpose of `shifted_plane`: `plane[y + dy][x + dx] += row[y·w + x]` wherever that
/// pixel exists, as one contiguous add of the row onto the plane shifted by `dy·w + dx`
/// after zeroing the row's entries whose column `x + dx` falls outside the plane (they would
/// land on a neighbouring row). The sums are those of the row-by-row loop, in its order.
fn add_shifted_row(row: &mut [f32], [h, w]: [usize; 2], [dy, dx]: [isize; 2], oh: usize, plane: &mut [f32]) {
    let (h, w, oh) = (h as isize, w as isize, oh as isize);
    let (first, last) = ((-dy).clamp(0, oh), (h - dy).clamp(0, oh));
    if first >= last {
        return;
    }
    let wrapped = if dx > 0 { (w - dx).max(0)..w } else { 0..(-dx).min(w) };
    for y in first..last {
        zero(&mut row[(y * w + wrapped.start) as usize..(y * w + wrapped.end) as usize]);
    }
    let shift = dy * w + dx;
    let (lo, hi) = (first * w, last * w);
    let (src_lo, src_hi) = ((lo + shift).max(0), (hi + shift).min(h * w));
    if src_lo >= src_hi {
        return;
    }
    let (dst_lo, dst_hi) = (src_lo - shift, src_hi - shift);
    for (p, r) in plane[src_lo as usize..src_hi as usize]
        .iter_mut()
        .zip(&row[dst_lo as usize..dst_hi as usize])
    {
        *p += r;
    }
}

/// A dense matrix view for `gemm`: its elements, and the strides
/// between neighbouring columns and rows.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    col_stride: usize,
    row_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows × cols` matrix.
    fn rows(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            col_stride: 1,
            row_stride: cols,
        }
    }

    /// Panics unless every element of an `m × n` view lies inside the slice.
    fn check(&self, m: usize, n: usize) {
        let last = (m - 1) * self.row_stride + (n - 1) * self.col_stride;
        assert!(m > 0 && n > 0 && last < self.data.len(), "a {m}×{n} view past its slice");
    }
}

/// `dst` (`cols × rows`) = the transpose of `src` (`rows × cols`), both row-major, in tiles
/// that stay in cache.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// `dst (m × n, row-major) = lhs (m × depth) · rhs (depth × n)`, added to what `dst` holds
/// when `accumulate`.
fn gemm_into(dst: &mut [f32], (m, n, depth): (usize, usize, usize), lhs: View, rhs: View, accumulate: bool, parallelism: Parallelism) {
    assert!(dst.len() == m * n, "a {m}×{n} product into {} elements", dst.len());
    lhs.check(m, depth);
    rhs.check(depth, n);
    // SAFETY: `check` proved that every element the strides reach lies inside its slice,
    // and `dst` is exactly the dense `m × n` row-major matrix the strides describe.
    unsafe {
        gemm::gemm(
            m,
            n,
            depth,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `out += weight · col`: `weight` `[O, K]`, `col` `[K, L]`, `out` `[O, L]` (holding the
/// bias rows).
fn multiply(weight: &[f32], col: &[f32], (o, k, l): (usize, usize, usize), parallelism: Parallelism, out: &mut [f32]) {
    gemm_into(out, (o, l, k), View::rows(weight, k), View::rows(col, l), true, parallelism);
}

/// `copies` blocks of `[O, L]` rows, row `o` of each holding `bias[o]`: written once,
/// without first zeroing the buffer.
fn bias_rows(bias: &[f32], l: usize, copies: usize) -> Vec<f32> {
    let mut rows = Vec::with_capacity(copies * bias.len() * l);
    for _ in 0..copies {
        for &b in bias {
            rows.extend(std::iter::repeat_n(b, l));
        }
    }
    rows
}

/// Adds each row of `col` (`[C·kh·kw, OH·OW]`, the layout `im2col` writes) back onto the
/// image positions it was read from: the transpose of `im2col`, added to `image` (which the
/// caller zeroes). `col` is scratch: the entries that fall outside the image are zeroed.
fn col2im(col: &mut [f32], shape: &ConvShape, image: &mut [f32]) {
    let [c, h, w] = shape.input;
    let [oh, ow] = shape.output();
    let ([kh, kw], [sh, sw], [ph, pw]) = (shape.kernel, shape.stride, shape.padding);
    let l = oh * ow;
    for ci in 0..c {
        let plane = &mut image[ci * h * w..(ci + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut col[((ci * kh + ky) * kw + kx) * l..][..l];
                if [sh, sw] == [1, 1] && ow == w {
                    add_shifted_row(row, [h, w], [ky as isize - ph as isize, kx as isize - pw as isize], oh, plane);
                    continue;
                }
                let (first, last) = shape.columns_inside(kx);
                if first == last {
                    continue;
                }
                let start = first * sw + kx - pw;
                for (y, src) in row.chunks_exact(ow).enumerate() {
                    let iy = (y * sh + ky) as isize - ph as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * w..][..w];
                    if sw == 1 {
                        // Contiguous on both sides: the loop the compiler vectorises.
                        for (d, s) in dst[start..start + (last - first)].iter_mut().zip(&src[first..last]) {
                            *d += s;
                        }
                    } else {
                        for (d, s) in dst[start..].iter_mut().step_by(sw).zip(&src[first..last]) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}

/// The convolution of `n` images `x` (`[N, C, H, W]`, row-major) with `weight`
/// (`[O, C, kh, kw]`) plus `bias` (`[O]`): the `[N, O, OH, OW]` output.
pub(super) fn forward(x: &[f32], weight: &[f32], bias: &[f32], n: usize, shape: &ConvShape) -> Vec<f32> {
    let [c, h, w] = shape.input;
    let o = bias.len();
    let [oh, ow] = shape.output();
    let (k, l) = (shape.columns(), oh * ow);
    if l >= BATCHED_BELOW {
        let mut out = bias_rows(bias, l, n);
        out.par_chunks_mut(o * l).zip(x.par_chunks(c * h * w)).for_each_init(
            || vec![0.0f32; k * l],
            |col, (out, image)| {
                im2col(image, shape, col, l);
                multiply(weight, col, (o, k, l), Parallelism::None, out);
            },
        );
        out
    } else {
        // Small maps: one multiply over the whole batch (`[K, N·L]` columns, image after
        // image), its `[O, N·L]` result then split into the images' `[O, L]` outputs.
        let mut cols = vec![0.0f32; k * n * l];
        for (b, image) in x.chunks_exact(c * h * w).enumerate() {
            im2col(image, shape, &mut cols[b * l..], n * l);
        }
        let mut wide = bias_rows(bias, n * l, 1);
        let threads = Parallelism::Rayon(rayon::current_num_threads());
        multiply(weight, &cols, (o, k, n * l), threads, &mut wide);
        let mut out = Vec::with_capacity(n * o * l);
        for b in 0..n {
            for oc in 0..o {
                out.extend_from_slice(&wide[oc * n * l + b * l..][..l]);
            }
        }
        out
    }
}

/// Gradients of a convolution: given its input `x`, `weight` and the gradient `grad` of its
/// `[N, O, OH, OW]` output, returns the gradient of `x` (when `of_input`; an unread input
/// such as the network's images needs none), of `weight` and of the bias. Images run in
/// parallel; the weight gradient is summed over one partial sum per worker.
pub(super) fn backward(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    n: usize,
    shape: &ConvShape,
    of_input: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let [c, h, w] = shape.input;
    let [oh, ow] = shape.output();
    let (k, l) = (shape.columns(), oh * ow);
    let o = weight.len() / k;
    let per_worker = n.div_ceil(rayon::current_num_threads()).max(1);
    let zeros = || (vec![0.0f32; o * k], vec![0.0f32; o]);
    let (weight_grad_t, bias_grad) = x
        .par_chunks(c * h * w)
        .zip(grad.par_chunks(o * l))
        .with_min_len(per_worker)
        .fold(
            || (zeros(), vec![0.0f32; k * l], vec![0.0f32; l * o]),
            |((mut dw_t, mut db), mut col, mut g_t), (image, g)| {
                im2col(image, shape, &mut col, l);
                // dWᵀ += col · gᵀ, gᵀ laid out row-major (gemm packs a strided operand one
                // element at a time; gᵀ is kh·kw times smaller than colᵀ).
                transpose(g, o, l, &mut g_t);
                gemm_into(
                    &mut dw_t,
                    (k, o, l),
                    View::rows(&col, l),
                    View::rows(&g_t, o),
                    true,
                    Parallelism::None,
                );
                for (b, row) in db.iter_mut().zip(g.chunks_exact(l)) {
                    *b += row.iter().sum::<f32>();
                }
                ((dw_t, db), col, g_t)
            },
        )
        .map(|(sums, _, _)| sums)
        .reduce(zeros, |(mut dw, mut db), (dw2, db2)| {
            dw.iter_mut().zip(&dw2).for_each(|(a, b)| *a += b);
            db.iter_mut().zip(&db2).for_each(|(a, b)| *a += b);
            (dw, db)
        });
    let mut weight_grad = vec![0.0f32; o * k];
    transpose(&weight_grad_t, k, o, &mut weight_grad);
    let input_grad = of_input.then(|| {
        let mut weight_t = vec![0.0f32; k * o];
        transpose(weight, o, k, &mut weight_t);
        let mut dx = vec![0.0f32; n * c * h * w];
        dx.par_chunks_mut(c * h * w).zip(grad.par_chunks(o * l)).for_each_init(
            || vec![0.0f32; k * l],
            |col, (image, g)| {
                // dcol = Wᵀ · g, then folded back onto the image.
                gemm_into(col, (k, l, o), View::rows(&weight_t, o), View::rows(g, l), false, Parallelism::None);
                col2im(col, shape, image);
            },
        );
        dx
    });
    (input_grad, weight_grad, bias_grad)
}
