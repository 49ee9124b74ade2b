//! The U-Net as burn modules: [`ConvBlock`], [`Down`], [`Up`] and [`UNet`], each built
//! from a config so the weights file's tensor names (`downs.1.block.conv1.weight`)
//! follow the architecture and a mismatch is caught when loading.

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::config::{UNetConfig, Upsampling};
use crate::conv3x3::conv2d_forward;

/// Two `kernel` x `kernel` convolutions ("same" padding), each followed by optional batch
/// norm and ReLU: one level of the U-Net.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// First convolution, `in -> out` channels.
    pub conv1: Conv2d,
    /// Batch norm after `conv1` (absent without batch norm).
    pub norm1: Option<BatchNorm>,
    /// Second convolution, `out -> out` channels.
    pub conv2: Conv2d,
    /// Batch norm after `conv2`.
    pub norm2: Option<BatchNorm>,
}

/// Builds a [`ConvBlock`].
#[derive(Debug, Clone)]
pub struct ConvBlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (both convolutions).
    pub out_channels: usize,
    /// Kernel size (odd).
    pub kernel: usize,
    /// Batch norm after each convolution.
    pub batch_norm: bool,
}

impl ConvBlockConfig {
    /// Initialise with He (Kaiming uniform, gain sqrt 2) weights on `device`: the
    /// initialisation for ReLU networks, which keeps the activations' variance from level
    /// to level (burn's default gain 1/sqrt 3 shrinks them until a random network's output
    /// is its bias alone).
    pub fn init(&self, device: &Device) -> ConvBlock {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [self.kernel, self.kernel])
                .with_padding(PaddingConfig2d::Same)
                .with_initializer(he())
                .init(device)
        };
        let norm = || {
            self.batch_norm
                .then(|| BatchNormConfig::new(self.out_channels).init(device))
        };
        ConvBlock {
            conv1: conv(self.in_channels, self.out_channels),
            norm1: norm(),
            conv2: conv(self.out_channels, self.out_channels),
            norm2: norm(),
        }
    }
}

impl ConvBlock {
    /// # Shapes
    ///
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, out_channels, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(conv_then_norm(&self.conv1, self.norm1.as_ref(), x));
        relu(conv_then_norm(&self.conv2, self.norm2.as_ref(), x))
    }
}

/// `norm(conv(x))`. Without autodiff (inference, validation) batch norm is an affine map
/// per channel with its running statistics, so it is folded into the convolution's
/// weights and bias (`w * s`, `(b - mean) * s + beta` with `s = gamma / sqrt(var + eps)`):
/// burn applies batch norm as four passes over the activation (subtract, divide,
/// multiply, add); folded, a 512x512 slice's CPU inference takes ~7 % less (medians of
/// four alternating runs on the 2-core EPYC: 270 -> 253 ms).
fn conv_then_norm(conv: &Conv2d, norm: Option<&BatchNorm>, x: Tensor<4>) -> Tensor<4> {
    let Some(norm) = norm else {
        return conv2d_forward(conv, x);
    };
    if x.device().is_autodiff() {
        return norm.forward(conv2d_forward(conv, x));
    }
    let device = x.device();
    let [c_out, ..] = conv.weight.dims();
    let var = norm.running_var.value().to_device(&device);
    let mean = norm.running_mean.value().to_device(&device);
    let scale = norm.gamma.val() / (var + norm.epsilon).sqrt();
    let weight = conv.weight.val() * scale.clone().reshape([c_out, 1, 1, 1]);
    let bias = match &conv.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([c_out], &device),
    };
    let folded = Conv2d {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor((bias - mean) * scale + norm.beta.val())),
        ..conv.clone()
    };
    conv2d_forward(&folded, x)
}

/// He initialisation (Kaiming uniform for ReLU).
fn he() -> Initializer {
    Initializer::KaimingUniform {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: false,
    }
}

/// Encoder step: 2x2 max pool, then a [`ConvBlock`] doubling the channels.
#[derive(Module, Debug)]
pub struct Down {
    /// 2x2 max pooling, stride 2.
    pub pool: MaxPool2d,
    /// Block at the lower resolution.
    pub block: ConvBlock,
}

impl Down {
    /// Pool then block.
    pub fn new(block: ConvBlockConfig, device: &Device) -> Self {
        Down {
            pool: MaxPool2dConfig::new([2, 2]).init(),
            block: block.init(device),
        }
    }

    /// # Shapes
    ///
    /// - input: `[batch, c, h, w]` with even `h`, `w`
    /// - output: `[batch, 2c, h/2, w/2]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.block.forward(self.pool.forward(x))
    }
}

/// Decoder step: 2x upsampling to the skip's channels, concatenation `[skip, up]`, then a
/// [`ConvBlock`].
#[derive(Module, Debug)]
pub struct Up {
    /// 2x2 transposed convolution, stride 2, `2c -> c` channels.
    pub up: ConvTranspose2d,
    /// Block on `[skip, up]` (`2c -> c` channels).
    pub block: ConvBlock,
}

impl Up {
    /// Upsampling from `in_channels` (the level below) to `out_channels` (the skip's).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        upsampling: Upsampling,
        kernel: usize,
        batch_norm: bool,
        device: &Device,
    ) -> Self {
        let up = match upsampling {
            Upsampling::Transposed => {
                ConvTranspose2dConfig::new([in_channels, out_channels], [2, 2])
                    .with_stride([2, 2])
                    .with_initializer(he())
                    .init(device)
            }
        };
        Up {
            up,
            block: ConvBlockConfig {
                in_channels: 2 * out_channels,
                out_channels,
                kernel,
                batch_norm,
            }
            .init(device),
        }
    }

    /// # Shapes
    ///
    /// - x: `[batch, 2c, h, w]` (from the level below)
    /// - skip: `[batch, c, 2h, 2w]`
    /// - output: `[batch, c, 2h, 2w]`
    pub fn forward(&self, x: Tensor<4>, skip: Tensor<4>) -> Tensor<4> {
        let up = self.up.forward(x);
        self.block.forward(Tensor::cat(vec![skip, up], 1))
    }
}

/// The 2D U-Net.
#[derive(Module, Debug)]
pub struct UNet {
    /// Block at full resolution.
    pub input: ConvBlock,
    /// Encoder steps, `levels - 1` of them (the last ends at the bottleneck).
    pub downs: Vec<Down>,
    /// Decoder steps, `levels - 1`, from the bottleneck up.
    pub ups: Vec<Up>,
    /// 1x1 convolution to class logits.
    pub head: Conv2d,
}

/// Serialises weight initialisation: burn Flex draws random weights from one process-wide
/// generator, lazily on first use, so two networks initialised at once (test threads)
/// would interleave their draws and a seed would not give reproducible weights.
static INIT: Mutex<()> = Mutex::new(());

/// Touches every float parameter, which runs burn's lazy initialisers in a fixed order.
struct Materialise;

impl ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

impl UNet {
    /// A network with random weights (burn's default initialisers: Kaiming uniform
    /// convolutions, unit batch norms) drawn from `seed`: the same seed gives the same
    /// weights, also with other threads initialising networks at the same time.
    /// `config` must have passed [`UNetConfig::check`].
    pub fn seeded(config: &UNetConfig, device: &Device, seed: u64) -> Self {
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(seed);
        let net = Self::new(config, device);
        net.visit(&mut Materialise);
        net
    }

    /// A network whose parameters are initialised lazily (loading weights into it skips
    /// the random initialisation). For random weights use [`seeded`](Self::seeded).
    /// `config` must have passed [`UNetConfig::check`].
    pub fn new(config: &UNetConfig, device: &Device) -> Self {
        let k = config.kernel;
        let bn = config.batch_norm;
        let input = ConvBlockConfig {
            in_channels: config.in_channels,
            out_channels: config.filters(0),
            kernel: k,
            batch_norm: bn,
        }
        .init(device);
        let downs = (1..config.levels)
            .map(|l| {
                Down::new(
                    ConvBlockConfig {
                        in_channels: config.filters(l - 1),
                        out_channels: config.filters(l),
                        kernel: k,
                        batch_norm: bn,
                    },
                    device,
                )
            })
            .collect();
        let ups = (0..config.levels.saturating_sub(1))
            .rev()
            .map(|l| {
                Up::new(
                    config.filters(l + 1),
                    config.filters(l),
                    config.upsampling,
                    k,
                    bn,
                    device,
                )
            })
            .collect();
        let head = Conv2dConfig::new([config.filters(0), config.classes], [1, 1]).init(device);
        UNet {
            input,
            downs,
            ups,
            head,
        }
    }

    /// Class logits.
    ///
    /// # Shapes
    ///
    /// - input: `[batch, in_channels, h, w]`, `h` and `w` multiples of `2^(levels-1)`
    /// - output: `[batch, classes, h, w]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.input.forward(x);
        let mut skips = Vec::with_capacity(self.downs.len());
        for down in &self.downs {
            skips.push(x.clone());
            x = down.forward(x);
        }
        for up in &self.ups {
            let skip = skips.pop().expect("one skip per decoder step");
            x = up.forward(x, skip);
        }
        self.head.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::RunningState;
    use burn::tensor::Distribution;

    use crate::testing::assert_close_data;

    /// At inference the folded batch norm gives what burn's batch norm after the
    /// convolution gives, with our 3x3 kernels and with burn's (5x5).
    #[test]
    fn folded_batch_norm_matches_burn_batch_norm() {
        for kernel in [3, 5] {
            let device = Device::flex();
            device.seed(5);
            let mut block = ConvBlockConfig {
                in_channels: 2,
                out_channels: 4,
                kernel,
                batch_norm: true,
            }
            .init(&device);
            let normal = Distribution::Normal(0.0, 1.0);
            for norm in [&mut block.norm1, &mut block.norm2].into_iter().flatten() {
                norm.running_mean = RunningState::new(Tensor::random([4], normal, &device));
                norm.running_var = RunningState::new(Tensor::random(
                    [4],
                    Distribution::Uniform(0.5, 2.0),
                    &device,
                ));
                norm.gamma = Param::from_tensor(Tensor::random([4], normal, &device));
                norm.beta = Param::from_tensor(Tensor::random([4], normal, &device));
            }
            let x = Tensor::<4>::random([2, 2, 12, 10], normal, &device);
            let (n1, n2) = (block.norm1.as_ref().unwrap(), block.norm2.as_ref().unwrap());
            let y = relu(n1.forward(conv2d_forward(&block.conv1, x.clone())));
            let want = relu(n2.forward(conv2d_forward(&block.conv2, y)));
            assert_close_data(block.forward(x).into_data(), want.into_data());
        }
    }
}
