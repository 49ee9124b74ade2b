//! Which burn device trains: `cpu` (Flex), `wgpu` (feature `wgpu`), or `auto`.

use burn::tensor::Device;

/// The trainer's device choice (`--device`, `UNetTrain { device }`).
#[derive(serde::Deserialize, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrainDevice {
    /// A GPU through wgpu when compiled in and present, else the CPU.
    #[default]
    Auto,
    /// burn's Flex CPU backend.
    Cpu,
    /// burn's wgpu backend (build with `--features wgpu`); `gpu` is accepted too, as
    /// `UNetInfer` names it.
    #[serde(alias = "gpu")]
    Wgpu,
}

/// A `--device` value that names no device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device {0:?}: expected auto, cpu or wgpu")]
pub struct UnknownDevice(pub String);

impl std::str::FromStr for TrainDevice {
    type Err = UnknownDevice;
    fn from_str(s: &str) -> Result<Self, UnknownDevice> {
        match s {
            "auto" => Ok(TrainDevice::Auto),
            "cpu" => Ok(TrainDevice::Cpu),
            "wgpu" | "gpu" => Ok(TrainDevice::Wgpu),
            other => Err(UnknownDevice(other.to_string())),
        }
    }
}

/// Why `device: wgpu` cannot train here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Built with wgpu, but no adapter answered.
    #[error(
        "device wgpu: wgpu found no GPU adapter (is the Vulkan loader, libvulkan1, installed?)"
    )]
    NoAdapter,
    /// Built without the `wgpu` feature.
    #[error(
        "device wgpu: this voxflow was built without the `wgpu` feature (cargo build --release \
         --features wgpu, or wgpu-tuned to train)"
    )]
    NotBuilt,
}

/// The device and a description for metrics and reports.
pub fn pick(choice: TrainDevice) -> Result<(Device, String), DeviceError> {
    let cpu = || (Device::flex(), "cpu (burn Flex)".to_string());
    match choice {
        TrainDevice::Cpu => Ok(cpu()),
        TrainDevice::Auto => Ok(gpu().unwrap_or_else(cpu)),
        TrainDevice::Wgpu => gpu().ok_or(if cfg!(feature = "wgpu") {
            DeviceError::NoAdapter
        } else {
            DeviceError::NotBuilt
        }),
    }
}

#[cfg(feature = "wgpu")]
fn gpu() -> Option<(Device, String)> {
    voxflow_unet::gpu::wgpu_device()
}

#[cfg(not(feature = "wgpu"))]
fn gpu() -> Option<(Device, String)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_and_the_command_line_name_devices_alike() {
        for (text, want) in [
            ("auto", TrainDevice::Auto),
            ("cpu", TrainDevice::Cpu),
            ("wgpu", TrainDevice::Wgpu),
            ("gpu", TrainDevice::Wgpu),
        ] {
            let from_graph: TrainDevice =
                serde_json::from_value(serde_json::Value::from(text)).expect(text);
            assert_eq!(from_graph, want, "graph param {text:?}");
            assert_eq!(text.parse::<TrainDevice>(), Ok(want), "--device {text}");
        }
        let err = "cuda".parse::<TrainDevice>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown device \"cuda\": expected auto, cpu or wgpu"
        );
    }
}
