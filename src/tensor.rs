//! A GPU tensor: a shape (N, C, H, W) and a buffer of 32-bit elements, contiguous, NCHW.

use std::fmt;

use crate::error::{Error, Result};
use crate::gpu::{Fit, Gpu, PooledBuffer};

/// A 4-D shape in NCHW order: batch, channels, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Shape {
        Shape { n, c, h, w }
    }
    /// A vector of `len` elements (biases): [1, 1, 1, len].
    pub const fn vector(len: usize) -> Shape {
        Shape {
            n: 1,
            c: 1,
            h: 1,
            w: len,
        }
    }
    pub const fn numel(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// Pixels per channel plane.
    pub const fn plane(&self) -> usize {
        self.h * self.w
    }
    /// The same shape with `c` channels.
    pub const fn with_c(&self, c: usize) -> Shape {
        Shape { c, ..*self }
    }
    /// The flat index of element (n, c, y, x).
    pub const fn index(&self, n: usize, c: usize, y: usize, x: usize) -> usize {
        ((n * self.c + c) * self.h + y) * self.w + x
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}, {}, {}]", self.n, self.c, self.h, self.w)
    }
}

/// The element type. Tensors are f32; a few ops keep integer side data (max-pool's
/// argmax) in a tensor of u32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
}

pub struct Tensor {
    shape: Shape,
    dtype: DType,
    buffer: PooledBuffer,
}

impl Tensor {
    /// A tensor whose contents are undefined (NaN when the GPU is in poison mode).
    /// `name` appears in errors, e.g. when the tensor is too large for the device.
    pub fn empty(gpu: &Gpu, shape: Shape, name: &str) -> Result<Tensor> {
        Self::uninit(gpu, shape, DType::F32, Fit::Class, name)
    }

    /// An uninitialised tensor of u32 elements.
    pub fn empty_u32(gpu: &Gpu, shape: Shape, name: &str) -> Result<Tensor> {
        Self::uninit(gpu, shape, DType::U32, Fit::Class, name)
    }

    fn uninit(gpu: &Gpu, shape: Shape, dtype: DType, fit: Fit, name: &str) -> Result<Tensor> {
        if shape.numel() == 0 {
            return Err(Error::shape(
                "tensor",
                format!("`{name}` has an empty shape {shape}"),
            ));
        }
        let buffer = gpu.storage(4 * shape.numel() as u64, fit, name)?;
        let tensor = Tensor {
            shape,
            dtype,
            buffer,
        };
        if gpu.poison() {
            crate::ops::fill::fill(gpu, &tensor, f32::NAN)?;
        }
        Ok(tensor)
    }

    pub fn zeros(gpu: &Gpu, shape: Shape, name: &str) -> Result<Tensor> {
        Self::zeros_fit(gpu, shape, Fit::Class, name)
    }

    pub fn from_slice(gpu: &Gpu, shape: Shape, data: &[f32], name: &str) -> Result<Tensor> {
        Self::from_slice_fit(gpu, shape, data, Fit::Class, name)
    }

    /// [`Tensor::zeros`] for a tensor that lives as long as the model (a parameter's
    /// gradient or momentum): its buffer is its exact size, not a size class.
    pub fn lasting_zeros(gpu: &Gpu, shape: Shape, name: &str) -> Result<Tensor> {
        Self::zeros_fit(gpu, shape, Fit::Exact, name)
    }

    /// [`Tensor::from_slice`] for a tensor that lives as long as the model (a parameter).
    pub fn lasting_from_slice(gpu: &Gpu, shape: Shape, data: &[f32], name: &str) -> Result<Tensor> {
        Self::from_slice_fit(gpu, shape, data, Fit::Exact, name)
    }

    fn zeros_fit(gpu: &Gpu, shape: Shape, fit: Fit, name: &str) -> Result<Tensor> {
        let tensor = Self::uninit(gpu, shape, DType::F32, fit, name)?;
        tensor.zero(gpu);
        Ok(tensor)
    }

    fn from_slice_fit(
        gpu: &Gpu,
        shape: Shape,
        data: &[f32],
        fit: Fit,
        name: &str,
    ) -> Result<Tensor> {
        let tensor = Self::uninit(gpu, shape, DType::F32, fit, name)?;
        tensor.write(gpu, data)?;
        Ok(tensor)
    }

    /// Overwrites the whole tensor with `data` from the host.
    pub fn write(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::shape(
                "tensor write",
                format!("{} values for a tensor of shape {}", data.len(), self.shape),
            ));
        }
        gpu.upload(&self.buffer, bytemuck::cast_slice(data))
    }

    /// Records a zero fill (used for gradient accumulators).
    pub fn zero(&self, gpu: &Gpu) {
        gpu.clear(&self.buffer);
    }

    /// Records a copy of `src` into `self` (same shape and type).
    pub fn copy_from(&self, gpu: &Gpu, src: &Tensor) -> Result<()> {
        if src.shape != self.shape || src.dtype != self.dtype {
            return Err(Error::shape(
                "tensor copy",
                format!("from {} to {}", src.shape, self.shape),
            ));
        }
        gpu.copy(&src.buffer, &self.buffer, self.bytes());
        Ok(())
    }

    /// Runs everything recorded and reads the tensor back.
    pub fn to_vec(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        assert_eq!(
            self.dtype,
            DType::F32,
            "to_vec on a u32 tensor: use to_vec_u32"
        );
        Ok(bytemuck::pod_collect_to_vec(
            &gpu.download(&self.buffer, self.bytes())?,
        ))
    }

    pub fn to_vec_u32(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        assert_eq!(
            self.dtype,
            DType::U32,
            "to_vec_u32 on an f32 tensor: use to_vec"
        );
        Ok(bytemuck::pod_collect_to_vec(
            &gpu.download(&self.buffer, self.bytes())?,
        ))
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    pub fn bytes(&self) -> u64 {
        4 * self.numel() as u64
    }
    /// The buffer, for binding to a kernel.
    pub fn buffer(&self) -> &PooledBuffer {
        &self.buffer
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({}, {:?})", self.shape, self.dtype)
    }
}
