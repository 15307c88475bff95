// CUDA kernels of petseg-ops3d (f32), compiled at run time with NVRTC.
// Every kernel uses a grid-stride loop; sizes are 64-bit where they can exceed 2^31.
// The parameter structs mirror the #[repr(C)] structs in src/cuda/*.rs exactly.

#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)gridDim.x * blockDim.x)

// ---------------------------------------------------------------- convolution
struct ConvP {
    long long p0;      // first output column of the tile
    long long cols;    // columns in the tile
    long long z0;      // first input plane of the tile's footprint (col2im)
    long long nz;      // input planes in the footprint (col2im)
    int cg, krows;
    int id, ih, iw, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, od, oh, ow;
};

// col[row, t] = x[ci, iz, iy, ix] (0 in the padding); x points at the group's first channel.
extern "C" __global__ void im2col3d(const float* __restrict__ x, long long x_off,
                                    float* __restrict__ col, ConvP p) {
    x += x_off;
    long long total = (long long)p.krows * p.cols;
    long long in_vol = (long long)p.id * p.ih * p.iw;
    GRID_STRIDE(i, total) {
        long long t = i % p.cols;
        int row = (int)(i / p.cols);
        int kx = row % p.kw; int r = row / p.kw;
        int ky = r % p.kh; r /= p.kh;
        int kz = r % p.kd; int ci = r / p.kd;
        long long pp = p.p0 + t;
        int ox = (int)(pp % p.ow); long long q = pp / p.ow;
        int oy = (int)(q % p.oh); int oz = (int)(q / p.oh);
        int iz = oz * p.sd + kz * p.dd - p.pd;
        int iy = oy * p.sh + ky * p.dh - p.ph;
        int ix = ox * p.sw + kx * p.dw - p.pw;
        float v = 0.0f;
        if (iz >= 0 && iz < p.id && iy >= 0 && iy < p.ih && ix >= 0 && ix < p.iw)
            v = x[ci * in_vol + ((long long)iz * p.ih + iy) * p.iw + ix];
        col[i] = v;
    }
}

// Adjoint of im2col3d as a gather (deterministic, no atomics): every input voxel of the
// tile's footprint adds the column entries that read it. gx points at the group's first channel.
extern "C" __global__ void col2im3d(const float* __restrict__ col, float* __restrict__ gx,
                                    long long gx_off, ConvP p) {
    gx += gx_off;
    long long plane = (long long)p.ih * p.iw;
    long long in_vol = (long long)p.id * plane;
    long long total = (long long)p.cg * p.nz * plane;
    long long p1 = p.p0 + p.cols;
    GRID_STRIDE(i, total) {
        int ix = (int)(i % p.iw); long long r = i / p.iw;
        int iy = (int)(r % p.ih); r /= p.ih;
        int iz = (int)(p.z0 + r % p.nz); int ci = (int)(r / p.nz);
        float s = 0.0f;
        for (int kz = 0; kz < p.kd; ++kz) {
            int tz = iz + p.pd - kz * p.dd;
            if (tz < 0 || tz % p.sd) continue;
            int oz = tz / p.sd; if (oz >= p.od) continue;
            for (int ky = 0; ky < p.kh; ++ky) {
                int ty = iy + p.ph - ky * p.dh;
                if (ty < 0 || ty % p.sh) continue;
                int oy = ty / p.sh; if (oy >= p.oh) continue;
                for (int kx = 0; kx < p.kw; ++kx) {
                    int tx = ix + p.pw - kx * p.dw;
                    if (tx < 0 || tx % p.sw) continue;
                    int ox = tx / p.sw; if (ox >= p.ow) continue;
                    long long pp = ((long long)oz * p.oh + oy) * p.ow + ox;
                    if (pp < p.p0 || pp >= p1) continue;
                    int row = ((ci * p.kd + kz) * p.kh + ky) * p.kw + kx;
                    s += col[(long long)row * p.cols + (pp - p.p0)];
                }
            }
        }
        gx[ci * in_vol + (long long)iz * plane + (long long)iy * p.iw + ix] += s;
    }
}

// ---------------------------------------------------------------- pooling
struct PoolP {
    long long planes;
    int id, ih, iw, od, oh, ow, kd, kh, kw, sd, sh, sw, pd, ph, pw;
};

// First maximum of window (oz, oy, ox) in plane xp (a NaN, the last one, wins); -1 if empty.
__device__ long long window_argmax(const float* xp, const PoolP& p, int oz, int oy, int ox) {
    int z0 = oz * p.sd - p.pd, y0 = oy * p.sh - p.ph, x0 = ox * p.sw - p.pw;
    long long best = -1; float m = 0.0f;
    for (int z = max(z0, 0); z < min(z0 + p.kd, p.id); ++z)
        for (int y = max(y0, 0); y < min(y0 + p.kh, p.ih); ++y)
            for (int x = max(x0, 0); x < min(x0 + p.kw, p.iw); ++x) {
                long long j = ((long long)z * p.ih + y) * p.iw + x;
                float v = xp[j];
                if (best < 0 || v > m || v != v) { best = j; m = v; }
            }
    return best;
}

extern "C" __global__ void pool_fwd(const float* __restrict__ x, float* __restrict__ y, PoolP p, int is_max) {
    long long in_vol = (long long)p.id * p.ih * p.iw, out_vol = (long long)p.od * p.oh * p.ow;
    GRID_STRIDE(i, p.planes * out_vol) {
        long long pl = i / out_vol, o = i % out_vol;
        int ox = (int)(o % p.ow), oy = (int)((o / p.ow) % p.oh), oz = (int)(o / ((long long)p.ow * p.oh));
        const float* xp = x + pl * in_vol;
        if (is_max) {
            long long j = window_argmax(xp, p, oz, oy, ox);
            y[i] = j < 0 ? __int_as_float(0xff800000) : xp[j];
        } else {
            int z0 = oz * p.sd - p.pd, y0 = oy * p.sh - p.ph, x0 = ox * p.sw - p.pw;
            float s = 0.0f;
            for (int z = max(z0, 0); z < min(z0 + p.kd, p.id); ++z)
                for (int yy = max(y0, 0); yy < min(y0 + p.kh, p.ih); ++yy)
                    for (int xx = max(x0, 0); xx < min(x0 + p.kw, p.iw); ++xx)
                        s += xp[((long long)z * p.ih + yy) * p.iw + xx];
            y[i] = s / (float)(p.kd * p.kh * p.kw);
        }
    }
}

// Range of output indices whose window (stride s, pad pd, kernel k) contains input index i.
__device__ void windows_of(int i, int k, int s, int pd, int n_out, int* lo, int* hi) {
    int a = i + pd - k + 1;
    *lo = a <= 0 ? 0 : (a + s - 1) / s;
    *hi = min((i + pd) / s, n_out - 1);
}

// Gather form of the pooling backward (deterministic): every input voxel sums the gradients of
// the windows that contain it (max: only windows whose first argmax it is).
extern "C" __global__ void pool_bwd(const float* __restrict__ x, const float* __restrict__ gy,
                                    float* __restrict__ gx, PoolP p, int is_max) {
    long long in_vol = (long long)p.id * p.ih * p.iw, out_vol = (long long)p.od * p.oh * p.ow;
    float inv = 1.0f / (float)(p.kd * p.kh * p.kw);
    GRID_STRIDE(i, p.planes * in_vol) {
        long long pl = i / in_vol, j = i % in_vol;
        int ix = (int)(j % p.iw), iy = (int)((j / p.iw) % p.ih), iz = (int)(j / ((long long)p.iw * p.ih));
        int z_lo, z_hi, y_lo, y_hi, x_lo, x_hi;
        windows_of(iz, p.kd, p.sd, p.pd, p.od, &z_lo, &z_hi);
        windows_of(iy, p.kh, p.sh, p.ph, p.oh, &y_lo, &y_hi);
        windows_of(ix, p.kw, p.sw, p.pw, p.ow, &x_lo, &x_hi);
        const float* xp = x + pl * in_vol;
        const float* gp = gy + pl * out_vol;
        float s = 0.0f;
        for (int oz = z_lo; oz <= z_hi; ++oz)
            for (int oy = y_lo; oy <= y_hi; ++oy)
                for (int ox = x_lo; ox <= x_hi; ++ox) {
                    long long o = ((long long)oz * p.oh + oy) * p.ow + ox;
                    if (is_max) {
                        if (window_argmax(xp, p, oz, oy, ox) == j) s += gp[o];
                    } else {
                        s += gp[o] * inv;
                    }
                }
        gx[i] = s;
    }
}

// ---------------------------------------------------------------- up-sampling
struct UpP {
    long long planes;
    int id, ih, iw, od, oh, ow;
};

// Forward: tables idx/lam hold, per axis (D then H then W), i0[out] then i1[out] / l0[out] then l1[out].
extern "C" __global__ void upsample_fwd(const float* __restrict__ x, float* __restrict__ y,
                                        const int* __restrict__ idx, const float* __restrict__ lam, UpP p) {
    long long in_vol = (long long)p.id * p.ih * p.iw, out_vol = (long long)p.od * p.oh * p.ow;
    const int *zi = idx, *yi = idx + 2 * p.od, *xi = idx + 2 * (p.od + p.oh);
    const float *zl = lam, *yl = lam + 2 * p.od, *xl = lam + 2 * (p.od + p.oh);
    GRID_STRIDE(i, p.planes * out_vol) {
        long long pl = i / out_vol, o = i % out_vol;
        int ox = (int)(o % p.ow), oy = (int)((o / p.ow) % p.oh), oz = (int)(o / ((long long)p.ow * p.oh));
        const float* xp = x + pl * in_vol;
        int z[2] = {zi[oz], zi[p.od + oz]}, yy[2] = {yi[oy], yi[p.oh + oy]}, xx[2] = {xi[ox], xi[p.ow + ox]};
        float a[2] = {zl[oz], zl[p.od + oz]}, b[2] = {yl[oy], yl[p.oh + oy]}, c[2] = {xl[ox], xl[p.ow + ox]};
        float s = 0.0f;
        for (int u = 0; u < 2; ++u) {
            float t = 0.0f;
            for (int v = 0; v < 2; ++v) {
                const float* row = xp + ((long long)z[u] * p.ih + yy[v]) * p.iw;
                t += b[v] * (c[0] * row[xx[0]] + c[1] * row[xx[1]]);
            }
            s += a[u] * t;
        }
        y[i] = s;
    }
}

// Backward as a gather over per-axis inverse tables (CSR): for input index i on an axis,
// entries off[i]..off[i+1] list (output index, weight). off holds the three axes' offsets
// (id+1, ih+1, iw+1 values), ent_o/ent_w the entries.
extern "C" __global__ void upsample_bwd(const float* __restrict__ gy, float* __restrict__ gx,
                                        const int* __restrict__ off, const int* __restrict__ ent_o,
                                        const float* __restrict__ ent_w, UpP p) {
    long long in_vol = (long long)p.id * p.ih * p.iw, out_vol = (long long)p.od * p.oh * p.ow;
    const int *oz_ = off, *oy_ = off + p.id + 1, *ox_ = off + p.id + 1 + p.ih + 1;
    GRID_STRIDE(i, p.planes * in_vol) {
        long long pl = i / in_vol, j = i % in_vol;
        int ix = (int)(j % p.iw), iy = (int)((j / p.iw) % p.ih), iz = (int)(j / ((long long)p.iw * p.ih));
        const float* gp = gy + pl * out_vol;
        float s = 0.0f;
        for (int a = oz_[iz]; a < oz_[iz + 1]; ++a)
            for (int b = oy_[iy]; b < oy_[iy + 1]; ++b) {
                float wab = ent_w[a] * ent_w[b];
                const float* row = gp + ((long long)ent_o[a] * p.oh + ent_o[b]) * p.ow;
                float t = 0.0f;
                for (int c = ox_[ix]; c < ox_[ix + 1]; ++c) t += ent_w[c] * row[ent_o[c]];
                s += wab * t;
            }
        gx[i] = s;
    }
}

// ---------------------------------------------------------------- group norm
struct NormP {
    long long spatial;   // voxels per channel
    int n, c, groups, cg;
    float eps;
};

// Block-wide sum of a double (blockDim.x = 256).
__device__ double block_sum(double v, double* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

// One block per (sample, group): stats[2g] = mean, stats[2g+1] = 1/sqrt(var + eps) (biased).
extern "C" __global__ void gn_stats(const float* __restrict__ x, float* __restrict__ stats, NormP p) {
    __shared__ double sh[256];
    long long m = (long long)p.cg * p.spatial;
    const float* xb = x + blockIdx.x * m;
    double s = 0.0;
    for (long long i = threadIdx.x; i < m; i += blockDim.x) s += xb[i];
    double mean = block_sum(s, sh) / (double)m;
    double v = 0.0;
    for (long long i = threadIdx.x; i < m; i += blockDim.x) { double d = xb[i] - mean; v += d * d; }
    double var = block_sum(v, sh) / (double)m;
    if (threadIdx.x == 0) { stats[2 * blockIdx.x] = (float)mean; stats[2 * blockIdx.x + 1] = (float)(1.0 / sqrt(var + (double)p.eps)); }
}

extern "C" __global__ void gn_fwd(const float* __restrict__ x, const float* __restrict__ gamma,
                                  const float* __restrict__ beta, const float* __restrict__ stats,
                                  float* __restrict__ y, NormP p) {
    GRID_STRIDE(i, (long long)p.n * p.c * p.spatial) {
        long long nc = i / p.spatial;
        int ch = (int)(nc % p.c);
        long long g = nc / p.cg;
        y[i] = (x[i] - stats[2 * g]) * stats[2 * g + 1] * gamma[ch] + beta[ch];
    }
}

// One block per (sample, group): dx = rstd * (gy*gamma - mean(gy*gamma) - xhat * mean(gy*gamma*xhat)).
extern "C" __global__ void gn_dx(const float* __restrict__ x, const float* __restrict__ gamma,
                                 const float* __restrict__ gy, const float* __restrict__ stats,
                                 float* __restrict__ gx, NormP p) {
    __shared__ double sh[256];
    long long m = (long long)p.cg * p.spatial;
    long long base = blockIdx.x * m;
    int c0 = (int)(blockIdx.x % p.groups) * p.cg;
    float mean = stats[2 * blockIdx.x], rstd = stats[2 * blockIdx.x + 1];
    double s1 = 0.0, s2 = 0.0;
    for (long long i = threadIdx.x; i < m; i += blockDim.x) {
        double d = (double)gy[base + i] * gamma[c0 + i / p.spatial];
        s1 += d;
        s2 += d * (x[base + i] - mean) * rstd;
    }
    float m1 = (float)(block_sum(s1, sh) / (double)m), m2 = (float)(block_sum(s2, sh) / (double)m);
    for (long long i = threadIdx.x; i < m; i += blockDim.x) {
        float xh = (x[base + i] - mean) * rstd;
        gx[base + i] = rstd * (gy[base + i] * gamma[c0 + i / p.spatial] - m1 - xh * m2);
    }
}

// One block per channel: out[off + c] = sum gy*xhat, out[C + c] = sum gy (over samples and voxels).
extern "C" __global__ void gn_dparam(const float* __restrict__ x, const float* __restrict__ gy,
                                     const float* __restrict__ stats, float* __restrict__ out,
                                     long long out_off, NormP p) {
    __shared__ double sh[256];
    out += out_off;
    int ch = blockIdx.x;
    double a = 0.0, b = 0.0;
    for (int s = 0; s < p.n; ++s) {
        long long g = ((long long)s * p.c + ch) / p.cg;
        float mean = stats[2 * g], rstd = stats[2 * g + 1];
        long long base = ((long long)s * p.c + ch) * p.spatial;
        for (long long i = threadIdx.x; i < p.spatial; i += blockDim.x) {
            double gv = gy[base + i];
            a += gv * (x[base + i] - mean) * rstd;
            b += gv;
        }
    }
    double ta = block_sum(a, sh), tb = block_sum(b, sh);
    if (threadIdx.x == 0) { out[ch] = (float)ta; out[p.c + ch] = (float)tb; }
}
