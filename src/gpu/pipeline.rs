//! Kernels and the pipeline cache.
//!
//! A [`Kernel`] names a WGSL entry point and the buffers it binds. Every kernel uses one
//! bind group: binding 0 is its `Params` uniform, bindings 1.. are storage buffers in the
//! order of [`Kernel::bindings`]. Pipelines are built once per device for each
//! (shader, entry point, override constants) and cached; shapes travel as uniforms, so one
//! pipeline serves every tile size.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A WGSL source file from `shaders/`.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// Declares a [`Shader`] from a file in `shaders/`, embedded at compile time.
#[macro_export]
macro_rules! shader {
    ($file:literal) => {
        $crate::gpu::Shader {
            name: $file,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file)),
        }
    };
}

/// How a kernel uses one storage buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
}

/// One compute entry point and the storage buffers it binds (after the params uniform).
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
    pub bindings: &'static [Access],
}

/// Override constants (`override NAME: T = ...;` in WGSL), e.g. workgroup or tile sizes.
pub type Constants<'a> = &'a [(&'static str, f64)];

#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
}

/// A built pipeline with the layout its bind groups are made from.
pub struct CachedPipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

#[derive(Default)]
pub struct PipelineCache {
    modules: RefCell<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: RefCell<HashMap<PipelineKey, Rc<CachedPipeline>>>,
}

impl PipelineCache {
    /// The number of pipelines built so far (a test checks that a warm step builds none).
    pub fn count(&self) -> usize {
        self.pipelines.borrow().len()
    }

    pub fn get(
        &self,
        device: &wgpu::Device,
        kernel: &Kernel,
        constants: Constants,
    ) -> Rc<CachedPipeline> {
        let key = PipelineKey {
            shader: kernel.shader.name,
            entry: kernel.entry,
            constants: constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        };
        if let Some(cached) = self.pipelines.borrow().get(&key) {
            return Rc::clone(cached);
        }
        let built = Rc::new(self.build(device, kernel, constants));
        self.pipelines.borrow_mut().insert(key, Rc::clone(&built));
        built
    }

    fn build(
        &self,
        device: &wgpu::Device,
        kernel: &Kernel,
        constants: Constants,
    ) -> CachedPipeline {
        let module = self
            .modules
            .borrow_mut()
            .entry(kernel.shader.name)
            .or_insert_with(|| {
                let descriptor = wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.shader.name),
                    source: wgpu::ShaderSource::Wgsl(kernel.shader.source.into()),
                };
                // SAFETY: wgpu's injected runtime checks (index clamping on every buffer
                // access, guarded integer division, loop counters) cost several times the
                // arithmetic on CPU-like devices. Our kernels need none of them:
                // - every kernel guards its indices against the sizes in its `Params`, and
                //   the launchers check those sizes against the bound tensors (the tests run
                //   each kernel on odd sizes with NaN-poisoned outputs);
                // - every divisor is a shape value the launcher checked to be non-zero;
                // - every loop is bounded by a shape value from the uniform.
                unsafe {
                    device.create_shader_module_trusted(
                        descriptor,
                        wgpu::ShaderRuntimeChecks::unchecked(),
                    )
                }
            })
            .clone();

        let label = format!("{}::{}", kernel.shader.name, kernel.entry);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &layout_entries(kernel.bindings),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let constants: Vec<(&str, f64)> = constants.to_vec();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        CachedPipeline { pipeline, layout }
    }
}

/// Binding 0: the params uniform; bindings 1..: storage buffers, read-only where declared.
fn layout_entries(bindings: &[Access]) -> Vec<wgpu::BindGroupLayoutEntry> {
    let params = wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let storage = bindings
        .iter()
        .zip(1..)
        .map(|(access, binding)| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage {
                    read_only: *access == Access::Read,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    std::iter::once(params).chain(storage).collect()
}
