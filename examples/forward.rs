//! One forward pass of a checkpoint's network in eval mode (no dropout), from and to NumPy
//! files, so that its output can be compared with PyTorch's (`scripts/torch_check.py`).
//!
//! ```text
//! cargo run --release --example forward -- CHECKPOINT INPUT.npy OUT.npy
//! ```
//!
//! INPUT.npy: f32 [N, C_in, H, W]; H and W must be valid tile sizes for the network
//! (`unet info` lists them). OUT.npy: the logits, f32 [N, classes, H', W'] (for U-Net++,
//! its last head's).
//! The GPU is chosen as everywhere else (`UNET_ADAPTER`, `UNET_BACKEND`).

use std::error::Error;
use std::path::Path;

use unet_wgpu::model::{Mode, Network};
use unet_wgpu::train::checkpoint;
use unet_wgpu::{AdapterChoice, Gpu, Shape, Tensor};

type Res<T> = Result<T, Box<dyn Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ckpt, input, output] = args.as_slice() else {
        return Err("usage: forward CHECKPOINT INPUT.npy OUT.npy".into());
    };
    let gpu = Gpu::new(AdapterChoice::default())?;
    let model = checkpoint::load(&gpu, Path::new(ckpt))?.model;

    let (dims, data) = read_npy(Path::new(input))?;
    let [n, c, h, w] = dims[..] else {
        return Err(format!("{input}: need a 4-D array [N, C, H, W], got shape {dims:?}").into());
    };
    let config = *model.config();
    if c != config.in_channels {
        return Err(format!(
            "{input} has {c} channels, the network takes {}",
            config.in_channels
        )
        .into());
    }
    config.check_tile(h)?;
    config.check_tile(w)?;

    let tile = Tensor::from_slice(&gpu, Shape::new(n, c, h, w), &data, "input")?;
    let logits = match &model {
        Network::UNet(net) => net.forward(&gpu, tile, Mode::Eval)?.logits,
        Network::UNetPlusPlus(net) => {
            let mut acts = net.forward(&gpu, tile, Mode::Eval, config.depth - 1)?;
            acts.heads.pop().expect("a last head").logits
        }
    };
    let s = logits.shape();
    let logits = logits.to_vec(&gpu)?;
    write_npy(Path::new(output), [s.n, s.c, s.h, s.w], &logits)?;
    eprintln!(
        "{}: [{n}, {c}, {h}, {w}] -> [{}, {}, {}, {}] on {}",
        output,
        s.n,
        s.c,
        s.h,
        s.w,
        gpu.info().name
    );
    Ok(())
}

/// Reads a little-endian f32, C-ordered `.npy` file (format 1.0, 2.0 or 3.0): its shape
/// and its values.
fn read_npy(path: &Path) -> Res<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |msg: &str| format!("{}: {msg}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file").into());
    }
    // The header's length is a u16 after version 1.x, a u32 after 2.x and 3.x.
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported .npy version {v}")).into()),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    // The header is a Python dict literal such as
    // {'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 60, 60), }
    if !header.contains("'descr': '<f4'") {
        return Err(bad("dtype must be little-endian float32 ('<f4')").into());
    }
    if !header.contains("'fortran_order': False") {
        return Err(bad("must be C-ordered (fortran_order False)").into());
    }
    let shape_text = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(['(', ')']).nth(1))
        .ok_or_else(|| bad("no shape in header"))?;
    let dims = shape_text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad(&format!("bad shape ({shape_text})")))?;
    let body = &bytes[start + len..];
    let numel: usize = dims.iter().product();
    if body.len() != 4 * numel {
        return Err(bad(&format!(
            "shape {dims:?} needs {} bytes of data, the file has {}",
            4 * numel,
            body.len()
        ))
        .into());
    }
    let values = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    Ok((dims, values))
}

/// Writes `values` as a little-endian f32, C-ordered `.npy` file (format 1.0).
fn write_npy(path: &Path, dims: [usize; 4], values: &[f32]) -> Res<()> {
    let [n, c, h, w] = dims;
    let dict =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {c}, {h}, {w}), }}");
    // Magic (6) + version (2) + length (2) + dict + newline, padded to a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let dict = format!("{dict}{}\n", " ".repeat((64 - unpadded % 64) % 64));
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()).into())
}
