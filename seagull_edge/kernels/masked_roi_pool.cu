// Fused masked ROI pooling for SEAGULL's Mask-based Feature Extractor: all feature levels and all
// ROIs of a batch in ONE launch.  Compiled at run time with NVRTC (seagull_edge/kernels/nvrtc.py),
// so this file holds device code only: no host code, no includes except the optional
// <cuda_fp16.h> (see "fp16" below).
//
// Semantics (identical to seagull_edge.model.mask_extractor.mask_pool, per level l):
//   feat_l [B, C_l, H_l, W_l]   masks [B, Q, Hm, Wm]
//   1. if (Hm, Wm) != (H_l, W_l): resize the mask bilinearly exactly as PyTorch's
//      F.interpolate(mode="bilinear", align_corners=False) without antialiasing, per axis:
//        scale = (float)in / (float)out
//        src   = max(scale * (dst + 0.5) - 0.5, 0)      (fp32, every operation rounded, no FMA)
//        i0    = min((int)src, in - 1);  i1 = i0 + (i0 < in - 1);  l1 = src - i0;  l0 = 1 - l1
//        v     = lh0 * (lw0 * x[i0,j0] + lw1 * x[i0,j1]) + lh1 * (lw0 * x[i1,j0] + lw1 * x[i1,j1])
//   2. binarise: m = v > 0
//   3. out_l[b, q, c] = sum_hw feat_l[b, c, h, w] * m[b, q, h, w] / (sum_hw m[b, q, h, w] + 1e-8)
//      (an empty mask gives exactly 0).
//   uint8 masks: nonzero = 1.  Because uint8 values are >= 0, "v > 0" is evaluated exactly as
//   "any corner with a non-zero bilinear weight is non-zero" (no arithmetic, no rounding).
//   float masks: v is computed with the formula above in fp32; for masks >= 0 (ROI masks) the
//   result of "v > 0" does not depend on rounding at all.
//   Non-finite features: a 64-pixel chunk that no ROI of the block's ROI tile covers is skipped
//   (never read), so a NaN/Inf there does not propagate as it would through the stock einsum
//   (0 * NaN); inside a multiplied chunk it propagates as usual.
//
// Memory layout (all arrays dense, C-contiguous, naturally aligned; 16-byte aligned feature
// pointers with H*W a multiple of 4 (fp32) / 8 (fp16) take the vector-load path, anything else
// the slower scalar path).  Pixels are indexed p = h * W + w:
//   feature level l : [B, C_l, H_l, W_l]  fp32 or fp16 (the same dtype for every level)
//   masks           : [B, Q, Hm, Wm]      uint8 or fp32, shared by all levels
//   output level l  : [B, Q, C_l]         same dtype as the features (fp32 accumulation)
//   workspace       : see MrpLevel.partial / MrpLevel.tickets (only when a level is split)
//
// Entry points (extern "C", one per variant, all with the single by-value argument MrpParams):
//   masked_roi_pool_{f32,f16}_{u8,f32}_q{4,16}
//   feature dtype _ mask dtype _ ROI tile TQ (ROIs per block).  q4 suits Q <= 4, q16 larger Q.
//
// Launch configuration:
//   blockDim = (256, 1, 1), no dynamic shared memory (static shared memory: 20756 B for q4,
//   26948 B for q16; __launch_bounds__(256, 2): <= 128 registers, no spills with NVRTC 13.0 for
//   sm_75/87/90), gridDim = (sum over levels of level[l].block_count, 1, 1).
//   Block ids are assigned to levels contiguously: level l owns
//   [block_begin, block_begin + block_count) with
//   block_count = B * q_tiles * c_tiles * splits and, inside a level,
//   local = ((b * splits + s) * c_tiles + ct) * q_tiles + qt      (qt fastest).
//   A block computes out[b, qt*TQ : qt*TQ+TQ, ct*64 : ct*64+64] of its level over the pixel range
//   [s*split_len, min((s+1)*split_len, H*W)).
//
// Block algorithm (TC = 64 channels, TK = 64 pixels per chunk, 256 threads):
//   for each 64-pixel chunk of the block's pixel range:
//     - every thread evaluates the binarised, resized mask of TQ/4 ROIs at one pixel straight from
//       the full-resolution mask (4 taps), counts it, and the block votes whether the TQ x 64 mask
//       tile has any non-zero element (__syncthreads_or); an all-zero chunk is skipped, its
//       features are never read;
//     - the 64 x 64 feature tile is read coalesced (16-byte vector loads when H*W and the pointer
//       allow it, otherwise scalar loads), converted to fp32 and stored in shared memory; the
//       loads of chunk n+1 are issued before the arithmetic of chunk n (register prefetch; the
//       scalar fallback loads synchronously);
//     - register-tiled product: thread (cg = lane, kg = warp) owns channels cg and cg + 32 and
//       all TQ ROIs for the pixels kg + 8*i (i < 8) of the chunk:
//       acc[q][j] += m[q][k] * f[c][k]  (fp32, m in {0, 1}: exact products); per pixel a warp
//       reads 2 conflict-free feature words and TQ/4 broadcast 128-bit mask words.
//   The 8 warps' partial tiles are reduced in shared memory in a fixed order (deterministic),
//   the mask counts with integer shared atomics, and the block writes its tile.
//   Shared memory: feature tile [64][64 + 1] fp32 (odd stride: conflict-free), two mask tiles
//   [64][TQ + 4] fp32 (pad 4: 16-byte aligned rows, conflict-free 128-bit stores; tile n+1 is
//   evaluated while tile n is multiplied), reused as the reduction buffer [4][TQ][64] fp32.
//
// Split levels (splits > 1; the host splits large levels so that the grid fills the GPU even for
// Q = 1): each block writes its un-normalised partial sums and mask counts to the workspace,
// then increments the tile's ticket; the block that draws the last ticket sums the partials in
// split order (deterministic, independent of which block finishes last), normalises, writes the
// output and resets the ticket to 0.  Tickets must be zero before the launch (the kernel leaves
// them zero when it completes); partials need no initialisation.
//
// fp16: define SEAGULL_MRP_HAVE_CUDA_FP16 (and put the CUDA include directory on the include path)
// to convert with <cuda_fp16.h>; otherwise the conversions are the same single PTX instructions
// written inline (cvt.f32.f16 / cvt.rn.f16.f32), which needs no header with any NVRTC.  Both give
// bit-identical results.  SEAGULL_MRP_CUSTOM_HALF lets a host-side emulation supply
// mrp_h2f / mrp_f2h itself (used by the CPU tests).

#if defined(SEAGULL_MRP_HAVE_CUDA_FP16) && !defined(SEAGULL_MRP_CUSTOM_HALF)
#include <cuda_fp16.h>
#endif

#ifndef SEAGULL_MRP_MAX_LEVELS
#define SEAGULL_MRP_MAX_LEVELS 4
#endif

#define MRP_THREADS 256
#define MRP_TC 64              // channels per block tile
#define MRP_TK 64              // pixels per chunk
#define MRP_CG 32              // channel lanes (threads along channels) = one warp
#define MRP_KG 8               // pixel groups (threads along pixels) = the 8 warps
#define MRP_CPT 2              // channels per thread = MRP_TC / MRP_CG
#define MRP_KPT 8              // pixels per thread per chunk = MRP_TK / MRP_KG
#define MRP_SF_STRIDE (MRP_TK + 1)
#define MRP_RED_SLOTS (MRP_KG / 2)

// ---------------------------------------------------------------------------------------------
// Parameters.  Host mirror: seagull_edge/kernels/nvrtc.py (_MrpLevel / _MrpParams, ctypes).
// Only 8-byte pointers and 4-byte ints, in an order without implicit padding:
// sizeof(MrpLevel) = 64, sizeof(MrpParams) = 64 * SEAGULL_MRP_MAX_LEVELS + 32 = 288.
struct MrpLevel {
    const void* feat;         // [B, C, H, W]
    void* out;                // [B, Q, C]
    float* partial;           // splits > 1: sums [splits][B][Q][C], then counts [splits][B][c_tiles][Q]
    unsigned int* tickets;    // splits > 1: [B][q_tiles][c_tiles], zero before the launch
    int C, H, W;
    int splits;               // >= 1
    int split_len;            // pixels per split, a multiple of MRP_TK
    int c_tiles;              // ceil(C / MRP_TC)
    int block_begin;          // first block id of this level
    int block_count;          // B * q_tiles * c_tiles * splits (0: level unused)
};

struct MrpParams {
    MrpLevel level[SEAGULL_MRP_MAX_LEVELS];
    const void* mask;         // [B, Q, Hm, Wm]
    int B, Q, Hm, Wm;
    int q_tiles;              // ceil(Q / TQ) for the entry point launched
    int num_levels;           // <= SEAGULL_MRP_MAX_LEVELS
};

// ---------------------------------------------------------------------------------------------
// fp16 <-> fp32 on raw 16-bit patterns.
#if defined(SEAGULL_MRP_CUSTOM_HALF)
// supplied by the includer: float mrp_h2f(unsigned short); unsigned short mrp_f2h(float);
#elif defined(SEAGULL_MRP_HAVE_CUDA_FP16)
__device__ __forceinline__ float mrp_h2f(unsigned short b) { return __half2float(__ushort_as_half(b)); }
__device__ __forceinline__ unsigned short mrp_f2h(float f) { return __half_as_ushort(__float2half_rn(f)); }
#else
__device__ __forceinline__ float mrp_h2f(unsigned short b) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(b));
    return f;
}
__device__ __forceinline__ unsigned short mrp_f2h(float f) {
    unsigned short b;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(b) : "f"(f));
    return b;
}
#endif

__device__ __forceinline__ int mrp_imin(int a, int b) { return a < b ? a : b; }

// Feature element traits: the storage type, elements per 16-byte vector, and conversions of the
// raw bits (held in 32-bit words) to fp32.
template <typename T> struct MrpFeat;

template <> struct MrpFeat<float> {
    static constexpr int EPW = 1;   // elements per 32-bit word
    __device__ static __forceinline__ unsigned int load_bits(const float* p) { return __float_as_uint(*p); }
    __device__ static __forceinline__ float word_to_float(unsigned int w, int /*sub*/) { return __uint_as_float(w); }
    __device__ static __forceinline__ void store(float* p, float v) { *p = v; }
};

template <> struct MrpFeat<unsigned short> {  // fp16 bit patterns
    static constexpr int EPW = 2;
    __device__ static __forceinline__ unsigned int load_bits(const unsigned short* p) { return (unsigned int)(*p); }
    __device__ static __forceinline__ float word_to_float(unsigned int w, int sub) {
        return mrp_h2f((unsigned short)(sub ? (w >> 16) : (w & 0xffffu)));
    }
    __device__ static __forceinline__ void store(unsigned short* p, float v) { *p = mrp_f2h(v); }
};

// Per-pixel sampling geometry of the resized mask: four tap offsets into one ROI's mask plane and
// the bilinear weights (ATen's formula, see the header).
struct MrpTap {
    int o00, o01, o10, o11;
    float lh0, lh1, lw0, lw1;
};

__device__ __forceinline__ void mrp_axis(int dst, int in_size, float scale,
                                         int& i0, int& i1, float& l0, float& l1) {
    float src = __fsub_rn(__fmul_rn(scale, __fadd_rn((float)dst, 0.5f)), 0.5f);
    if (src < 0.0f) src = 0.0f;
    int i = (int)src;                       // src >= 0: truncation == floor
    i = mrp_imin(i, in_size - 1);
    i0 = i;
    i1 = i + ((i < in_size - 1) ? 1 : 0);
    l1 = __fsub_rn(src, (float)i);
    l0 = __fsub_rn(1.0f, l1);
}

__device__ __forceinline__ float mrp_sample(const unsigned char* __restrict__ m, const MrpTap& t) {
    // uint8 masks are >= 0: the bilinear value is > 0 iff a tap with a non-zero weight is non-zero.
    unsigned int v = m[t.o00];
    if (t.lw1 > 0.0f) v |= m[t.o01];
    if (t.lh1 > 0.0f) {
        v |= m[t.o10];
        if (t.lw1 > 0.0f) v |= m[t.o11];
    }
    return v ? 1.0f : 0.0f;
}

// Same size: no interpolation at all (mask_pool skips F.interpolate), just the threshold.
__device__ __forceinline__ float mrp_direct(const unsigned char* __restrict__ m, int o) { return m[o] ? 1.0f : 0.0f; }
__device__ __forceinline__ float mrp_direct(const float* __restrict__ m, int o) { return m[o] > 0.0f ? 1.0f : 0.0f; }

__device__ __forceinline__ float mrp_sample(const float* __restrict__ m, const MrpTap& t) {
    const float x00 = m[t.o00], x01 = m[t.o01], x10 = m[t.o10], x11 = m[t.o11];
    const float top = __fadd_rn(__fmul_rn(t.lw0, x00), __fmul_rn(t.lw1, x01));
    const float bot = __fadd_rn(__fmul_rn(t.lw0, x10), __fmul_rn(t.lw1, x11));
    const float v = __fadd_rn(__fmul_rn(t.lh0, top), __fmul_rn(t.lh1, bot));
    return v > 0.0f ? 1.0f : 0.0f;
}

// ---------------------------------------------------------------------------------------------
template <typename FT, typename MT, int TQ>
__device__ __forceinline__ void mrp_body(const MrpParams& p) {
    typedef MrpFeat<FT> F;
    constexpr int QPT = TQ * MRP_TK / MRP_THREADS;   // ROIs per thread in the mask evaluation
    constexpr int SM_STRIDE = TQ + 4;                // mask tile row (one pixel): TQ ROIs + pad
    constexpr int V = 16 / (int)sizeof(FT);          // elements per 16-byte vector
    constexpr int NVEC = MRP_TC * MRP_TK / V / MRP_THREADS;  // vectors per thread per tile
    constexpr int NSCAL = MRP_TC * MRP_TK / MRP_THREADS;     // scalars per thread per tile (16)
    constexpr int SM_TILE = MRP_TK * SM_STRIDE;               // one mask tile buffer
    constexpr int SMEM_TILES = MRP_TC * MRP_SF_STRIDE + 2 * SM_TILE;
    constexpr int SMEM_RED = MRP_RED_SLOTS * TQ * MRP_TC;
    constexpr int SMEM = SMEM_TILES > SMEM_RED ? SMEM_TILES : SMEM_RED;
    constexpr int OUT_PT = TQ * MRP_TC / MRP_THREADS;        // outputs per thread in the epilogue
    static_assert(TQ % 4 == 0 && QPT >= 1 && (QPT == 1 || QPT % 4 == 0), "TQ must be 4 or a multiple of 16");
    static_assert(OUT_PT >= 1, "TQ * 64 must be a multiple of 256");

    __shared__ __align__(16) float smem[SMEM];
    __shared__ int s_cnt[TQ];
    __shared__ int s_last;
    float* const sF = smem;                                  // [MRP_TC][MRP_SF_STRIDE]
    float* const sM = smem + MRP_TC * MRP_SF_STRIDE;         // [2][MRP_TK][SM_STRIDE] (double buffer)
    float* const sR = smem;                                  // [MRP_RED_SLOTS][TQ][MRP_TC]

    const int tid = (int)threadIdx.x;
    const int bid = (int)blockIdx.x;

    // ---- which level, which tile (block-uniform) ----
    int lv = -1;
#pragma unroll
    for (int i = 0; i < SEAGULL_MRP_MAX_LEVELS; ++i) {
        if (i < p.num_levels && bid >= p.level[i].block_begin &&
            bid < p.level[i].block_begin + p.level[i].block_count) lv = i;
    }
    if (lv < 0) return;
    MrpLevel L = p.level[0];
#pragma unroll
    for (int i = 1; i < SEAGULL_MRP_MAX_LEVELS; ++i) if (i == lv) L = p.level[i];

    const int B = p.B, Q = p.Q, Hm = p.Hm, Wm = p.Wm;
    const int C = L.C, H = L.H, W = L.W, HW = H * W;
    int local = bid - L.block_begin;
    const int qt = local % p.q_tiles; local /= p.q_tiles;
    const int ct = local % L.c_tiles; local /= L.c_tiles;
    const int s = local % L.splits;
    const int b = local / L.splits;
    const int q0 = qt * TQ, c0 = ct * MRP_TC;
    const int p_begin = s * L.split_len;
    const int p_end = mrp_imin(p_begin + L.split_len, HW);
    const int n_chunks = (p_end - p_begin + MRP_TK - 1) / MRP_TK;

    const FT* __restrict__ feat = (const FT*)L.feat + ((size_t)b * C + c0) * (size_t)HW;  // row c0
    const int c_valid = mrp_imin(MRP_TC, C - c0);
    const bool vec_ok = (HW % V == 0) && ((((size_t)L.feat) & 15) == 0);
    const MT* __restrict__ mask_b = (const MT*)p.mask + (size_t)b * Q * Hm * Wm;
    const size_t plane = (size_t)Hm * Wm;
    const float scale_h = (float)Hm / (float)H;
    const float scale_w = (float)Wm / (float)W;
    const bool resize = (Hm != H) || (Wm != W);

    // mask evaluation role: one pixel (k_m) and QPT consecutive ROIs (qg * QPT + j)
    const int k_m = tid % MRP_TK;
    const int qg = tid / MRP_TK;
    // product role
    const int cg = tid % MRP_CG;
    const int kg = tid / MRP_CG;

    if (tid < TQ) s_cnt[tid] = 0;

    float acc[TQ][MRP_CPT];
#pragma unroll
    for (int q = 0; q < TQ; ++q)
#pragma unroll
        for (int j = 0; j < MRP_CPT; ++j) acc[q][j] = 0.0f;
    int cnt[QPT];
#pragma unroll
    for (int j = 0; j < QPT; ++j) cnt[j] = 0;

    unsigned int raw[4 * NVEC];  // feature tile bits in flight (vector path)

    // -- evaluate the mask tile of the chunk starting at pixel p0 into sM buffer `buf`;
    //    returns whether this thread saw a non-zero value --
    auto eval_mask = [&](int p0, int buf) -> int {
        const int pix = p0 + k_m;
        int any = 0;
        float mv[QPT];
#pragma unroll
        for (int j = 0; j < QPT; ++j) mv[j] = 0.0f;
        if (pix < p_end) {
            const int h = pix / W;
            const int w = pix - h * W;
            MrpTap t;
            if (resize) {
                int h0, h1, w0, w1;
                mrp_axis(h, Hm, scale_h, h0, h1, t.lh0, t.lh1);
                mrp_axis(w, Wm, scale_w, w0, w1, t.lw0, t.lw1);
                t.o00 = h0 * Wm + w0; t.o01 = h0 * Wm + w1;
                t.o10 = h1 * Wm + w0; t.o11 = h1 * Wm + w1;
            } else {
                t.o00 = t.o01 = t.o10 = t.o11 = h * Wm + w;
                t.lh0 = t.lw0 = 1.0f; t.lh1 = t.lw1 = 0.0f;
            }
#pragma unroll
            for (int j = 0; j < QPT; ++j) {
                const int q = q0 + qg * QPT + j;
                if (q < Q) {
                    const MT* mq = mask_b + (size_t)q * plane;
                    const float v = resize ? mrp_sample(mq, t) : mrp_direct(mq, t.o00);
                    mv[j] = v;
                    cnt[j] += (v != 0.0f) ? 1 : 0;
                    any |= (v != 0.0f) ? 1 : 0;
                }
            }
        }
        float* dst = sM + buf * SM_TILE + k_m * SM_STRIDE + qg * QPT;
        if (QPT % 4 == 0) {
#pragma unroll
            for (int j = 0; j < QPT; j += 4)
                *reinterpret_cast<float4*>(dst + j) = make_float4(mv[j], mv[(j + 1) % QPT], mv[(j + 2) % QPT], mv[(j + 3) % QPT]);
        } else {
#pragma unroll
            for (int j = 0; j < QPT; ++j) dst[j] = mv[j];
        }
        return any;
    };

    // -- issue the global loads of the feature tile starting at pixel p0 into raw[] --
    auto load_feat = [&](int p0) {
        if (vec_ok) {
#pragma unroll
            for (int r = 0; r < NVEC; ++r) {
                const int v = tid + MRP_THREADS * r;
                const int c = v / (MRP_TK / V);
                const int kk = (v % (MRP_TK / V)) * V;
                uint4 u = make_uint4(0u, 0u, 0u, 0u);
                if (c < c_valid && p0 + kk < p_end)
                    u = *reinterpret_cast<const uint4*>(feat + (size_t)c * HW + p0 + kk);
                raw[4 * r + 0] = u.x; raw[4 * r + 1] = u.y; raw[4 * r + 2] = u.z; raw[4 * r + 3] = u.w;
            }
        }
        // scalar path: loaded synchronously in store_tiles (fallback for odd sizes / alignment)
    };

    // -- raw[] (or, scalar path, global memory) -> sF (fp32) --
    auto store_tiles = [&](int p0) {
        if (vec_ok) {
#pragma unroll
            for (int r = 0; r < NVEC; ++r) {
                const int v = tid + MRP_THREADS * r;
                const int c = v / (MRP_TK / V);
                const int kk = (v % (MRP_TK / V)) * V;
#pragma unroll
                for (int e = 0; e < V; ++e)
                    sF[c * MRP_SF_STRIDE + kk + e] = F::word_to_float(raw[4 * r + e / F::EPW], e % F::EPW);
            }
        } else {
#pragma unroll 4
            for (int r = 0; r < NSCAL; ++r) {
                const int e = tid + MRP_THREADS * r;
                const int c = e / MRP_TK;
                const int kk = e % MRP_TK;
                const unsigned int bits =
                    (c < c_valid && p0 + kk < p_end) ? F::load_bits(feat + (size_t)c * HW + p0 + kk) : 0u;
                sF[c * MRP_SF_STRIDE + kk] = F::word_to_float(bits, 0);
            }
        }
    };

    // ---- main loop: chunk n is stored and multiplied while the loads of chunk n+1 are in flight;
    //      mask tile n+1 is evaluated into the other sM buffer meanwhile.
    int any_cur = 0;
    if (n_chunks > 0) {
        any_cur = __syncthreads_or(eval_mask(p_begin, 0));
        if (any_cur) load_feat(p_begin);
    }
    for (int n = 0; n < n_chunks; ++n) {
        __syncthreads();                       // the previous product is done with sF / sM[(n+1)&1]
        if (any_cur) store_tiles(p_begin + n * MRP_TK);
        __syncthreads();
        const int any_now = any_cur;
        if (n + 1 < n_chunks) {
            const int p_next = p_begin + (n + 1) * MRP_TK;
            any_cur = __syncthreads_or(eval_mask(p_next, (n + 1) & 1));
            if (any_cur) load_feat(p_next);
        }
        if (any_now) {
#pragma unroll
            for (int i = 0; i < MRP_KPT; ++i) {
                const int k = kg + MRP_KG * i;
                float f[MRP_CPT];
#pragma unroll
                for (int j = 0; j < MRP_CPT; ++j) f[j] = sF[(cg + MRP_CG * j) * MRP_SF_STRIDE + k];
                const float* mrow = sM + (n & 1) * SM_TILE + k * SM_STRIDE;
#pragma unroll
                for (int g = 0; g < TQ; g += 4) {
                    const float4 m4 = *reinterpret_cast<const float4*>(mrow + g);
#pragma unroll
                    for (int j = 0; j < MRP_CPT; ++j) {
                        acc[g + 0][j] = fmaf(m4.x, f[j], acc[g + 0][j]);
                        acc[g + 1][j] = fmaf(m4.y, f[j], acc[g + 1][j]);
                        acc[g + 2][j] = fmaf(m4.z, f[j], acc[g + 2][j]);
                        acc[g + 3][j] = fmaf(m4.w, f[j], acc[g + 3][j]);
                    }
                }
            }
        }
    }

    // ---- reduce the 16 pixel groups (fixed order) and the counts ----
#pragma unroll
    for (int j = 0; j < QPT; ++j)
        if (cnt[j]) atomicAdd(&s_cnt[qg * QPT + j], cnt[j]);
    __syncthreads();                           // products done: smem becomes the reduction buffer
    if (kg >= MRP_RED_SLOTS) {
#pragma unroll
        for (int q = 0; q < TQ; ++q)
#pragma unroll
            for (int j = 0; j < MRP_CPT; ++j)
                sR[((kg - MRP_RED_SLOTS) * TQ + q) * MRP_TC + cg + MRP_CG * j] = acc[q][j];
    }
    __syncthreads();
    if (kg < MRP_RED_SLOTS) {
#pragma unroll
        for (int q = 0; q < TQ; ++q)
#pragma unroll
            for (int j = 0; j < MRP_CPT; ++j) {
                float* r = &sR[(kg * TQ + q) * MRP_TC + cg + MRP_CG * j];
                *r = acc[q][j] + *r;
            }
    }
    __syncthreads();
    float tot[OUT_PT];
#pragma unroll
    for (int r = 0; r < OUT_PT; ++r) {
        const int idx = tid + MRP_THREADS * r;   // idx = q * MRP_TC + c
        float v = 0.0f;
#pragma unroll
        for (int sl = 0; sl < MRP_RED_SLOTS; ++sl) v += sR[sl * TQ * MRP_TC + idx];
        tot[r] = v;
    }

    FT* __restrict__ out = (FT*)L.out;
    if (L.splits == 1) {
#pragma unroll
        for (int r = 0; r < OUT_PT; ++r) {
            const int idx = tid + MRP_THREADS * r;
            const int q = idx / MRP_TC, c = idx % MRP_TC;
            if (q0 + q < Q && c < c_valid) {
                const float inv = 1.0f / ((float)s_cnt[q] + 1e-8f);
                F::store(out + ((size_t)b * Q + q0 + q) * C + c0 + c, tot[r] * inv);
            }
        }
        return;
    }

    // ---- split level: publish the partial tile, the last block of the tile finishes it ----
    float* __restrict__ psum = L.partial;                                   // [S][B][Q][C]
    float* __restrict__ pcnt = L.partial + (size_t)L.splits * B * Q * C;    // [S][B][c_tiles][Q]
#pragma unroll
    for (int r = 0; r < OUT_PT; ++r) {
        const int idx = tid + MRP_THREADS * r;
        const int q = idx / MRP_TC, c = idx % MRP_TC;
        if (q0 + q < Q && c < c_valid)
            psum[(((size_t)s * B + b) * Q + q0 + q) * C + c0 + c] = tot[r];
    }
    if (tid < TQ && q0 + tid < Q)
        pcnt[(((size_t)s * B + b) * L.c_tiles + ct) * Q + q0 + tid] = (float)s_cnt[tid];
    __threadfence();
    __syncthreads();
    unsigned int* ticket = L.tickets + ((size_t)b * p.q_tiles + qt) * L.c_tiles + ct;
    if (tid == 0) s_last = (atomicAdd(ticket, 1u) == (unsigned int)(L.splits - 1)) ? 1 : 0;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    if (tid < TQ) {
        float n = 0.0f;
        if (q0 + tid < Q)
            for (int sp = 0; sp < L.splits; ++sp)
                n += __ldcg(pcnt + (((size_t)sp * B + b) * L.c_tiles + ct) * Q + q0 + tid);
        s_cnt[tid] = (int)n;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < OUT_PT; ++r) {
        const int idx = tid + MRP_THREADS * r;
        const int q = idx / MRP_TC, c = idx % MRP_TC;
        if (q0 + q < Q && c < c_valid) {
            float v = 0.0f;
            for (int sp = 0; sp < L.splits; ++sp)
                v += __ldcg(psum + (((size_t)sp * B + b) * Q + q0 + q) * C + c0 + c);
            const float inv = 1.0f / ((float)s_cnt[q] + 1e-8f);
            F::store(out + ((size_t)b * Q + q0 + q) * C + c0 + c, v * inv);
        }
    }
    if (tid == 0) atomicExch(ticket, 0u);
}

#define SEAGULL_MRP_ENTRY(NAME, FT, MT, TQ)                                                      \
    extern "C" __global__ void __launch_bounds__(MRP_THREADS, 2) NAME(const MrpParams p) {      \
        mrp_body<FT, MT, TQ>(p);                                                                 \
    }

SEAGULL_MRP_ENTRY(masked_roi_pool_f32_u8_q4, float, unsigned char, 4)
SEAGULL_MRP_ENTRY(masked_roi_pool_f32_u8_q16, float, unsigned char, 16)
SEAGULL_MRP_ENTRY(masked_roi_pool_f32_f32_q4, float, float, 4)
SEAGULL_MRP_ENTRY(masked_roi_pool_f32_f32_q16, float, float, 16)
SEAGULL_MRP_ENTRY(masked_roi_pool_f16_u8_q4, unsigned short, unsigned char, 4)
SEAGULL_MRP_ENTRY(masked_roi_pool_f16_u8_q16, unsigned short, unsigned char, 16)
SEAGULL_MRP_ENTRY(masked_roi_pool_f16_f32_q4, unsigned short, float, 4)
SEAGULL_MRP_ENTRY(masked_roi_pool_f16_f32_q16, unsigned short, float, 16)
