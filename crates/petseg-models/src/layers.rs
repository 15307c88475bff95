//! The building blocks shared by both networks, each a PyTorch layer with PyTorch's
//! parameter names, shapes and default initialisation (given to the `VarBuilder` as
//! `Init` hints, so that [`crate::init`] can draw them from a seeded generator).

use std::sync::{Arc, Mutex};

use candle_core::{DType, Result, Tensor};
use candle_nn::{BatchNorm, BatchNormConfig, Init, ModuleT, VarBuilder};
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

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        petseg_ops3d::conv3d(x, &self.weight, self.bias.as_ref(), &self.cfg)
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

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        petseg_ops3d::conv_transpose3d(x, &self.weight, self.bias.as_ref(), &self.cfg)
    }
}

/// `torch.nn.GroupNorm(groups, C)` with affine `weight`/`bias` (init 1 and 0).
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

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        petseg_ops3d::group_norm(
            x,
            self.groups,
            Some(&self.weight),
            Some(&self.bias),
            NORM_EPS,
        )
    }
}

/// `torch.nn.BatchNorm3d(C)` (momentum 0.1, eps 1e-5, affine, running statistics as
/// `running_mean`/`running_var` variables; train mode updates them with the unbiased
/// batch variance, like PyTorch). PyTorch's `num_batches_tracked` is not kept: it only
/// matters when `momentum=None`, which MONAI never uses (see [`crate::weights`]).
#[derive(Debug)]
pub(crate) struct BatchNorm3d(BatchNorm);

impl BatchNorm3d {
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = BatchNormConfig {
            eps: NORM_EPS,
            remove_mean: true,
            affine: true,
            momentum: 0.1,
        };
        Ok(BatchNorm3d(candle_nn::batch_norm(channels, cfg, vb)?))
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.0.forward_t(x, train)
    }
}

/// `torch.nn.InstanceNorm3d(C)` with MONAI's defaults: no affine parameters, no running
/// statistics, so it normalises with the instance's own statistics in both modes.
pub(crate) fn instance_norm(x: &Tensor) -> Result<Tensor> {
    petseg_ops3d::instance_norm(x, None, None, NORM_EPS)
}

/// `torch.nn.PReLU()` with one shared slope (`weight [1]`, init 0.25).
#[derive(Debug)]
pub(crate) struct PRelu {
    weight: Tensor,
}

impl PRelu {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Ok(PRelu {
            weight: vb.get_with_hints(1, "weight", Init::Const(0.25))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.reshape((1, 1, 1, 1, 1))?;
        let pos = x.relu()?;
        let neg = x.minimum(0.0)?;
        pos + neg.broadcast_mul(&w)?
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
        candle_core::bail!("{model}: input must be a float tensor, got {:?}", x.dtype());
    }
    Ok(())
}
