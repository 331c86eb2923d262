//! Run-time choice of the burn backend.

use burn::tensor::Device;
use burn::tensor::wgpu::wgpu;

/// The backends sacp runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// wgpu when a hardware GPU adapter exists, else the CPU (a software Vulkan driver such
    /// as lavapipe counts as a CPU: burn-flex is faster there).
    Auto,
    /// burn-flex on the CPU (the fastest burn CPU backend on our machines).
    Cpu,
    /// burn-wgpu on the first GPU adapter (Vulkan, Metal or DX12; lavapipe works too).
    Wgpu,
}

/// The backend could not be started.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot start the wgpu backend: {0}; on a machine without a GPU install a software Vulkan driver (Debian: mesa-vulkan-drivers) or use --backend cpu"
)]
pub struct BackendError(String);

impl Backend {
    /// Opens a device of this backend.
    pub fn device(self) -> Result<Device, BackendError> {
        match self {
            Backend::Auto => Ok(match Device::wgpu_options().init_with_setup() {
                Ok((device, setup)) if setup.adapter.get_info().device_type != wgpu::DeviceType::Cpu => device,
                _ => Device::flex(),
            }),
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => Device::wgpu_options().init().map_err(|e| BackendError(e.to_string())),
        }
    }
}
