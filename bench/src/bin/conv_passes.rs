//! The U-Net's 3x3 convolutions on the CPU, pass by pass: voxflow's kernels
//! (`voxflow_unet::conv3x3`) next to burn Flex's own (what they replace) at the training
//! step's shapes (the seed network: 5 levels, 16 base filters; batch 8 of 128x128), each
//! layer's forward pass, input gradient and weight gradient timed alone, then the totals.
//! Keras' step as a whole is in `train_step`.
//!
//! `cargo run --release -p voxflow-bench --bin conv_passes -- [REPS]` (default 5; medians).

use voxflow_unet::burn::backend::ops::ConvTransposeOptions;
use voxflow_unet::burn::backend::Dispatch;
use voxflow_unet::burn::tensor::module::{conv2d, conv2d_weight_backward, conv_transpose2d};
use voxflow_unet::burn::tensor::ops::ConvOptions;
use voxflow_unet::burn::tensor::{Device, Distribution, Tensor};
use voxflow_unet::conv3x3::Conv3x3Backend;
use voxflow_unet::UNetConfig;

/// `(c_in, c_out, side)` of every 3x3 convolution of `config` at patch side `patch`.
fn layers(config: &UNetConfig, patch: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for level in 0..config.levels {
        let side = patch >> level;
        let c = config.filters(level);
        let below = if level == 0 {
            config.in_channels
        } else {
            config.filters(level - 1)
        };
        out.push((below, c, side));
        out.push((c, c, side));
        if level + 1 < config.levels {
            // The decoder block at this level: [skip, up] -> c, then c -> c.
            out.push((2 * c, c, side));
            out.push((c, c, side));
        }
    }
    out
}

fn ours_forward(x: &Tensor<4>, w: &Tensor<4>, b: &Tensor<1>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as Conv3x3Backend>::conv3x3(
        x.clone().into_dispatch(),
        w.clone().into_dispatch(),
        b.clone().into_dispatch(),
    ))
}

fn ours_input_grad(g: &Tensor<4>, w: &Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as Conv3x3Backend>::conv3x3_input_grad(
        g.clone().into_dispatch(),
        w.clone().into_dispatch(),
    ))
}

fn ours_weight_grad(x: &Tensor<4>, w: &Tensor<4>, g: &Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as Conv3x3Backend>::conv3x3_weight_grad(
        x.clone().into_dispatch(),
        w.clone().into_dispatch(),
        g.clone().into_dispatch(),
    ))
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let device = Device::flex();
    let batch = 8;
    println!(
        "3x3 convolutions of the seed U-Net, batch {batch} of 128x128, on burn Flex ({}; rayon threads {}); medians of {reps}, ms",
        voxflow_bench::machine(),
        rayon::current_num_threads()
    );
    println!("c_in -> c_out @ side | forward ours / burn | input grad ours / burn | weight grad ours / burn");
    let same = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let transposed = ConvTransposeOptions::new([1, 1], [1, 1], [0, 0], [1, 1], 1);
    let normal = Distribution::Normal(0.0, 1.0);
    let mut totals = [0.0f64; 6];
    for (c_in, c_out, side) in layers(&UNetConfig::seed(), 128) {
        let x = Tensor::<4>::random([batch, c_in, side, side], normal, &device);
        let w = Tensor::<4>::random([c_out, c_in, 3, 3], normal, &device);
        let b = Tensor::<1>::random([c_out], normal, &device);
        let g = Tensor::<4>::random([batch, c_out, side, side], normal, &device);
        let ms = |f: &mut dyn FnMut() -> Tensor<4>| voxflow_bench::median_secs(reps, f) * 1e3;
        let t = [
            ms(&mut || ours_forward(&x, &w, &b)),
            ms(&mut || conv2d(x.clone(), w.clone(), Some(b.clone()), same.clone())),
            ms(&mut || ours_input_grad(&g, &w)),
            ms(&mut || conv_transpose2d(g.clone(), w.clone(), None, transposed.clone())),
            ms(&mut || ours_weight_grad(&x, &w, &g)),
            ms(&mut || conv2d_weight_backward(x.clone(), w.clone(), g.clone(), same.clone())),
        ];
        for (sum, v) in totals.iter_mut().zip(t) {
            *sum += v;
        }
        println!(
            "{c_in:>4} -> {c_out:<4} @ {side:>3} | {:7.1} / {:7.1} | {:7.1} / {:7.1} | {:7.1} / {:7.1}",
            t[0], t[1], t[2], t[3], t[4], t[5]
        );
    }
    let [f, bf, i, bi, w, bw] = totals;
    println!("total                | {f:7.1} / {bf:7.1} | {i:7.1} / {bi:7.1} | {w:7.1} / {bw:7.1}");
    println!(
        "ratio burn / ours: forward {:.2}, input grad {:.2}, weight grad {:.2}, all {:.2} ({:.0} vs {:.0} ms)",
        bf / f,
        bi / i,
        bw / w,
        (bf + bi + bw) / (f + i + w),
        f + i + w,
        bf + bi + bw
    );
}
