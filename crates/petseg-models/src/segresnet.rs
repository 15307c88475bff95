//! MONAI's `SegResNet` (`monai/networks/nets/segresnet.py`, without the VAE branch).
//!
//! Layout and parameter names, for `blocks_down = (1,2,2,4)`, `blocks_up = (1,1,1)`:
//!
//! ```text
//! convInit.conv                        3×3×3 conv, in → F, no bias
//! [dropout]                            nn.Dropout3d after convInit, if dropout_prob is set
//! down_layers.i.0.conv                 (i > 0) 3×3×3 stride-2 conv, F·2^(i−1) → F·2^i, no bias
//! down_layers.i.{j}.{norm1,conv1,norm2,conv2}   ResBlock: GN → ReLU → conv → GN → ReLU → conv, + x
//! up_samples.i.0.conv                  1×1×1 conv, halves the channels, no bias
//! up_samples.i.1                       trilinear ×2 (align_corners=False) or
//!                                      up_samples.i.1.deconv: 2×2×2 stride-2 transposed conv with bias
//! up_layers.i.{j}                      ResBlocks after adding the skip connection
//! conv_final.{0,2}                     GN → ReLU → 1×1×1 conv with bias (F → out)
//! ```
//!
//! Down layer 0 has no pre-conv, so its ResBlocks are `down_layers.0.1 …` (index 0 is
//! MONAI's `nn.Identity`). `conv_final` exists (and is in the state dict) even when
//! `use_conv_final = false`; it is then skipped in the forward pass, as in MONAI.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use petseg_ops3d::UpsampleTarget;

use crate::config::{SegResNetConfig, UpsampleMode};
use crate::layers::{
    check_input, Conv3d, ConvSpec, ConvTranspose3d, Dropout, DropoutKind, DropoutRng, GroupNorm,
};
use crate::segmenter::Segmenter;
use crate::ModelConfig;

/// MONAI's `ResBlock` (`segresnet_block.py`).
#[derive(Debug)]
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv3d,
    norm2: GroupNorm,
    conv2: Conv3d,
}

impl ResBlock {
    fn new(channels: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        let conv = ConvSpec::new(channels, channels, 3, false);
        Ok(ResBlock {
            norm1: GroupNorm::new(groups, channels, vb.pp("norm1"))?,
            conv1: Conv3d::new(conv, vb.pp("conv1").pp("conv"))?,
            norm2: GroupNorm::new(groups, channels, vb.pp("norm2"))?,
            conv2: Conv3d::new(conv, vb.pp("conv2").pp("conv"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward_relu(x)?)?;
        let h = self.conv2.forward(&self.norm2.forward_relu(&h)?)?;
        h + x
    }
}

/// One encoder level: optional stride-2 conv, then ResBlocks.
#[derive(Debug)]
struct DownLayer {
    pre_conv: Option<Conv3d>,
    blocks: Vec<ResBlock>,
}

/// The ×2 up-sampling after the 1×1×1 conv of an up level.
#[derive(Debug)]
enum Upsample {
    Trilinear,
    Deconv(ConvTranspose3d),
}

/// One decoder level.
#[derive(Debug)]
struct UpLayer {
    reduce: Conv3d,
    upsample: Upsample,
    blocks: Vec<ResBlock>,
}

/// MONAI `SegResNet(spatial_dims=3, …)`; see the module docs for the layout.
#[derive(Debug)]
pub struct SegResNet {
    cfg: SegResNetConfig,
    conv_init: Conv3d,
    dropout: Option<Dropout>,
    dropout_rng: DropoutRng,
    down: Vec<DownLayer>,
    up: Vec<UpLayer>,
    final_norm: GroupNorm,
    final_conv: Conv3d,
}

impl SegResNet {
    /// Builds the network, taking every parameter from `vb` under MONAI's state-dict
    /// names. The configuration is validated first. Dropout masks (if any) are drawn
    /// from a generator seeded with `dropout_seed`.
    pub fn new(cfg: &SegResNetConfig, vb: VarBuilder, dropout_seed: u64) -> crate::Result<Self> {
        cfg.validate()?;
        let f = cfg.init_filters;
        let g = cfg.norm_groups;
        let conv_init = Conv3d::new(
            ConvSpec::new(cfg.in_channels, f, 3, false),
            vb.pp("convInit").pp("conv"),
        )?;
        let dropout_rng = DropoutRng::new(dropout_seed);
        let dropout = cfg
            .dropout_prob
            .map(|p| Dropout::new(p, DropoutKind::Channel, dropout_rng.clone()));

        let mut down = Vec::with_capacity(cfg.blocks_down.len());
        for (i, &n_blocks) in cfg.blocks_down.iter().enumerate() {
            let vb_i = vb.pp("down_layers").pp(i);
            let c = f << i;
            let pre_conv = if i > 0 {
                Some(Conv3d::new(
                    ConvSpec::new(c / 2, c, 3, false).stride(2),
                    vb_i.pp(0).pp("conv"),
                )?)
            } else {
                None
            };
            let blocks = (1..=n_blocks)
                .map(|j| ResBlock::new(c, g, vb_i.pp(j)))
                .collect::<Result<_>>()?;
            down.push(DownLayer { pre_conv, blocks });
        }

        let n_up = cfg.blocks_up.len();
        let mut up = Vec::with_capacity(n_up);
        for (i, &n_blocks) in cfg.blocks_up.iter().enumerate() {
            let c_in = f << (n_up - i);
            let c = c_in / 2;
            let vb_s = vb.pp("up_samples").pp(i);
            let reduce = Conv3d::new(ConvSpec::new(c_in, c, 1, false), vb_s.pp(0).pp("conv"))?;
            let upsample = match cfg.upsample_mode {
                UpsampleMode::Nontrainable => Upsample::Trilinear,
                UpsampleMode::Deconv => Upsample::Deconv(ConvTranspose3d::new(
                    ConvSpec::new(c, c, 2, true).stride(2),
                    0,
                    0,
                    vb_s.pp(1).pp("deconv"),
                )?),
            };
            let vb_l = vb.pp("up_layers").pp(i);
            let blocks = (0..n_blocks)
                .map(|j| ResBlock::new(c, g, vb_l.pp(j)))
                .collect::<Result<_>>()?;
            up.push(UpLayer {
                reduce,
                upsample,
                blocks,
            });
        }

        let final_norm = GroupNorm::new(g, f, vb.pp("conv_final").pp(0))?;
        let final_conv = Conv3d::new(
            ConvSpec::new(f, cfg.out_channels, 1, true),
            vb.pp("conv_final").pp(2).pp("conv"),
        )?;
        Ok(SegResNet {
            cfg: cfg.clone(),
            conv_init,
            dropout,
            dropout_rng,
            down,
            up,
            final_norm,
            final_conv,
        })
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &SegResNetConfig {
        &self.cfg
    }
}

impl Segmenter for SegResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        check_input(
            "segresnet",
            x,
            self.cfg.in_channels,
            self.cfg.size_divisor(),
        )?;
        let mut h = self.conv_init.forward(x)?;
        if let Some(dropout) = &self.dropout {
            h = dropout.forward_t(&h, train)?;
        }
        let mut skips = Vec::with_capacity(self.down.len());
        for level in &self.down {
            if let Some(conv) = &level.pre_conv {
                h = conv.forward(&h)?;
            }
            for block in &level.blocks {
                h = block.forward(&h)?;
            }
            skips.push(h.clone());
        }
        // skips[last] is h itself; level i of the decoder adds skips[len − 2 − i].
        for (i, level) in self.up.iter().enumerate() {
            let r = level.reduce.forward(&h)?;
            let u = match &level.upsample {
                Upsample::Trilinear => {
                    petseg_ops3d::upsample_trilinear3d(&r, UpsampleTarget::Scale([2.0; 3]), false)?
                }
                Upsample::Deconv(deconv) => deconv.forward(&r)?,
            };
            h = (u + &skips[skips.len() - 2 - i])?;
            for block in &level.blocks {
                h = block.forward(&h)?;
            }
        }
        if self.cfg.use_conv_final {
            h = self
                .final_conv
                .forward(&self.final_norm.forward_relu(&h)?)?;
        }
        Ok(h)
    }

    fn config(&self) -> ModelConfig {
        ModelConfig::SegResNet(self.cfg.clone())
    }

    fn set_dropout_seed(&self, seed: u64) {
        self.dropout_rng.reseed(seed);
    }
}
