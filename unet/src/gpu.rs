//! Finding a GPU through wgpu (feature `wgpu`).

use std::sync::OnceLock;

use burn::tensor::{Device, DeviceKind, Tensor};

/// The first discrete (else integrated) GPU wgpu can run a tensor on, with a description,
/// or `None`. Probed once per process: wgpu panics when it finds no adapter, so the probe
/// runs under `catch_unwind`; CPU adapters (llvmpipe) are not considered GPUs.
pub fn wgpu_device() -> Option<(Device, String)> {
    static FOUND: OnceLock<Option<(Device, String)>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            for (kind, name) in [
                (DeviceKind::DiscreteGpu(0), "discrete GPU 0"),
                (DeviceKind::IntegratedGpu(0), "integrated GPU 0"),
            ] {
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
                        ", tuned kernels"
                    } else {
                        ""
                    };
                    return Some((d, format!("gpu (burn wgpu, {name}{kernels})")));
                }
            }
            None
        })
        .clone()
}
