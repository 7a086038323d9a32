//! What a device's subgroups really are: a minimal shader that prints, for one workgroup,
//! the subgroup size the shader is told (`subgroup_size`), each invocation's lane id
//! (`subgroup_invocation_id`) and what `subgroupShuffle` reads from lane `(lane + 1) % size`.
//!
//! ```text
//! cargo run --release --example subgroup_probe
//! LP_NATIVE_VECTOR_WIDTH=1024 cargo run --release --example subgroup_probe
//! ```
//!
//! On a correct driver the lane ids run 0..size-1 and each shuffle reads its neighbour.
//! Mesa's lavapipe (25.0) at `LP_NATIVE_VECTOR_WIDTH=1024` reports 32 lanes, both to the
//! adapter and in `subgroup_size`, but its lane ids run 0..15 twice, and a shuffle from
//! lane 16 or above reads no lane of the 16 that exist: its SIMD width stops at 512 bits.
//! So it runs subgroups of 16 lanes while reporting 32 (at 2048 bits: 16 while reporting
//! 64). The engine measures the size when a device opens (`src/gpu/subgroups.rs`) instead
//! of trusting the report.

use unet_wgpu::gpu::{Access, Kernel, Shader};
use unet_wgpu::{AdapterChoice, Gpu, Shape, Tensor};

const SOURCE: &str = r#"
struct Params { unused: vec4<u32> }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
override WG: u32 = 32u;
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) size: u32) {
    out[3u * lid] = size;
    out[3u * lid + 1u] = lane;
    // The local index held by the next lane (local indices are what each lane holds).
    out[3u * lid + 2u] = subgroupShuffle(lid, (lane + 1u) % size);
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new(AdapterChoice::default())?;
    println!("{}", gpu.describe());
    let info = gpu.info();
    let wg = info.subgroup_max_size.max(1);
    println!(
        "adapter reports subgroups of {} to {} lanes; one workgroup of {wg}:",
        info.subgroup_min_size, info.subgroup_max_size
    );
    let kernel = Kernel {
        shader: Shader {
            name: "subgroup_probe_example",
            source: SOURCE,
        },
        entry: "main",
        bindings: &[Access::ReadWrite],
    };
    let out = Tensor::empty_u32(&gpu, Shape::vector(3 * wg as usize), "probe")?;
    let constants = [("WG", f64::from(wg))];
    gpu.dispatch(&kernel, &constants, &[0u32; 4], &[out.buffer()], [1, 1, 1])?;
    let rows = out.to_vec_u32(&gpu)?;
    println!("invocation  subgroup_size  lane id  shuffle from lane+1 read invocation");
    let mut wrong = 0;
    for (i, r) in rows.chunks_exact(3).enumerate() {
        let (size, lane, read) = (r[0], r[1], r[2] as usize);
        let want_lane = (lane + 1) % size;
        let ok = rows.get(3 * read + 1) == Some(&want_lane);
        wrong += usize::from(!ok);
        println!(
            "{i:>10}  {size:>13}  {lane:>7}  {read:>6}{}",
            if ok {
                ""
            } else {
                "  <- not lane (lane + 1) % size"
            }
        );
    }
    let lanes = rows.chunks_exact(3).map(|r| r[1]).max().unwrap_or(0) + 1;
    println!(
        "lane ids run 0..{}: subgroups of {lanes} lanes; {wrong} shuffles read the wrong lane",
        lanes - 1
    );
    Ok(())
}
