//! Network configurations: what training, inference and sweeps write in TOML/JSON to name
//! a network and its options.
//!
//! ```toml
//! [model]
//! name = "segresnet"          # or "attention_unet"
//! init_filters = 16
//! blocks_down = [1, 2, 2, 4]
//! ```
//!
//! Omitted fields take the study's values (`docs/method/networks.md` §2–3), which are
//! MONAI's defaults except where the study set them (SegResNet: `init_filters = 16`,
//! `in_channels = 2`; MONAI's own defaults are 8 and 1). Unknown fields are rejected.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::init::{fill_seeded, recording_builder, shape_builder};
use crate::{AttentionUnet, ModelError, Result, SegResNet, Segmenter};

/// One of the supported networks with its options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum ModelConfig {
    /// MONAI `SegResNet`.
    #[serde(rename = "segresnet")]
    SegResNet(SegResNetConfig),
    /// MONAI `AttentionUnet`.
    AttentionUnet(AttentionUnetConfig),
}

/// SegResNet's up-sampling (`upsample_mode`); MONAI's `pixelshuffle` is not supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpsampleMode {
    /// Trilinear ×2 with `align_corners = False` (MONAI's default, no parameters).
    #[default]
    Nontrainable,
    /// 2×2×2 stride-2 transposed convolution with bias.
    Deconv,
}

/// Options of MONAI `SegResNet(spatial_dims=3, …)` with `norm=("GROUP", {"num_groups": g})`
/// and `act=ReLU`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegResNetConfig {
    /// Channels of the first level (`init_filters`); level i has `init_filters·2^i`.
    pub init_filters: usize,
    /// Input channels (PET + CT = 2).
    pub in_channels: usize,
    /// Output channels (classes).
    pub out_channels: usize,
    /// ResBlocks per encoder level; its length is the number of levels.
    pub blocks_down: Vec<usize>,
    /// ResBlocks per decoder level; must have one entry fewer than `blocks_down`.
    pub blocks_up: Vec<usize>,
    /// Groups of every GroupNorm (`norm=("GROUP", {"num_groups": …})`).
    pub norm_groups: usize,
    /// Up-sampling of the decoder.
    pub upsample_mode: UpsampleMode,
    /// Channel dropout (`nn.Dropout3d`) after the first conv, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropout_prob: Option<f64>,
    /// Whether the final GN → ReLU → 1×1×1 conv is applied (it is built either way).
    pub use_conv_final: bool,
}

impl Default for SegResNetConfig {
    /// The study's SegResNet (`docs/method/networks.md` §2).
    fn default() -> Self {
        SegResNetConfig {
            init_filters: 16,
            in_channels: 2,
            out_channels: 2,
            blocks_down: vec![1, 2, 2, 4],
            blocks_up: vec![1, 1, 1],
            norm_groups: 8,
            upsample_mode: UpsampleMode::Nontrainable,
            dropout_prob: None,
            use_conv_final: true,
        }
    }
}

/// Options of MONAI `AttentionUnet(spatial_dims=3, …)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttentionUnetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (classes).
    pub out_channels: usize,
    /// Channels per level, top first (at least two).
    pub channels: Vec<usize>,
    /// Stride of each down-sampling; `channels.len() − 1` entries are used.
    pub strides: Vec<usize>,
    /// Odd cubic kernel of the ConvBlocks.
    pub kernel_size: usize,
    /// Odd cubic kernel of the transposed up-convolutions.
    pub up_kernel_size: usize,
    /// Element dropout in the ConvBlocks and merge convs (`0` = none).
    pub dropout: f64,
}

impl Default for AttentionUnetConfig {
    /// The study's Attention U-Net (`docs/method/networks.md` §3).
    fn default() -> Self {
        AttentionUnetConfig {
            in_channels: 2,
            out_channels: 2,
            channels: vec![16, 32, 64, 128, 256],
            strides: vec![2, 2, 2, 2],
            kernel_size: 3,
            up_kernel_size: 3,
            dropout: 0.0,
        }
    }
}

fn config_err(
    model: &'static str,
    field: &'static str,
    value: impl std::fmt::Debug,
    expected: impl Into<String>,
) -> ModelError {
    ModelError::Config {
        model,
        field,
        value: format!("{value:?}"),
        expected: expected.into(),
    }
}

fn check_dropout(model: &'static str, field: &'static str, p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(config_err(model, field, p, "a probability in [0, 1)"));
    }
    Ok(())
}

impl SegResNetConfig {
    const NAME: &'static str = "segresnet";

    /// Checks the options against what MONAI would accept and build consistently.
    pub fn validate(&self) -> Result<()> {
        let m = Self::NAME;
        if self.in_channels == 0 {
            return Err(config_err(m, "in_channels", self.in_channels, "at least 1"));
        }
        if self.out_channels == 0 {
            return Err(config_err(
                m,
                "out_channels",
                self.out_channels,
                "at least 1",
            ));
        }
        if self.blocks_down.is_empty() || self.blocks_down.len() > 8 {
            return Err(config_err(
                m,
                "blocks_down",
                &self.blocks_down,
                "1 to 8 levels",
            ));
        }
        if self.blocks_up.len() + 1 != self.blocks_down.len() {
            return Err(config_err(
                m,
                "blocks_up",
                &self.blocks_up,
                format!(
                    "one entry per decoder level, i.e. {} (blocks_down has {})",
                    self.blocks_down.len() - 1,
                    self.blocks_down.len()
                ),
            ));
        }
        if self.norm_groups == 0
            || self.init_filters == 0
            || !self.init_filters.is_multiple_of(self.norm_groups)
        {
            return Err(config_err(
                m,
                "init_filters",
                self.init_filters,
                format!(
                    "a positive multiple of norm_groups = {} (GroupNorm needs it)",
                    self.norm_groups
                ),
            ));
        }
        if let Some(p) = self.dropout_prob {
            check_dropout(m, "dropout_prob", p)?;
        }
        Ok(())
    }

    /// Input sizes must be multiples of this: `2^(levels − 1)`.
    pub fn size_divisor(&self) -> usize {
        1 << self.blocks_down.len().saturating_sub(1)
    }
}

impl AttentionUnetConfig {
    const NAME: &'static str = "attention_unet";

    /// Checks the options against what MONAI would accept and build consistently.
    pub fn validate(&self) -> Result<()> {
        let m = Self::NAME;
        if self.in_channels == 0 {
            return Err(config_err(m, "in_channels", self.in_channels, "at least 1"));
        }
        if self.out_channels == 0 {
            return Err(config_err(
                m,
                "out_channels",
                self.out_channels,
                "at least 1",
            ));
        }
        if self.channels.len() < 2 || self.channels.contains(&0) {
            return Err(config_err(
                m,
                "channels",
                &self.channels,
                "at least two levels, each with at least 1 channel",
            ));
        }
        if self.channels[..self.channels.len() - 1]
            .iter()
            .any(|&c| c < 2)
        {
            return Err(config_err(
                m,
                "channels",
                &self.channels,
                "at least 2 channels on every level but the last (the attention gate halves them)",
            ));
        }
        let levels = self.channels.len() - 1;
        if self.strides.len() < levels || self.strides[..levels].contains(&0) {
            return Err(config_err(
                m,
                "strides",
                &self.strides,
                format!("at least {levels} positive strides (one per level below the top)"),
            ));
        }
        for (field, k) in [
            ("kernel_size", self.kernel_size),
            ("up_kernel_size", self.up_kernel_size),
        ] {
            if k % 2 == 0 {
                return Err(config_err(
                    m,
                    field,
                    k,
                    "an odd kernel size (MONAI's \"same\" padding)",
                ));
            }
        }
        check_dropout(m, "dropout", self.dropout)
    }

    /// Input sizes must be multiples of this: the product of the used strides.
    pub fn size_divisor(&self) -> usize {
        self.strides
            .iter()
            .take(self.channels.len().saturating_sub(1))
            .product()
    }
}

impl ModelConfig {
    /// The registry name (`segresnet`, `attention_unet`).
    pub fn name(&self) -> &'static str {
        match self {
            ModelConfig::SegResNet(_) => SegResNetConfig::NAME,
            ModelConfig::AttentionUnet(_) => AttentionUnetConfig::NAME,
        }
    }

    /// Checks the options (also done by every `build`).
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelConfig::SegResNet(c) => c.validate(),
            ModelConfig::AttentionUnet(c) => c.validate(),
        }
    }

    /// Channels the network expects.
    pub fn in_channels(&self) -> usize {
        match self {
            ModelConfig::SegResNet(c) => c.in_channels,
            ModelConfig::AttentionUnet(c) => c.in_channels,
        }
    }

    /// Channels the network returns (SegResNet without its final conv returns
    /// `init_filters` feature channels).
    pub fn out_channels(&self) -> usize {
        match self {
            ModelConfig::SegResNet(c) if !c.use_conv_final => c.init_filters,
            ModelConfig::SegResNet(c) => c.out_channels,
            ModelConfig::AttentionUnet(c) => c.out_channels,
        }
    }

    /// Every spatial input size must be a multiple of this (patch and sliding-window ROI
    /// sizes included).
    pub fn size_divisor(&self) -> usize {
        match self {
            ModelConfig::SegResNet(c) => c.size_divisor(),
            ModelConfig::AttentionUnet(c) => c.size_divisor(),
        }
    }

    /// Builds the network on the parameters of `vb` (for example
    /// `VarBuilder::from_varmap` for training, or `from_mmaped_safetensors` for
    /// inference). Dropout masks start from seed 0; see [`Segmenter::set_dropout_seed`].
    pub fn build(&self, vb: VarBuilder) -> Result<Box<dyn Segmenter>> {
        self.build_with_dropout_seed(vb, 0)
    }

    fn build_with_dropout_seed(
        &self,
        vb: VarBuilder,
        dropout_seed: u64,
    ) -> Result<Box<dyn Segmenter>> {
        Ok(match self {
            ModelConfig::SegResNet(c) => Box::new(SegResNet::new(c, vb, dropout_seed)?),
            ModelConfig::AttentionUnet(c) => Box::new(AttentionUnet::new(c, vb, dropout_seed)?),
        })
    }

    /// Builds the network with its parameters in `varmap` (f32 on `device`), every
    /// parameter initialised as PyTorch does by default, drawn from
    /// `ChaCha8Rng::seed_from_u64(seed)` in sorted-name order. The same seed gives
    /// bit-identical weights. Dropout masks use stream 1 of the same seed.
    /// Parameters already in `varmap` under the same names are re-initialised.
    pub fn build_seeded(
        &self,
        varmap: &VarMap,
        seed: u64,
        device: &Device,
    ) -> Result<Box<dyn Segmenter>> {
        let (vb, requests) = recording_builder(varmap, device);
        let net = self.build_with_dropout_seed(vb, seed)?;
        fill_seeded(varmap, &requests, seed)?;
        Ok(net)
    }

    /// Builds the network for inference on the values now in `varmap`, as plain
    /// tensors detached from autograd. A forward pass then records no graph, so
    /// each activation is freed as soon as the next layer has used it; with the
    /// `Var`s of a training `VarMap` every activation of a sliding window stays
    /// alive until the window's output is dropped. Later changes to `varmap`
    /// are not seen: build again after training further.
    pub fn build_frozen(&self, varmap: &VarMap, device: &Device) -> Result<Box<dyn Segmenter>> {
        let tensors = {
            let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
            data.iter()
                .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().to_device(device)?)))
                .collect::<Result<HashMap<String, Tensor>>>()?
        };
        self.build(VarBuilder::from_tensors(tensors, DType::F32, device))
    }

    /// MONAI's `state_dict` keys of this network with their shapes, without allocating
    /// the parameters. BatchNorm's `num_batches_tracked` is not listed (see
    /// [`crate::weights`]).
    pub fn param_shapes(&self) -> Result<BTreeMap<String, Vec<usize>>> {
        let (vb, requests) = shape_builder();
        self.build(vb)?;
        let requests = requests.lock().unwrap_or_else(|e| e.into_inner());
        Ok(requests
            .iter()
            .map(|(k, r)| (k.clone(), r.shape.dims().to_vec()))
            .collect())
    }

    /// Number of trainable parameters, as MONAI's `sum(p.numel() for p in
    /// model.parameters())` (BatchNorm running statistics excluded).
    pub fn param_count(&self) -> Result<usize> {
        Ok(self
            .param_shapes()?
            .iter()
            .filter(|(k, _)| !is_buffer(k))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum())
    }
}

/// Whether a state-dict key is a BatchNorm running statistic (a PyTorch buffer, not a
/// trainable parameter): it gets no gradient and should not be weight-decayed.
pub fn is_buffer(key: &str) -> bool {
    key.ends_with(".running_mean")
        || key.ends_with(".running_var")
        || key.ends_with(".num_batches_tracked")
}

impl FromStr for ModelConfig {
    type Err = ModelError;

    /// The study configuration of a network by name: `segresnet`, `attention_unet`
    /// (also `attentionunet`), case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "segresnet" => Ok(ModelConfig::SegResNet(SegResNetConfig::default())),
            "attention_unet" | "attentionunet" => {
                Ok(ModelConfig::AttentionUnet(AttentionUnetConfig::default()))
            }
            _ => Err(ModelError::UnknownModel {
                name: s.to_string(),
            }),
        }
    }
}

impl std::fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
