//! MONAI's `AttentionUnet` (`monai/networks/nets/attentionunet.py`).
//!
//! Layout and parameter names (`channels = (c0, c1, …)`, `strides = (s0, s1, …)`):
//!
//! ```text
//! model.0                 ConvBlock in → c0 (stride 1)
//! model.1                 AttentionLayer(c0, c1)
//! model.2.conv            1×1×1 conv with bias, c0 → out
//!
//! AttentionLayer(ci, cj), prefix P:
//!   P.submodule.0         ConvBlock ci → cj, stride s        (P.submodule if it is the bottom layer)
//!   P.submodule.1         AttentionLayer(cj, ck)              (absent for the bottom layer)
//!   P.upconv.up           transposed conv cj → ci (up_kernel_size, stride s, padding (k−1)/2,
//!                         output_padding s−1, bias) → BatchNorm → ReLU
//!   P.attention           W_g, W_x: 1×1×1 conv (bias) + BatchNorm, ci → ci/2;
//!                         psi: 1×1×1 conv ci/2 → 1 + BatchNorm(1) + sigmoid; out = x · psi
//!   P.merge               3×3×3 conv 2ci → ci (bias) → InstanceNorm (no affine) → Dropout → PReLU
//!
//! ConvBlock, prefix B:    B.conv.{0,1}: conv (kernel_size, bias) → BatchNorm → Dropout → ReLU
//!                         (`conv.weight`, `conv.bias`, `adn.N.*`); only the first conv is strided.
//! ```
//!
//! `forward(x)` of an AttentionLayer: `up = upconv(submodule(x))`,
//! `merge(cat[attention(g = up, x = x), up])`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::AttentionUnetConfig;
use crate::layers::{
    check_input, BatchNorm3d, Conv3d, ConvSpec, ConvTranspose3d, Dropout, DropoutKind, DropoutRng,
    InstanceNormPRelu,
};
use crate::segmenter::Segmenter;
use crate::ModelConfig;

/// MONAI `Convolution(..., norm=BATCH, act="relu", adn_ordering="NDA")`, plain or transposed.
#[derive(Debug)]
struct ConvBnRelu {
    conv: ConvKind,
    norm: BatchNorm3d,
    dropout: Dropout,
}

#[derive(Debug)]
enum ConvKind {
    Conv(Conv3d),
    Transposed(ConvTranspose3d),
}

impl ConvBnRelu {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = match &self.conv {
            ConvKind::Conv(c) => c.forward(x)?,
            ConvKind::Transposed(c) => c.forward(x)?,
        };
        // MONAI's order is norm → dropout → ReLU; the dropout mask is ≥ 0, so
        // relu(mask·z) = mask·relu(z) and the ReLU fuses into the norm.
        let h = self.norm.forward_relu_t(&h, train)?;
        self.dropout.forward_t(&h, train)
    }
}

/// MONAI's `ConvBlock`: two conv → BatchNorm → Dropout → ReLU units.
#[derive(Debug)]
struct ConvBlock {
    units: [ConvBnRelu; 2],
}

impl ConvBlock {
    fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        dropout: &Dropout,
        vb: VarBuilder,
    ) -> Result<Self> {
        let unit = |spec: ConvSpec, vb: VarBuilder| -> Result<ConvBnRelu> {
            Ok(ConvBnRelu {
                conv: ConvKind::Conv(Conv3d::new(spec, vb.pp("conv"))?),
                norm: BatchNorm3d::new(spec.out_channels, vb.pp("adn").pp("N"))?,
                dropout: dropout.clone(),
            })
        };
        let vb = vb.pp("conv");
        Ok(ConvBlock {
            units: [
                unit(
                    ConvSpec::new(c_in, c_out, kernel, true).stride(stride),
                    vb.pp(0),
                )?,
                unit(ConvSpec::new(c_out, c_out, kernel, true), vb.pp(1))?,
            ],
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.units[1].forward_t(&self.units[0].forward_t(x, train)?, train)
    }
}

/// A 1×1×1 conv (bias) followed by BatchNorm: `Sequential(Convolution(conv_only), BatchNorm3d)`.
#[derive(Debug)]
struct PointwiseBn {
    conv: Conv3d,
    norm: BatchNorm3d,
}

impl PointwiseBn {
    fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(PointwiseBn {
            conv: Conv3d::new(ConvSpec::new(c_in, c_out, 1, true), vb.pp(0).pp("conv"))?,
            norm: BatchNorm3d::new(c_out, vb.pp(1))?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.norm.forward_t(&self.conv.forward(x)?, train)
    }
}

/// MONAI's `AttentionBlock` (additive attention gate).
#[derive(Debug)]
struct AttentionBlock {
    w_g: PointwiseBn,
    w_x: PointwiseBn,
    psi: PointwiseBn,
}

impl AttentionBlock {
    fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let f_int = channels / 2;
        Ok(AttentionBlock {
            w_g: PointwiseBn::new(channels, f_int, vb.pp("W_g"))?,
            w_x: PointwiseBn::new(channels, f_int, vb.pp("W_x"))?,
            psi: PointwiseBn::new(f_int, 1, vb.pp("psi"))?,
        })
    }

    /// The gate's logits `psi(relu(W_g(g) + W_x(x)))`, before the sigmoid: MONAI's
    /// `x · sigmoid(logits)` is fused with the concatenation that follows it
    /// ([`crate::gate::gate_cat`]).
    fn logits(&self, g: &Tensor, x: &Tensor, train: bool) -> Result<Tensor> {
        let a = (self.w_g.forward_t(g, train)? + self.w_x.forward_t(x, train)?)?.relu()?;
        self.psi.forward_t(&a, train)
    }
}

/// MONAI `Convolution` with its defaults: conv (bias) → InstanceNorm → Dropout → PReLU.
#[derive(Debug)]
struct Merge {
    conv: Conv3d,
    dropout: Dropout,
    norm_act: InstanceNormPRelu,
}

impl Merge {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // PReLU is positively homogeneous and the dropout mask is ≥ 0, so
        // prelu(mask·z) = mask·prelu(z): the PReLU fuses into the norm.
        let h = self.norm_act.forward(&self.conv.forward(x)?)?;
        self.dropout.forward_t(&h, train)
    }
}

/// MONAI's `AttentionLayer`; the recursion of `_create_block`.
#[derive(Debug)]
struct AttentionLayer {
    down: ConvBlock,
    inner: Option<Box<AttentionLayer>>,
    upconv: ConvBnRelu,
    attention: AttentionBlock,
    merge: Merge,
}

impl AttentionLayer {
    /// Builds the layer for `channels[0..]`/`strides[0..]` (at least two channels).
    fn new(
        cfg: &AttentionUnetConfig,
        level: usize,
        dropout: &Dropout,
        no_dropout: &Dropout,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (ci, cj, s) = (
            cfg.channels[level],
            cfg.channels[level + 1],
            cfg.strides[level],
        );
        let is_bottom = level + 2 == cfg.channels.len();
        let vb_sub = vb.pp("submodule");
        let (down, inner) = if is_bottom {
            (
                ConvBlock::new(ci, cj, cfg.kernel_size, s, dropout, vb_sub)?,
                None,
            )
        } else {
            let down = ConvBlock::new(ci, cj, cfg.kernel_size, s, dropout, vb_sub.pp(0))?;
            let inner = AttentionLayer::new(cfg, level + 1, dropout, no_dropout, vb_sub.pp(1))?;
            (down, Some(Box::new(inner)))
        };
        let k = cfg.up_kernel_size;
        let vb_up = vb.pp("upconv").pp("up");
        let upconv = ConvBnRelu {
            conv: ConvKind::Transposed(ConvTranspose3d::new(
                ConvSpec::new(cj, ci, k, true).stride(s),
                (k - 1) / 2,
                s - 1,
                vb_up.pp("conv"),
            )?),
            norm: BatchNorm3d::new(ci, vb_up.pp("adn").pp("N"))?,
            // MONAI builds UpConv without passing the dropout rate.
            dropout: no_dropout.clone(),
        };
        let attention = AttentionBlock::new(ci, vb.pp("attention"))?;
        let vb_m = vb.pp("merge");
        let merge = Merge {
            // MONAI's merge conv always uses kernel 3, whatever `kernel_size` is.
            conv: Conv3d::new(ConvSpec::new(2 * ci, ci, 3, true), vb_m.pp("conv"))?,
            dropout: dropout.clone(),
            norm_act: InstanceNormPRelu::new(vb_m.pp("adn").pp("A"))?,
        };
        Ok(AttentionLayer {
            down,
            inner,
            upconv,
            attention,
            merge,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut low = self.down.forward_t(x, train)?;
        if let Some(inner) = &self.inner {
            low = inner.forward_t(&low, train)?;
        }
        let up = self.upconv.forward_t(&low, train)?;
        let logits = self.attention.logits(&up, x, train)?;
        self.merge
            .forward_t(&crate::gate::gate_cat(x, &logits, &up)?, train)
    }
}

/// MONAI `AttentionUnet(spatial_dims=3, …)`; see the module docs for the layout.
#[derive(Debug)]
pub struct AttentionUnet {
    cfg: AttentionUnetConfig,
    head: ConvBlock,
    body: AttentionLayer,
    reduce: Conv3d,
    dropout_rng: DropoutRng,
}

impl AttentionUnet {
    /// Builds the network, taking every parameter from `vb` under MONAI's state-dict
    /// names. The configuration is validated first. Dropout masks (if any) are drawn
    /// from a generator seeded with `dropout_seed`.
    pub fn new(
        cfg: &AttentionUnetConfig,
        vb: VarBuilder,
        dropout_seed: u64,
    ) -> crate::Result<Self> {
        cfg.validate()?;
        let dropout_rng = DropoutRng::new(dropout_seed);
        let dropout = Dropout::new(cfg.dropout, DropoutKind::Element, dropout_rng.clone());
        let no_dropout = Dropout::new(0.0, DropoutKind::Element, dropout_rng.clone());
        let vb = vb.pp("model");
        let head = ConvBlock::new(
            cfg.in_channels,
            cfg.channels[0],
            cfg.kernel_size,
            1,
            &dropout,
            vb.pp(0),
        )?;
        let body = AttentionLayer::new(cfg, 0, &dropout, &no_dropout, vb.pp(1))?;
        let reduce = Conv3d::new(
            ConvSpec::new(cfg.channels[0], cfg.out_channels, 1, true),
            vb.pp(2).pp("conv"),
        )?;
        Ok(AttentionUnet {
            cfg: cfg.clone(),
            head,
            body,
            reduce,
            dropout_rng,
        })
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &AttentionUnetConfig {
        &self.cfg
    }
}

impl Segmenter for AttentionUnet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        check_input(
            "attention_unet",
            x,
            self.cfg.in_channels,
            self.cfg.size_divisor(),
        )?;
        let h = self.head.forward_t(x, train)?;
        let h = self.body.forward_t(&h, train)?;
        self.reduce.forward(&h)
    }

    fn config(&self) -> ModelConfig {
        ModelConfig::AttentionUnet(self.cfg.clone())
    }

    fn set_dropout_seed(&self, seed: u64) {
        self.dropout_rng.reseed(seed);
    }
}
