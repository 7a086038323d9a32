//! What one load costs on this device: a 3 x 3 window read 8 times per invocation (72
//! loads, neighbouring lanes at neighbouring addresses, as a convolution reads its input)
//! from a storage buffer and from a texture, as `f32` and as `vec4<f32>`, with wgpu's
//! bounds checks and without them (the engine's kernels run without: `src/gpu/pipeline.rs`
//! says why that is safe). Prints each form's time per dispatch and per lane-load, three
//! rounds so that the drift of a shared machine shows.
//!
//! ```text
//! cargo run --release --example load_probe
//! UNET_BACKEND=gl cargo run --release --example load_probe
//! ```
//!
//! On lavapipe (Mesa 25.0.7) a texture load cost more than an unchecked storage load of the
//! same width (BENCHMARKS.md, "Texture reads"), so the kernels read storage buffers.
use std::time::Instant;
use unet_wgpu::{AdapterChoice, Gpu};

const W: u32 = 1024;
const H: u32 = 1024;

const SOURCE: &str = r#"
@group(0) @binding(0) var<storage, read> src1: array<f32>;
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var tex1: texture_2d<f32>;
@group(0) @binding(3) var tex4: texture_2d<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
const W: u32 = 1024u;
const R: u32 = 8u;

@compute @workgroup_size(64)
fn storage1(@builtin(global_invocation_id) g: vec3<u32>) {
    let x = g.x % (W - 16u);
    let y = (g.x / (W - 16u)) % (W - 16u);
    var v = 0.0;
    for (var r = 0u; r < R; r++) {
        for (var dy = 0u; dy < 3u; dy++) {
            for (var dx = 0u; dx < 3u; dx++) {
                v += src1[(y + dy + r) * W + x + dx];
            }
        }
    }
    out[g.x] = v;
}

@compute @workgroup_size(64)
fn texture1(@builtin(global_invocation_id) g: vec3<u32>) {
    let x = g.x % (W - 16u);
    let y = (g.x / (W - 16u)) % (W - 16u);
    var v = 0.0;
    for (var r = 0u; r < R; r++) {
        for (var dy = 0u; dy < 3u; dy++) {
            for (var dx = 0u; dx < 3u; dx++) {
                v += textureLoad(tex1, vec2<u32>(x + dx, y + dy + r), 0).x;
            }
        }
    }
    out[g.x] = v;
}

@compute @workgroup_size(64)
fn storage4(@builtin(global_invocation_id) g: vec3<u32>) {
    let x = g.x % (W / 4u - 4u);
    let y = (g.x / (W / 4u - 4u)) % (W - 16u);
    var v = vec4<f32>(0.0);
    for (var r = 0u; r < R; r++) {
        for (var dy = 0u; dy < 3u; dy++) {
            for (var dx = 0u; dx < 3u; dx++) {
                v += src4[(y + dy + r) * W / 4u + x + dx];
            }
        }
    }
    out[g.x] = v.x + v.y + v.z + v.w;
}

@compute @workgroup_size(64)
fn texture4(@builtin(global_invocation_id) g: vec3<u32>) {
    let x = g.x % (W / 4u - 4u);
    let y = (g.x / (W / 4u - 4u)) % (W - 16u);
    var v = vec4<f32>(0.0);
    for (var r = 0u; r < R; r++) {
        for (var dy = 0u; dy < 3u; dy++) {
            for (var dx = 0u; dx < 3u; dx++) {
                v += textureLoad(tex4, vec2<u32>(x + dx, y + dy + r), 0);
            }
        }
    }
    out[g.x] = v.x + v.y + v.z + v.w;
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new(AdapterChoice::default())?;
    println!("{}", gpu.describe());
    let device = gpu.device();
    let queue = gpu.queue();
    let data: Vec<f32> = (0..W * H).map(|i| (i % 97) as f32 * 0.01).collect();
    let bytes: &[u8] = bytemuck::cast_slice(&data);
    let buffer = |usage| {
        let b = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.len() as u64,
            usage,
            mapped_at_creation: false,
        });
        queue.write_buffer(&b, 0, bytes);
        b
    };
    let src = buffer(wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST);
    let out = buffer(wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST);
    let texture = |format, width: u32| {
        let t = device.create_texture(&wgpu::TextureDescriptor {
            label: None,
            size: wgpu::Extent3d {
                width,
                height: H,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &t,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            bytes,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(W * 4),
                rows_per_image: Some(H),
            },
            wgpu::Extent3d {
                width,
                height: H,
                depth_or_array_layers: 1,
            },
        );
        t.create_view(&Default::default())
    };
    let tex1 = texture(wgpu::TextureFormat::R32Float, W);
    let tex4 = texture(wgpu::TextureFormat::Rgba32Float, W / 4);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(SOURCE.into()),
    });
    let unchecked = unsafe {
        device.create_shader_module_trusted(
            wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(SOURCE.into()),
            },
            wgpu::ShaderRuntimeChecks::unchecked(),
        )
    };
    let entry = |ty| wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty,
        count: None,
    };
    let storage = |read_only| wgpu::BindingType::Buffer {
        ty: wgpu::BufferBindingType::Storage { read_only },
        has_dynamic_offset: false,
        min_binding_size: None,
    };
    let tex_ty = wgpu::BindingType::Texture {
        sample_type: wgpu::TextureSampleType::Float { filterable: false },
        view_dimension: wgpu::TextureViewDimension::D2,
        multisampled: false,
    };
    let entries: Vec<_> = [storage(true), storage(true), tex_ty, tex_ty, storage(false)]
        .into_iter()
        .enumerate()
        .map(|(i, ty)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            ..entry(ty)
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: None,
        entries: &entries,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: src.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: src.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: wgpu::BindingResource::TextureView(&tex1),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: wgpu::BindingResource::TextureView(&tex4),
            },
            wgpu::BindGroupEntry {
                binding: 4,
                resource: out.as_entire_binding(),
            },
        ],
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: None,
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let invocations = (W - 16) * (H - 16) / 4;
    for round in 0..3 {
        for (name, module, checks) in [
            ("storage1", &module, "checked"),
            ("storage1", &unchecked, "unchecked"),
            ("texture1", &module, "checked"),
            ("storage4", &module, "checked"),
            ("storage4", &unchecked, "unchecked"),
            ("texture4", &module, "checked"),
        ] {
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: Some(&pl),
                module,
                entry_point: Some(name),
                compilation_options: Default::default(),
                cache: None,
            });
            let run = |reps: u32| {
                let mut encoder = device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&pipeline);
                    pass.set_bind_group(0, &bind, &[]);
                    for _ in 0..reps {
                        pass.dispatch_workgroups(invocations / 64, 1, 1);
                    }
                }
                queue.submit([encoder.finish()]);
                device
                    .poll(wgpu::PollType::Wait {
                        submission_index: None,
                        timeout: None,
                    })
                    .unwrap();
            };
            run(1);
            let t = Instant::now();
            run(5);
            let ms = t.elapsed().as_secs_f64() * 1000.0 / 5.0;
            let loads = f64::from(invocations) * 72.0;
            println!(
                "round {round} {name} {checks}: {ms:.2} ms per dispatch, {:.2} ns per lane-load",
                ms * 1e6 / loads
            );
        }
    }
    Ok(())
}
