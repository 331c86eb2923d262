//! Moving tensors between burn-flex and host slices, for the operations sacp computes on the
//! host (`conv_op`, `norm_op`, `pool_op`).

use burn::backend::Flex;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Shape, TensorData};
use std::borrow::Cow;

/// The f32 elements of a burn-flex tensor, row-major (copied only when it is a strided view).
pub(super) fn elements(t: &FloatTensor<Flex>) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("sacp's tensors are f32").to_vec()),
    }
}

/// A burn-flex tensor of `shape` holding `values`.
pub(super) fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FloatTensor<Flex> {
    FloatTensor::<Flex>::from_data(TensorData::new(values, shape.into()))
}

/// The largest absolute difference between two tensors' elements as a share of the largest
/// magnitude in `expected`; a NaN or infinity on either side fails.
#[cfg(test)]
pub(super) fn relative_gap<const D: usize>(got: burn::tensor::Tensor<D>, expected: burn::tensor::Tensor<D>) -> f32 {
    assert_eq!(got.dims(), expected.dims());
    let read = |t: burn::tensor::Tensor<D>| t.into_data().try_into_vec::<f32>().unwrap();
    let (got, expected) = (read(got), read(expected));
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    got.iter().zip(&expected).fold(0.0f32, |m, (a, b)| {
        assert!(a.is_finite() && b.is_finite(), "{a} vs {b}");
        m.max((a - b).abs())
    }) / scale
}
