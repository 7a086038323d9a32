//! Choosing a GPU adapter: the best one available, or the one the user names.

use crate::error::{Error, Result};

/// Which adapter to use. `Default` means: the best available (a discrete GPU before an
/// integrated one, before a software rasteriser such as lavapipe).
#[derive(Clone, Debug, Default)]
pub struct AdapterChoice {
    /// A case-insensitive substring of the adapter's name, e.g. "nvidia" or "llvmpipe".
    pub name: Option<String>,
    /// Restrict to one backend: vulkan, metal, dx12 or gl.
    pub backend: Option<String>,
}

impl AdapterChoice {
    /// The choice given by the environment: `UNET_ADAPTER` (name substring) and
    /// `UNET_BACKEND` (vulkan, metal, dx12, gl).
    pub fn from_env() -> AdapterChoice {
        let var = |key| std::env::var(key).ok().filter(|v: &String| !v.is_empty());
        AdapterChoice {
            name: var("UNET_ADAPTER"),
            backend: var("UNET_BACKEND"),
        }
    }

    /// `self`, with any field it leaves unset taken from `fallback`.
    pub fn or(self, fallback: AdapterChoice) -> AdapterChoice {
        AdapterChoice {
            name: self.name.or(fallback.name),
            backend: self.backend.or(fallback.backend),
        }
    }

    fn backends(&self) -> Result<wgpu::Backends> {
        let Some(backend) = &self.backend else {
            return Ok(wgpu::Backends::all());
        };
        match backend.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
            "metal" => Ok(wgpu::Backends::METAL),
            "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
            "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
            _ => Err(Error::UnknownBackend(backend.clone())),
        }
    }
}

/// Every adapter the instance can see, on the backends `choice` allows.
pub fn list_adapters(choice: &AdapterChoice) -> Result<Vec<wgpu::Adapter>> {
    quiet_mesa_runtime_dir();
    let backends = choice.backends()?;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    Ok(pollster::block_on(instance.enumerate_adapters(backends)))
}

/// Picks the adapter `choice` asks for.
pub fn choose_adapter(choice: &AdapterChoice) -> Result<wgpu::Adapter> {
    let adapters = list_adapters(choice)?;
    if adapters.is_empty() {
        let detail = match &choice.backend {
            Some(backend) => format!("none on the {backend} backend"),
            None => "none on any backend".to_string(),
        };
        return Err(Error::NoAdapter { detail });
    }
    let matching: Vec<wgpu::Adapter> = match &choice.name {
        None => adapters,
        Some(wanted) => {
            let wanted_lower = wanted.to_lowercase();
            let (matching, others): (Vec<_>, Vec<_>) = adapters
                .into_iter()
                .partition(|a| a.get_info().name.to_lowercase().contains(&wanted_lower));
            if matching.is_empty() {
                let available = others
                    .iter()
                    .map(describe_short)
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(Error::AdapterNotFound {
                    wanted: wanted.clone(),
                    available,
                });
            }
            matching
        }
    };
    Ok(matching
        .into_iter()
        .max_by_key(|a| preference(&a.get_info()))
        .expect("`matching` is not empty"))
}

/// Higher is better: real GPUs first, then the primary backends before GL.
fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 1,
        wgpu::DeviceType::Cpu => 0,
    };
    let backend = u8::from(info.backend != wgpu::Backend::Gl);
    (device, backend)
}

/// "name (backend, device type)".
pub fn describe_short(adapter: &wgpu::Adapter) -> String {
    let info = adapter.get_info();
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

/// Mesa's drivers complain on every start when XDG_RUNTIME_DIR is unset, which floods
/// test output. Point it at a private directory for this process if it is missing.
fn quiet_mesa_runtime_dir() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join("unet-wgpu-runtime");
    if std::fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        // Set before any thread of ours starts using the environment.
        std::env::set_var("XDG_RUNTIME_DIR", dir);
    }
}
