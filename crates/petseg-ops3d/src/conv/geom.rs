//! Geometry of a 3-D convolution, shared by the forward, input-gradient and
//! weight-gradient kernels (and by the transposed convolution, which is the
//! input-gradient of a convolution).

/// Sizes of one convolution `y = conv(x, w)`:
/// `x [n, c, input]`, `w [o, c/groups, kernel]`, `y [n, o, output]`.
///
/// `output` is stored rather than derived so that a transposed convolution with
/// `output_padding` can describe its adjoint convolution exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub o: usize,
    pub groups: usize,
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
    pub dilation: [usize; 3],
    pub output: [usize; 3],
}

impl ConvGeom {
    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.c / self.groups
    }
    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.o / self.groups
    }
    /// Number of kernel taps `kd·kh·kw`.
    pub fn kvol(&self) -> usize {
        self.kernel.iter().product()
    }
    /// Rows of the im2col matrix of one group: `c/groups · kd·kh·kw`.
    pub fn krows(&self) -> usize {
        self.cg() * self.kvol()
    }
    /// Voxels of one input channel.
    pub fn in_vol(&self) -> usize {
        self.input.iter().product()
    }
    /// Voxels of one output channel.
    pub fn out_vol(&self) -> usize {
        self.output.iter().product()
    }
    /// Element count of x, w and y.
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.in_vol()
    }
    pub fn w_len(&self) -> usize {
        self.o * self.krows()
    }
    pub fn y_len(&self) -> usize {
        self.n * self.o * self.out_vol()
    }
    /// True for a 1×1×1 kernel with stride 1 and no padding: the im2col matrix
    /// is the input itself, so the kernels skip it.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1, 1] && self.stride == [1, 1, 1] && self.padding == [0, 0, 0]
    }
}

/// Output length of a convolution along one axis, or `None` if the (padded)
/// input is shorter than the dilated kernel.
pub(crate) fn conv_out_len(input: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    let padded = input + 2 * p;
    (padded >= span).then(|| (padded - span) / s + 1)
}
