//! Finding a GPU through wgpu (feature `wgpu`).

use std::sync::OnceLock;

use burn::tensor::{Device, DeviceKind, Tensor};

use crate::gpu_cache::GpuCache;

/// Set to `1` to let wgpu run on a CPU Vulkan driver (Mesa's llvmpipe/lavapipe) when no GPU
/// answers: slow, but it runs the GPU code path (kernels, autotuning, the kernel cache) on
/// machines without a GPU, for tests.
pub const CPU_ADAPTER_ENV: &str = "VOXFLOW_WGPU_CPU_ADAPTER";

/// The first discrete (else integrated) GPU wgpu can run a tensor on, with a description,
/// or `None`. Probed once per process: wgpu panics when it finds no adapter, so the probe
/// runs under `catch_unwind`; CPU adapters (llvmpipe) are not considered GPUs unless
/// [`CPU_ADAPTER_ENV`] is `1`. The kernel cache ([`GpuCache`]) is installed first, since
/// CubeCL reads its configuration once, when the first device starts.
pub fn wgpu_device() -> Option<(Device, String)> {
    static FOUND: OnceLock<Option<(Device, String)>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let cache_note = GpuCache::from_env().install();
            let mut kinds = vec![
                (DeviceKind::DiscreteGpu(0), "discrete GPU 0"),
                (DeviceKind::IntegratedGpu(0), "integrated GPU 0"),
            ];
            if std::env::var_os(CPU_ADAPTER_ENV).is_some_and(|v| v == "1") {
                kinds.push((DeviceKind::Cpu, "CPU adapter"));
            }
            for (kind, name) in kinds {
                let probe = std::panic::catch_unwind(|| {
                    let d = Device::wgpu(kind.clone());
                    let t = Tensor::<1>::ones([4], &d).sum();
                    let v = t.into_data().try_into_vec::<f32>().ok()?;
                    (v == [4.0]).then_some(d)
                });
                if let Ok(Some(d)) = probe {
                    // Run reports and metrics.jsonl say which kernels ran: tuned ones are
                    // several times faster to train and slower to start.
                    let kernels = if cfg!(feature = "wgpu-tuned") {
                        "tuned kernels"
                    } else {
                        "fixed kernels"
                    };
                    return Some((
                        d,
                        format!("gpu (burn wgpu, {name}, {kernels}, {cache_note})"),
                    ));
                }
            }
            None
        })
        .clone()
}
