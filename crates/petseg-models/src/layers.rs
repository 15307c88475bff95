//! The building blocks shared by both networks, each a PyTorch layer with PyTorch's
//! parameter names, shapes and default initialisation (given to the `VarBuilder` as
//! `Init` hints, so that [`crate::init`] can draw them from a seeded generator).

use std::sync::{Arc, Mutex};

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use petseg_ops3d::{Conv3dConfig, ConvTranspose3dConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// PyTorch's default `eps` for BatchNorm, GroupNorm and InstanceNorm.
pub(crate) const NORM_EPS: f64 = 1e-5;

/// `kaiming_uniform_(a=√5)` and the bias rule of `_ConvNd.reset_parameters`: both are
/// `U(−1/√fan_in, 1/√fan_in)`.
fn fan_in_uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A parameter in the dtype of the activation `x` it meets (autocast, as PyTorch's
/// `torch.autocast` does for convolutions): the master parameter stays an f32 `Var`, the
/// cast is recorded in the graph, so its gradient flows back into the f32 variable. For an
/// f32 activation this is the parameter itself (`to_dtype` to the same dtype is a clone of
/// the same tensor), so the f32 path is unchanged.
pub(crate) fn autocast(param: &Tensor, x: &Tensor) -> Result<Tensor> {
    param.to_dtype(x.dtype())
}

/// [`autocast`] of an optional parameter (a bias).
fn autocast_opt(param: Option<&Tensor>, x: &Tensor) -> Result<Option<Tensor>> {
    param.map(|p| autocast(p, x)).transpose()
}

/// Geometry of a cubic-kernel convolution as MONAI builds it (padding `(k−1)/2`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// A stride-1 convolution with MONAI's "same" padding.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, bias: bool) -> Self {
        ConvSpec {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            bias,
        }
    }

    /// The same convolution with another stride.
    pub fn stride(self, stride: usize) -> Self {
        ConvSpec { stride, ..self }
    }

    fn padding(&self) -> usize {
        (self.kernel - 1) / 2
    }
}

/// `torch.nn.Conv3d`: `weight [O, C, k, k, k]`, optional `bias [O]`.
#[derive(Debug)]
pub(crate) struct Conv3d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv3dConfig,
}

impl Conv3d {
    pub fn new(spec: ConvSpec, vb: VarBuilder) -> Result<Self> {
        let k = spec.kernel;
        let init = fan_in_uniform(spec.in_channels * k * k * k);
        let weight = vb.get_with_hints(
            (spec.out_channels, spec.in_channels, k, k, k),
            "weight",
            init,
        )?;
        let bias = if spec.bias {
            Some(vb.get_with_hints(spec.out_channels, "bias", init)?)
        } else {
            None
        };
        let cfg = Conv3dConfig {
            stride: [spec.stride; 3],
            padding: [spec.padding(); 3],
            dilation: [1; 3],
            groups: 1,
        };
        Ok(Conv3d { weight, bias, cfg })
    }

    /// The convolution in the dtype of `x` (weight and bias autocast to it).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = autocast_opt(self.bias.as_ref(), x)?;
        petseg_ops3d::conv3d(x, &autocast(&self.weight, x)?, bias.as_ref(), &self.cfg)
    }
}

/// `torch.nn.ConvTranspose3d`: `weight [C, O, k, k, k]`, optional `bias [O]`.
#[derive(Debug)]
pub(crate) struct ConvTranspose3d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: ConvTranspose3dConfig,
}

impl ConvTranspose3d {
    /// `padding` and `output_padding` as PyTorch takes them.
    pub fn new(
        spec: ConvSpec,
        padding: usize,
        output_padding: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let k = spec.kernel;
        // PyTorch's fan-in is computed from weight dim 1, i.e. the *output* channels here.
        let init = fan_in_uniform(spec.out_channels * k * k * k);
        let weight = vb.get_with_hints(
            (spec.in_channels, spec.out_channels, k, k, k),
            "weight",
            init,
        )?;
        let bias = if spec.bias {
            Some(vb.get_with_hints(spec.out_channels, "bias", init)?)
        } else {
            None
        };
        let cfg = ConvTranspose3dConfig {
            stride: [spec.stride; 3],
            padding: [padding; 3],
            output_padding: [output_padding; 3],
            dilation: [1; 3],
        };
        Ok(ConvTranspose3d { weight, bias, cfg })
    }

    /// The transposed convolution in the dtype of `x` (weight and bias autocast to it).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = autocast_opt(self.bias.as_ref(), x)?;
        petseg_ops3d::conv_transpose3d(x, &autocast(&self.weight, x)?, bias.as_ref(), &self.cfg)
    }
}

/// `torch.nn.GroupNorm(groups, C)` with affine `weight`/`bias` (init 1 and 0).
///
/// Under autocast (a bf16/f16 activation) the parameters are not cast: `petseg_ops3d`
/// normalises in f32 whatever the activation dtype and casts only the result back, as
/// PyTorch's autocast runs `group_norm` in f32. The same holds for [`BatchNorm3d`] in
/// train mode and for [`InstanceNormPRelu`].
#[derive(Debug)]
pub(crate) struct GroupNorm {
    groups: usize,
    weight: Tensor,
    bias: Tensor,
}

impl GroupNorm {
    pub fn new(groups: usize, channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        Ok(GroupNorm {
            groups,
            weight,
            bias,
        })
    }

    /// `relu(group_norm(x))` as one fused op (MONAI's norm → ReLU pairs).
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        petseg_ops3d::group_norm_relu(
            x,
            self.groups,
            Some(&self.weight),
            Some(&self.bias),
            NORM_EPS,
        )
    }
}

/// `torch.nn.BatchNorm3d(C)`: momentum 0.1, eps 1e-5, affine `weight`/`bias`, running
/// statistics as `running_mean`/`running_var` variables (init 0 and 1).
///
/// Train mode normalises with the batch statistics over `(N, D, H, W)` and updates the
/// running statistics with the unbiased batch variance, as PyTorch does. The
/// normalisation itself runs as `petseg_ops3d::group_norm` with one group per channel on
/// `[1, C, N·D, H, W]` — the same arithmetic as batch norm, with a fused kernel and
/// backward (candle-nn's composed `BatchNorm` costs several full-size temporaries and
/// its backward is about 2.5× slower). Eval mode is one fused scale-and-shift
/// (`crate::affine`), with the following ReLU fused where there is one; its scale and
/// shift are folded in f32 and autocast to the activation's dtype. The running
/// statistics are computed in f32 and stay f32 whatever the activation dtype.
/// PyTorch's `num_batches_tracked` is not kept: it only matters when `momentum=None`,
/// which MONAI never uses (see [`crate::weights`]).
#[derive(Debug)]
pub(crate) struct BatchNorm3d {
    running_mean: Var,
    running_var: Var,
    weight: Tensor,
    bias: Tensor,
}

impl BatchNorm3d {
    const MOMENTUM: f64 = 0.1;

    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        Ok(BatchNorm3d {
            // `from_tensor` shares the variable of a VarMap-backed builder, so updates of
            // the running statistics land in the VarMap (and in saved checkpoints).
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, train, false)
    }

    /// `relu(batch_norm(x))`, fused into the normalisation in train mode.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, train, true)
    }

    fn forward_act(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let (n, c, d, h, w) = x.dims5()?;
        if c != self.weight.dim(0)? {
            candle_core::bail!(
                "batch norm: input has {c} channels (shape {:?}), expected {}",
                x.dims(),
                self.weight.dim(0)?
            );
        }
        if !train {
            let rm = self.running_mean.as_detached_tensor();
            let rv = self.running_var.as_detached_tensor();
            let scale = (&self.weight / (rv + NORM_EPS)?.sqrt()?)?;
            let shift = (&self.bias - (rm * &scale)?)?;
            // Folded in f32 from the f32 statistics, then autocast to the activation.
            return crate::affine::channel_affine(
                x,
                &autocast(&scale, x)?,
                &autocast(&shift, x)?,
                relu,
            );
        }
        let count = n * d * h * w;
        if count < 2 {
            candle_core::bail!("batch norm: expected more than 1 value per channel when training, got input shape {:?}", x.dims());
        }
        // Channels first, the batch folded into depth: [1, C, N·D, H, W].
        let folded = if n == 1 {
            x.clone()
        } else {
            x.transpose(0, 1)?
                .contiguous()?
                .reshape((1, c, n * d, h, w))?
        };
        self.update_running_stats(&folded.detach().reshape((c, count))?)?;
        let norm = if relu {
            petseg_ops3d::group_norm_relu
        } else {
            petseg_ops3d::group_norm
        };
        let y = norm(&folded, c, Some(&self.weight), Some(&self.bias), NORM_EPS)?;
        if n == 1 {
            Ok(y)
        } else {
            y.reshape((c, n, d, h, w))?.transpose(0, 1)?.contiguous()
        }
    }

    /// `running ← (1 − m)·running + m·batch` with the unbiased batch variance.
    fn update_running_stats(&self, x: &Tensor) -> Result<()> {
        let m = Self::MOMENTUM;
        let (mean, var) = crate::bn_stats::channel_mean_var(x)?;
        let rm = self.running_mean.as_detached_tensor();
        let rv = self.running_var.as_detached_tensor();
        let new_mean = ((&rm * (1.0 - m))? + (mean.to_dtype(rm.dtype())? * m)?)?;
        let new_var = ((&rv * (1.0 - m))? + (var.to_dtype(rv.dtype())? * m)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)
    }
}

/// `torch.nn.InstanceNorm3d(C)` with MONAI's defaults (no affine parameters, no running
/// statistics: it normalises with the instance's own statistics in both modes) followed
/// by `torch.nn.PReLU()` with one shared slope (`weight [1]`, init 0.25), as one fused
/// op (`petseg_ops3d::instance_norm_prelu`). The slope's parameter path is the PReLU's.
#[derive(Debug)]
pub(crate) struct InstanceNormPRelu {
    weight: Tensor,
}

impl InstanceNormPRelu {
    /// `vb` is the PReLU's prefix (the instance norm has no parameters).
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Ok(InstanceNormPRelu {
            weight: vb.get_with_hints(1, "weight", Init::Const(0.25))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        petseg_ops3d::instance_norm_prelu(x, &self.weight, NORM_EPS)
    }
}

/// The generator shared by all dropout layers of one network, so that a training run's
/// dropout masks follow from its seed (candle's own RNG cannot be seeded on the CPU).
#[derive(Clone, Debug)]
pub(crate) struct DropoutRng(Arc<Mutex<ChaCha8Rng>>);

impl DropoutRng {
    /// Dropout masks use stream 1 of the ChaCha8 generator seeded with `seed`, so that
    /// they never repeat the numbers drawn for the weights (stream 0).
    pub fn new(seed: u64) -> Self {
        DropoutRng(Arc::new(Mutex::new(Self::generator(seed))))
    }

    pub fn reseed(&self, seed: u64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Self::generator(seed);
    }

    fn generator(seed: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(1);
        rng
    }

    /// `len` mask values: 0 with probability `p`, else `1/(1−p)`.
    fn mask(&self, len: usize, p: f64) -> Vec<f32> {
        let keep = (1.0 / (1.0 - p)) as f32;
        let p = p as f32;
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (0..len)
            .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
            .collect()
    }
}

/// Which elements one dropout draw removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropoutKind {
    /// `nn.Dropout`: every element independently (MONAI's ADN, `dropout_dim=1`).
    Element,
    /// `nn.Dropout3d`: whole `(n, c)` channels (SegResNet's dropout after `convInit`).
    Channel,
}

/// Inverted dropout: identity in eval mode or when `p = 0`.
#[derive(Clone, Debug)]
pub(crate) struct Dropout {
    p: f64,
    kind: DropoutKind,
    rng: DropoutRng,
}

impl Dropout {
    pub fn new(p: f64, kind: DropoutKind, rng: DropoutRng) -> Self {
        Dropout { p, kind, rng }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        let dims = x.dims();
        let mask_shape: Vec<usize> = match self.kind {
            DropoutKind::Element => dims.to_vec(),
            DropoutKind::Channel => dims
                .iter()
                .enumerate()
                .map(|(i, &d)| if i < 2 { d } else { 1 })
                .collect(),
        };
        let len = mask_shape.iter().product();
        let mask = Tensor::from_vec(self.rng.mask(len, self.p), mask_shape, x.device())?
            .to_dtype(x.dtype())?;
        x.broadcast_mul(&mask)
    }
}

/// Checks the network input: rank 5, `channels` channels, float, spatial sizes divisible
/// by `divisor` (otherwise the skip connections would not line up).
pub(crate) fn check_input(model: &str, x: &Tensor, channels: usize, divisor: usize) -> Result<()> {
    let dims = x.dims();
    if dims.len() != 5 {
        candle_core::bail!(
            "{model}: input must be [N, C, D, H, W], got shape {:?}",
            dims
        );
    }
    if dims[1] != channels {
        candle_core::bail!(
            "{model}: input has {} channels (shape {dims:?}), the network expects {channels}",
            dims[1]
        );
    }
    if let Some(a) = (2..5).find(|&a| dims[a] == 0 || !dims[a].is_multiple_of(divisor)) {
        candle_core::bail!(
            "{model}: spatial size {} along dim {a} (shape {dims:?}) must be a positive multiple of {divisor}",
            dims[a]
        );
    }
    if !matches!(
        x.dtype(),
        DType::F32 | DType::F64 | DType::F16 | DType::BF16
    ) {
        candle_core::bail!(
            "{model}: input must be a float tensor, got {}",
            x.dtype().as_str()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::{ModuleT, VarMap};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Our fused BatchNorm3d against candle-nn's composed `BatchNorm` (an independent
    /// implementation of PyTorch's formulas): batch of 2, train and eval, output, input and
    /// parameter gradients, running statistics.
    #[test]
    fn batch_norm_matches_candle_nn_reference() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let ours = BatchNorm3d::new(3, vb.pp("bn")).unwrap();
        let gamma = Var::from_tensor(&Tensor::new(&[0.5f32, 1.5, -2.0], &dev).unwrap()).unwrap();
        let beta = Var::from_tensor(&Tensor::new(&[0.1f32, -0.3, 0.7], &dev).unwrap()).unwrap();
        {
            let data = varmap.data().lock().unwrap();
            data["bn.weight"].set(gamma.as_tensor()).unwrap();
            data["bn.bias"].set(beta.as_tensor()).unwrap();
        }
        let reference = candle_nn::BatchNorm::new(
            3,
            Tensor::zeros(3, DType::F32, &dev).unwrap(),
            Tensor::ones(3, DType::F32, &dev).unwrap(),
            gamma.as_tensor().clone(),
            beta.as_tensor().clone(),
            NORM_EPS,
        )
        .unwrap();
        let x = Var::from_tensor(
            &(Tensor::randn(0f32, 2.0, (2, 3, 4, 5, 6), &dev).unwrap() + 1.0).unwrap(),
        )
        .unwrap();
        let probe = Tensor::randn(0f32, 1.0, (2, 3, 4, 5, 6), &dev).unwrap();
        for step in 0..2 {
            let y_ours = ours.forward_t(&x, true).unwrap();
            let y_ref = reference.forward_t(&x, true).unwrap();
            assert!(
                max_diff(&y_ours, &y_ref) < 1e-5,
                "train output, step {step}"
            );
            let g_ours = (&y_ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g_ref = (&y_ref * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let w = varmap.data().lock().unwrap()["bn.weight"].clone();
            assert!(
                max_diff(g_ours.get(&x).unwrap(), g_ref.get(&x).unwrap()) < 1e-4,
                "input gradient"
            );
            assert!(
                max_diff(g_ours.get(&w).unwrap(), g_ref.get(&gamma).unwrap()) < 1e-4,
                "weight gradient"
            );
            let data = varmap.data().lock().unwrap();
            assert!(
                max_diff(
                    data["bn.running_mean"].as_tensor(),
                    reference.running_mean()
                ) < 1e-6
            );
            assert!(max_diff(data["bn.running_var"].as_tensor(), reference.running_var()) < 1e-6);
        }
        let y_ours = ours.forward_t(&x, false).unwrap();
        let y_ref = reference.forward_t(&x, false).unwrap();
        assert!(max_diff(&y_ours, &y_ref) < 1e-5, "eval output");
        let single = Tensor::zeros((1, 3, 1, 1, 1), DType::F32, &dev).unwrap();
        assert!(
            ours.forward_t(&single, true).is_err(),
            "one value per channel cannot train"
        );
    }

    #[test]
    fn instance_norm_prelu_is_pytorchs() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let layer =
            InstanceNormPRelu::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
        let v = [-2f64, -0.5, 0.0, 3.0];
        let x = Tensor::new(&v.map(|v| v as f32), &dev)
            .unwrap()
            .reshape((1, 1, 1, 2, 2))
            .unwrap();
        let y = layer
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mean = v.iter().sum::<f64>() / 4.0;
        let var = v.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0;
        for (&y, &v) in y.iter().zip(&v) {
            let z = (v - mean) / (var + NORM_EPS).sqrt();
            let expected = if z > 0.0 { z } else { 0.25 * z };
            assert!((y as f64 - expected).abs() < 1e-6, "{y} vs {expected}");
        }
    }

    #[test]
    fn dropout_keeps_expectation_and_drops_whole_channels() {
        let dev = Device::Cpu;
        let x = Tensor::ones((2, 8, 6, 6, 6), DType::F32, &dev).unwrap();
        let elem = Dropout::new(0.25, DropoutKind::Element, DropoutRng::new(5));
        let y = elem
            .forward_t(&x, true)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
        assert!((zeros - 0.25).abs() < 0.03, "dropped fraction {zeros}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
        let chan = Dropout::new(0.5, DropoutKind::Channel, DropoutRng::new(5));
        let y = chan.forward_t(&x, true).unwrap();
        let per_channel = y.flatten_from(2).unwrap().to_vec3::<f32>().unwrap();
        for ch in per_channel.iter().flatten() {
            assert!(
                ch.iter().all(|&v| v == ch[0]),
                "a channel is dropped or kept as a whole"
            );
        }
        assert_eq!(
            max_diff(&elem.forward_t(&x, false).unwrap(), &x),
            0.0,
            "eval is the identity"
        );
    }
}
