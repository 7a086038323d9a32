//! y += alpha * x against the CPU, and its shape check.

mod common;

use common::*;
use unet_wgpu::ops::axpy::axpy;
use unet_wgpu::{Error, Shape};

#[test]
fn axpy_adds_a_scaled_tensor() {
    let gpu = gpu();
    // 3 * 5 * 37 * 41 elements: not a multiple of the workgroup size.
    let shape = Shape::new(3, 5, 37, 41);
    let mut r = rng(1);
    let (x, y) = (
        random_vec(&mut r, shape.numel()),
        random_vec(&mut r, shape.numel()),
    );
    let alpha = -0.375f32;
    let sum = upload(&gpu, shape, &y);
    axpy(&gpu, &sum, alpha, &upload(&gpu, shape, &x)).unwrap();
    let want: Vec<f64> = x
        .iter()
        .zip(&y)
        .map(|(&x, &y)| f64::from(y) + f64::from(alpha) * f64::from(x))
        .collect();
    assert_close("y + alpha x", &sum.to_vec(&gpu).unwrap(), &want, 1e-7, 1e-6);
}

#[test]
fn axpy_refuses_different_shapes() {
    let gpu = gpu();
    let y = upload(&gpu, Shape::new(1, 2, 3, 4), &[0.0; 24]);
    let x = upload(&gpu, Shape::new(1, 2, 4, 3), &[0.0; 24]);
    assert!(matches!(axpy(&gpu, &y, 1.0, &x), Err(Error::Shape { .. })));
}
