//! Helpers shared by the crate's unit tests.

use burn::tensor::TensorData;

/// Element-wise agreement within 1e-4, relative to the expected value (and absolute near
/// zero): two correct kernels sum in different orders.
pub fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{i}: {a} vs {b}");
    }
}

/// [`assert_close`] on f32 tensor data.
pub fn assert_close_data(got: TensorData, want: TensorData) {
    assert_close(
        &got.try_to_vec::<f32>().unwrap(),
        &want.try_to_vec::<f32>().unwrap(),
    );
}
