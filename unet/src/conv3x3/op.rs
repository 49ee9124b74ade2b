//! The 3x3 convolution as a burn backend extension: Flex runs [`kernels`], autodiff gets a
//! handwritten backward pass calling the backend's kernels for the input, weight and bias
//! gradients.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::ops::ConvTransposeOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    backend_extension, Autodiff, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata,
};
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType, Shape, Tensor};
use burn_flex::{FlexTensor, Layout};

use super::kernels::{self, Geometry};

/// A 3x3 convolution, stride 1, padding 1, one group, with bias.
///
/// The default bodies compose burn's own convolution ops, so a backend without a kernel
/// of ours still computes the right thing; Flex overrides all four.
#[backend_extension(Flex, Autodiff)]
pub trait Conv3x3Backend: Backend {
    /// `x` `[batch, c_in, h, w]`, `weight` `[c_out, c_in, 3, 3]`, `bias` `[c_out]`.
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), same_3x3())
    }

    /// Gradient of `x` from the output's gradient `grad`.
    fn conv3x3_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv_transpose2d(
            grad,
            weight,
            None,
            ConvTransposeOptions::new([1, 1], [1, 1], [0, 0], [1, 1], 1),
        )
    }

    /// Gradient of `weight` from the input `x` and the output's gradient `grad`.
    fn conv3x3_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, grad, same_3x3())
    }

    /// Gradient of `bias` from the output's gradient `grad` (`x` for its batch size).
    fn conv3x3_bias_grad(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::conv2d_bias_backward(x, bias, grad)
    }
}

fn same_3x3() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

/// Contiguous `f32` values of a Flex tensor and its dims.
fn flex_f32(t: &FlexTensor) -> (FlexTensor, Vec<usize>) {
    let t = t.to_contiguous();
    let dims = t.shape().to_vec();
    (t, dims)
}

fn flex_output<const D: usize>(values: Vec<f32>, dims: [usize; D]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::new(dims)),
        DType::F32,
    )
}

impl Conv3x3Backend for Flex {
    fn conv3x3(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let (x, xd) = flex_f32(&x);
        let (weight, wd) = flex_f32(&weight);
        let (bias, _) = flex_f32(&bias);
        let g = Geometry::of_nchw(&xd);
        let out = kernels::forward(
            x.storage(),
            weight.storage(),
            Some(bias.storage()),
            xd[1],
            wd[0],
            g,
        );
        flex_output(out, [xd[0], wd[0], xd[2], xd[3]])
    }

    fn conv3x3_input_grad(grad: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let (grad, gd) = flex_f32(&grad);
        let (weight, wd) = flex_f32(&weight);
        let g = Geometry::of_nchw(&gd);
        let out = kernels::input_grad(grad.storage(), weight.storage(), wd[1], wd[0], g);
        flex_output(out, [gd[0], wd[1], gd[2], gd[3]])
    }

    fn conv3x3_weight_grad(x: FlexTensor, _weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (x, xd) = flex_f32(&x);
        let (grad, gd) = flex_f32(&grad);
        let g = Geometry::of_nchw(&xd);
        let out = kernels::weight_grad(x.storage(), grad.storage(), xd[1], gd[1], g);
        flex_output(out, [gd[1], xd[1], 3, 3])
    }

    fn conv3x3_bias_grad(_x: FlexTensor, _bias: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (grad, gd) = flex_f32(&grad);
        let out = kernels::bias_grad(grad.storage(), gd[1], Geometry::of_nchw(&gd));
        flex_output(out, [gd[1]])
    }
}

impl<B: Conv3x3Backend, C: CheckpointStrategy> Conv3x3Backend for Autodiff<B, C> {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Conv3x3Backward;

        impl<B: Conv3x3Backend> Backward<B, 3> for Conv3x3Backward {
            type State = (NodeId, NodeId, NodeId);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight, node_bias] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, weight_state, bias_state) = ops.state;
                let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                let weight =
                    checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
                let bias = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(bias_state);
                if let Some(node) = node_x {
                    let g = B::conv3x3_input_grad(grad.clone(), weight.clone());
                    grads.register::<B>(node.id, g);
                }
                if let Some(node) = node_weight {
                    let g = B::conv3x3_weight_grad(x.clone(), weight, grad.clone());
                    grads.register::<B>(node.id, g);
                }
                if let Some(node) = node_bias {
                    grads.register::<B>(node.id, B::conv3x3_bias_grad(x, bias, grad));
                }
            }
        }

        match Conv3x3Backward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&weight),
                    prep.checkpoint(&bias),
                );
                let out = B::conv3x3(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                );
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv3x3(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }
}

/// `conv.forward(x)`, through [`Conv3x3Backend`] where this crate has kernels for it (see
/// [`runs_own_kernels`]); anything else runs burn's `Conv2d`.
pub fn conv2d_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match &conv.bias {
        Some(bias) if runs_own_kernels(conv, &x) => {
            Tensor::from_dispatch(<Dispatch as Conv3x3Backend>::conv3x3(
                x.into_dispatch(),
                conv.weight.val().into_dispatch(),
                bias.val().into_dispatch(),
            ))
        }
        _ => conv.forward(x),
    }
}

/// Whether [`conv2d_forward`] runs this crate's kernels for `conv` on `x`: a 3x3, stride 1,
/// "same"-padded convolution with bias, on f32 input and weights on the Flex device (with or
/// without autodiff).
pub fn runs_own_kernels(conv: &Conv2d, x: &Tensor<4>) -> bool {
    conv.bias.is_some()
        && conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && matches!(
            conv.padding,
            PaddingConfig2d::Same | PaddingConfig2d::Explicit(1, 1, 1, 1)
        )
        && x.dtype() == DType::F32
        && conv.weight.val().dtype() == DType::F32
        && matches!(
            x.device().without_autodiff().as_dispatch(),
            DispatchDevice::Flex(_)
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    use crate::testing::assert_close_data as close;

    /// Our kernels and their backward pass against burn's `Conv2d` on the same weights:
    /// same output, same gradients for input, weight and bias.
    #[test]
    fn flex_kernels_agree_with_burn_conv2d_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let conv = Conv2dConfig::new([3, 5], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device);
        let x = Tensor::<4>::random([2, 3, 9, 13], Distribution::Normal(0.0, 1.0), &device);
        let probe = Tensor::<4>::random([2, 5, 9, 13], Distribution::Normal(0.0, 1.0), &device);

        let run = |ours: bool| {
            let x = Tensor::from_data(x.to_data(), &device).require_grad();
            let conv = Conv2d {
                weight: Param::from_tensor(conv.weight.val().detach()),
                bias: conv
                    .bias
                    .as_ref()
                    .map(|b| Param::from_tensor(b.val().detach())),
                ..conv.clone()
            };
            assert!(runs_own_kernels(&conv, &x));
            let y = if ours {
                conv2d_forward(&conv, x.clone())
            } else {
                conv.forward(x.clone())
            };
            let grads = (y.clone() * probe.clone()).sum().backward();
            let gx = x.grad(&grads).unwrap().into_data();
            let gw = conv.weight.val().grad(&grads).unwrap().into_data();
            let bias = conv.bias.as_ref().unwrap().val();
            let gb = bias.grad(&grads).unwrap().into_data();
            (y.into_data(), gx, gw, gb)
        };
        let (ours, burns) = (run(true), run(false));
        close(ours.0, burns.0);
        close(ours.1, burns.1);
        close(ours.2, burns.2);
        close(ours.3, burns.3);
    }

    /// Without autodiff the Flex kernels run too (inference), with the same result.
    #[test]
    fn inference_on_flex_agrees_with_burn_conv2d() {
        let device = Device::flex();
        device.seed(3);
        let conv = Conv2dConfig::new([4, 2], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device);
        let x = Tensor::<4>::random([3, 4, 16, 8], Distribution::Normal(0.0, 1.0), &device);
        assert!(runs_own_kernels(&conv, &x));
        close(
            conv2d_forward(&conv, x.clone()).into_data(),
            conv.forward(x).into_data(),
        );
    }

    /// A 1x1 convolution (the U-Net's head) is not ours: burn runs it.
    #[test]
    fn other_convolutions_stay_with_burn() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([4, 2], [1, 1]).init(&device);
        let x = Tensor::<4>::zeros([1, 4, 8, 8], &device);
        assert!(!runs_own_kernels(&conv, &x));
        let strided = Conv2dConfig::new([4, 2], [3, 3])
            .with_stride([2, 2])
            .init(&device);
        assert!(!runs_own_kernels(&strided, &x));
    }

    /// The trait's default bodies (burn's own ops, what autodiff devices and any other
    /// backend would run) against the Flex kernels, for the three gradients.
    #[test]
    fn default_gradient_bodies_agree_with_the_flex_kernels() {
        let flex = Device::flex();
        flex.seed(11);
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<4>::random([2, 3, 7, 10], normal, &flex);
        let w = Tensor::<4>::random([4, 3, 3, 3], normal, &flex);
        let g = Tensor::<4>::random([2, 4, 7, 10], normal, &flex);
        let grads = |device: &Device| {
            let on = |t: &Tensor<4>| Tensor::<4>::from_data(t.to_data(), device).into_dispatch();
            let input = <Dispatch as Conv3x3Backend>::conv3x3_input_grad(on(&g), on(&w));
            let weight = <Dispatch as Conv3x3Backend>::conv3x3_weight_grad(on(&x), on(&w), on(&g));
            let b = Tensor::<1>::zeros([4], device).into_dispatch();
            let bias = <Dispatch as Conv3x3Backend>::conv3x3_bias_grad(on(&x), b, on(&g));
            (
                Tensor::<4>::from_dispatch(input).into_data(),
                Tensor::<4>::from_dispatch(weight).into_data(),
                Tensor::<1>::from_dispatch(bias).into_data(),
            )
        };
        let (ours, defaults) = (grads(&flex), grads(&flex.clone().autodiff()));
        close(ours.0, defaults.0);
        close(ours.1, defaults.1);
        close(ours.2, defaults.2);
    }
}
