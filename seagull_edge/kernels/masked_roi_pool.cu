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
//   Sums: fp32, each block adds its pixels in a fixed order and split levels add their partial
//   sums in split order, so a launch is deterministic (the same bits for the same inputs and plan).
//   Non-finite features: a 64-pixel chunk that no ROI of the block's ROI tile covers is skipped
//   (never multiplied), so a NaN/Inf there does not propagate as it would through the stock einsum
//   (0 * NaN); inside a multiplied chunk it propagates as usual.  (The q4/q8 variants fetch the
//   first chunk of each mask window before its mask is known, to overlap the two memory round
//   trips; when that chunk turns out empty the fetched values are dropped unused.)
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
//   masked_roi_pool_{f32,f16}_{u8,f32}_q{4,8,16}
//   feature dtype _ mask dtype _ ROI tile TQ (ROIs per block).  q4 suits Q <= 4, q8 Q <= 8,
//   q16 larger Q (a tile's absent ROIs cost arithmetic; a larger tile reads each feature tile
//   once for more ROIs).
//
// Launch configuration:
//   blockDim = (256, 1, 1), no dynamic shared memory (static shared memory: 27992 B for q4,
//   30056 B for q8, 34184 B for q16), __launch_bounds__(256, 2): <= 128 registers, no spills
//   with NVRTC 13.0 for sm_87 and sm_90 (sm_75: one fp32 q16 variant spills 48 bytes; sm_90's two
//   fp32 q16 variants sit at the cap, and ptxas spills 24-28 bytes in ~1 of 8 compiles), so two
//   blocks per SM (nvrtc.BLOCKS_PER_SM; the tests check it against ptxas' report),
//   gridDim = (sum over levels of level[l].block_count, 1, 1).
//   Block ids are assigned to levels contiguously: level l owns
//   [block_begin, block_begin + block_count) with
//   block_count = B * q_tiles * c_tiles * splits and, inside a level,
//   local = ((b * splits + s) * c_tiles + ct) * q_tiles + qt      (qt fastest).
//   A block computes out[b, qt*TQ : qt*TQ+TQ, ct*64 : ct*64+64] of its level over the pixel range
//   [s*split_len, min((s+1)*split_len, H*W)).
//
// Block algorithm (TC = 64 channels, TK = 64 pixels per chunk, 256 threads).  The block walks its
// pixel range in mask windows of up to MRP_WIN = 32 chunks (2048 pixels).  The point of the
// structure: no memory round trip waits on another one unless it must, because with a block or
// two per SM the kernel's time is the length of its longest chain of dependent round trips.
//   window prologue:
//     - q4/q8: the feature loads of the window's first chunk are issued at once (speculatively);
//     - every thread evaluates the binarised, resized mask of TQ/4 ROIs at one pixel of every
//       chunk of the window straight from the full-resolution mask (4 taps, branch-free, the taps
//       of MRP_PRO_U_Q* chunks in flight together and those of the chunk MRP_PF_DIST ahead
//       prefetched into L1; see mrp_mask_window), counts it and keeps the bits in shared memory
//       (one byte per pixel and group of TQ/4 ROIs);
//     - the block votes which chunks have any non-zero mask element (__syncthreads_or per
//       chunk); all-zero chunks are skipped: their features are never multiplied;
//   then, for each non-empty chunk of the window:
//     - the 64 x 64 feature tile (its loads issued one iteration earlier) is converted to fp32
//       and stored in shared memory; the chunk's mask bits are expanded to a 64 x TQ fp32 tile;
//     - the loads of the next non-empty chunk are issued (they fly during the product below);
//     - register-tiled product: thread (cg = lane, kg = warp) owns channels cg and cg + 32 and
//       all TQ ROIs for the pixels kg + 8*i (i < 8) of the chunk:
//       acc[q][j] += m[q][k] * f[c][k]  (fp32, m in {0, 1}: exact products); per pixel a warp
//       reads 2 conflict-free feature words and TQ/4 broadcast 128-bit mask words.
//   The 8 warps' partial tiles are reduced in shared memory in a fixed order (deterministic),
//   the mask counts with integer shared atomics, and the block writes its tile.
//   Shared memory: feature tile [64][64 + 1] fp32 (odd stride: conflict-free), mask tile
//   [64][TQ + 4] fp32 (pad 4: 16-byte aligned rows), reused as the reduction buffer
//   [4][TQ][64] fp32; mask window bits [32][64][4] bytes; per-thread mask counts; the block's
//   MrpLevel (the epilogue reads its pointers there rather than keeping them in registers).
//
// Split levels (splits > 1; the host splits large levels so that the grid fills the GPU even for
// Q = 1): each block writes its un-normalised partial sums and mask counts to the workspace,
// then increments the tile's ticket; the block that draws the last ticket sums the partials in
// split order (deterministic, independent of which block finishes last; the loads of MRP_FIN_Q*
// splits are in flight at once, so it waits ceil(splits / MRP_FIN_Q*) L2 round trips),
// normalises, writes the output and resets the ticket to 0.  Tickets must be zero before the
// launch (the kernel leaves them zero when it completes); partials need no initialisation.
//
// fp16: define SEAGULL_MRP_HAVE_CUDA_FP16 (and put the CUDA include directory on the include path)
// to convert with <cuda_fp16.h>; otherwise the conversions are the same single PTX instructions
// written inline (cvt.f32.f16 / cvt.rn.f16.f32), which needs no header with any NVRTC.  Both give
// bit-identical results.  SEAGULL_MRP_CUSTOM_HALF lets a host-side emulation supply
// mrp_h2f / mrp_f2h itself, SEAGULL_MRP_CUSTOM_PREFETCH mrp_prefetch (used by the CPU tests).

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
#define MRP_QG (MRP_THREADS / MRP_TK)  // ROI groups in the mask evaluation (4)
#define MRP_WIN 32             // chunks per mask window (one bit each in a 32-bit vote mask)
#ifndef MRP_PF_DIST
#define MRP_PF_DIST 4          // a window prologue prefetches the mask taps this many chunks ahead
#endif
// Per ROI tile TQ: the chunks whose mask taps a window prologue has in flight at once (PRO_U; the
// taps of one chunk are QPT * 4 loads per thread), and the splits whose partials the finishing
// block of a split tile loads at once (FIN; FIN * TQ / 4 loads per thread).  The largest values
// with which NVRTC 13.0 compiles every entry point for sm_87 and sm_90 without register spills
// under __launch_bounds__(256, 2) (nvrtc.FIN_SPLITS mirrors MRP_FIN_*; the override hooks are for
// tuning experiments only).
#ifndef MRP_PRO_U_Q4
#define MRP_PRO_U_Q4 4
#endif
#ifndef MRP_PRO_U_Q8
#define MRP_PRO_U_Q8 1
#endif
#ifndef MRP_PRO_U_Q16
#define MRP_PRO_U_Q16 1
#endif
#ifndef MRP_FIN_Q4
#define MRP_FIN_Q4 8
#endif
#ifndef MRP_FIN_Q8
#define MRP_FIN_Q8 8
#endif
#ifndef MRP_FIN_Q16
#define MRP_FIN_Q16 8
#endif

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
    // All four taps are loaded unconditionally (every offset is inside the plane) and the weights
    // only select: loads guarded by "if (weight > 0)" compile to branches that serialise the taps
    // into one L2 round trip each, which is what made the mask the critical path before.
    const unsigned int x00 = m[t.o00], x01 = m[t.o01], x10 = m[t.o10], x11 = m[t.o11];
    const unsigned int top = x00 | (t.lw1 > 0.0f ? x01 : 0u);
    const unsigned int bot = x10 | (t.lw1 > 0.0f ? x11 : 0u);
    return (top | (t.lh1 > 0.0f ? bot : 0u)) ? 1.0f : 0.0f;
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

// The output tile of block `bid` in its level (see "Launch configuration" above).
struct MrpTile {
    int b, s, ct, qt;
};

__device__ __forceinline__ MrpTile mrp_tile(int bid, const MrpLevel& L, int q_tiles) {
    int local = bid - L.block_begin;
    MrpTile t;
    t.qt = local % q_tiles; local /= q_tiles;
    t.ct = local % L.c_tiles; local /= L.c_tiles;
    t.s = local % L.splits;
    t.b = local / L.splits;
    return t;
}

// Sampling geometry of pixel pix of a level (H x W) in the masks (Hm x Wm); pixels at or past
// p_end are clamped to p_end - 1 (a valid address; the caller masks them out).
template <bool RESIZE>
__device__ __forceinline__ MrpTap mrp_geom(int pix, int p_end, int W, int Hm, int Wm, float scale_h,
                                          float scale_w) {
    const int pc = pix < p_end ? pix : p_end - 1;
    const int h = pc / W;
    const int w = pc - h * W;
    MrpTap t;
    if (RESIZE) {
        int h0, h1, w0, w1;
        mrp_axis(h, Hm, scale_h, h0, h1, t.lh0, t.lh1);
        mrp_axis(w, Wm, scale_w, w0, w1, t.lw0, t.lw1);
        t.o00 = h0 * Wm + w0; t.o01 = h0 * Wm + w1;
        t.o10 = h1 * Wm + w0; t.o11 = h1 * Wm + w1;
    } else {
        t.o00 = t.o01 = t.o10 = t.o11 = h * Wm + w;
        t.lh0 = t.lw0 = 1.0f; t.lh1 = t.lw1 = 0.0f;
    }
    return t;
}

// Ask for the cache lines of a mask tap in L1 without waiting for them (no register holds the
// result; the load that follows a few chunks later then hits L1).
#if !defined(SEAGULL_MRP_CUSTOM_PREFETCH)
__device__ __forceinline__ void mrp_prefetch(const void* p) { asm volatile("prefetch.L1 [%0];" :: "l"(p)); }
#endif

// The mask pass of a window prologue for one thread: pixel pix0 + 64 * jw of chunk jw (jw < nw)
// and the QPT ROIs q_first .. q_first + QPT - 1.  Writes chunk jw's bits (bit j: ROI q_first + j)
// to sb[jw * MRP_TK * MRP_QG], adds the counts to this thread's slots tcnt[j * MRP_THREADS] and
// returns bit jw = "some bit of chunk jw was set".
// Latency: every tap is a dependent L2 round trip unless its load is issued before the previous
// chunk's results are used.  So the loop is branch-free (pixels past p_end and ROIs past Q read a
// valid, clamped address and are masked afterwards: an "if (weight > 0) load" or "if (q < Q)"
// compiles to a branch that serialises the taps), U chunks are unrolled together (U * QPT * 4
// loads in flight, as many as the register budget allows), and the taps of chunk jw +
// MRP_PF_DIST are prefetched into L1 while chunk jw is evaluated (PF), so that the chain of
// dependent round trips mostly runs at L1 latency.
template <typename MT, int QPT, int U, bool RESIZE, bool PF>
__device__ __forceinline__ unsigned int mrp_mask_window(const MT* __restrict__ mask_b, int Q, int Hm, int Wm,
                                                        int H, int W, int q_first, int pix0, int p_end,
                                                        int nw, unsigned char* sb, int* tcnt) {
    const size_t plane = (size_t)Hm * Wm;
    const float scale_h = (float)Hm / (float)H;
    const float scale_w = (float)Wm / (float)W;
    auto prefetch_chunk = [&](int jw) {
        const MrpTap t = mrp_geom<RESIZE>(pix0 + jw * MRP_TK, p_end, W, Hm, Wm, scale_h, scale_w);
#pragma unroll
        for (int j = 0; j < QPT; ++j) {
            const MT* mq = mask_b + (size_t)mrp_imin(q_first + j, Q - 1) * plane;
            mrp_prefetch(mq + t.o00);                  // (o01 is the next byte: nearly always
            if (RESIZE) mrp_prefetch(mq + t.o10);      //  the same cache line; likewise o11)
        }
    };
    if (PF)
        for (int jw = 0; jw < MRP_PF_DIST && jw < nw; ++jw) prefetch_chunk(jw);
    unsigned int mine = 0u;
    int cnt[QPT];
#pragma unroll
    for (int j = 0; j < QPT; ++j) cnt[j] = 0;
#pragma unroll U
    for (int jw = 0; jw < nw; ++jw) {
        if (PF && jw + MRP_PF_DIST < nw) prefetch_chunk(jw + MRP_PF_DIST);
        const int pix = pix0 + jw * MRP_TK;
        const bool inside = pix < p_end;
        const MrpTap t = mrp_geom<RESIZE>(pix, p_end, W, Hm, Wm, scale_h, scale_w);
        unsigned int bits = 0u;
#pragma unroll
        for (int j = 0; j < QPT; ++j) {
            const int q = q_first + j;
            const MT* mq = mask_b + (size_t)mrp_imin(q, Q - 1) * plane;
            const float v = RESIZE ? mrp_sample(mq, t) : mrp_direct(mq, t.o00);
            const unsigned int on = (inside && q < Q && v != 0.0f) ? 1u : 0u;
            bits |= on << j;
            cnt[j] += (int)on;
        }
        sb[jw * MRP_TK * MRP_QG] = (unsigned char)bits;
        mine |= (bits != 0u ? 1u : 0u) << jw;
    }
#pragma unroll
    for (int j = 0; j < QPT; ++j) tcnt[j * MRP_THREADS] += cnt[j];
    return mine;
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
    constexpr int SMEM_TILES = MRP_TC * MRP_SF_STRIDE + MRP_TK * SM_STRIDE;
    constexpr int SMEM_RED = MRP_RED_SLOTS * TQ * MRP_TC;
    constexpr int SMEM = SMEM_TILES > SMEM_RED ? SMEM_TILES : SMEM_RED;
    constexpr int OUT_PT = TQ * MRP_TC / MRP_THREADS;        // outputs per thread in the epilogue
    constexpr int PRO_U = TQ == 4 ? MRP_PRO_U_Q4 : TQ == 8 ? MRP_PRO_U_Q8 : MRP_PRO_U_Q16;
    constexpr int FIN = TQ == 4 ? MRP_FIN_Q4 : TQ == 8 ? MRP_FIN_Q8 : MRP_FIN_Q16;
    // Fetch the first chunk of a window before its mask is known (overlapping the two round trips)?
    // Not for q16: its 32 accumulators leave no registers for it without spills.
    constexpr bool SPEC = TQ < 16;
    // Prefetch a window's mask taps into L1 ahead of their loads (mrp_mask_window)?  Not for fp32
    // features with q16: their 16 registers of features in flight and 32 accumulators leave none.
    constexpr bool PREFETCH = TQ < 16 || sizeof(FT) == 2;
    static_assert(TQ % 4 == 0 && (QPT == 1 || QPT == 2 || QPT == 4), "TQ must be 4, 8 or 16");
    static_assert(OUT_PT >= 1, "TQ * 64 must be a multiple of 256");
    static_assert(MRP_WIN <= 32, "one vote bit per chunk of a window");

    __shared__ __align__(16) float smem[SMEM];
    __shared__ unsigned char sB[MRP_WIN * MRP_TK * MRP_QG];  // the window's mask bits [chunk][pixel][ROI group]
    __shared__ int s_cnt[TQ];
    __shared__ int s_tcnt[QPT * MRP_THREADS];               // per-thread mask counts [j][tid]
    __shared__ int s_last;
    __shared__ MrpLevel s_lv;                                // this block's level, for the epilogue
    float* const sF = smem;                                  // [MRP_TC][MRP_SF_STRIDE]
    float* const sM = smem + MRP_TC * MRP_SF_STRIDE;         // [MRP_TK][SM_STRIDE]
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

    // mask evaluation role: one pixel (k_m) and QPT consecutive ROIs (qg * QPT + j)
    const int k_m = tid % MRP_TK;
    const int qg = tid / MRP_TK;
    // product role
    const int cg = tid % MRP_CG;
    const int kg = tid / MRP_CG;

    if (tid < TQ) s_cnt[tid] = 0;
    // The epilogue's pointers wait in shared memory rather than in registers through the whole
    // main loop (that register pressure is what would otherwise spill).
    if (tid == 0) s_lv = L;
    __syncthreads();                           // s_lv / s_cnt are read from the first prologue on

    float acc[TQ][MRP_CPT];
#pragma unroll
    for (int q = 0; q < TQ; ++q)
#pragma unroll
        for (int j = 0; j < MRP_CPT; ++j) acc[q][j] = 0.0f;
    // Mask counts: each thread's own slots (no sharing until the epilogue), updated once per
    // window so that no counter occupies a register through the streaming loop.
#pragma unroll
    for (int j = 0; j < QPT; ++j) s_tcnt[j * MRP_THREADS + tid] = 0;

    {   // ---- main loop: the block's pixel range, window by window ----
        const int C = L.C, HW = L.H * L.W;
        const MrpTile tile = mrp_tile(bid, L, p.q_tiles);
        const int b = tile.b;
        const int q0 = tile.qt * TQ, c0 = tile.ct * MRP_TC;
        const int p_begin = tile.s * L.split_len;
        const int p_end = mrp_imin(p_begin + L.split_len, HW);
        const int n_chunks = (p_end - p_begin + MRP_TK - 1) / MRP_TK;

        const FT* __restrict__ feat = (const FT*)L.feat + ((size_t)b * C + c0) * (size_t)HW;  // row c0
        const int c_valid = mrp_imin(MRP_TC, C - c0);
        const bool vec_ok = (HW % V == 0) && ((((size_t)L.feat) & 15) == 0);
        const MT* __restrict__ mask_b = (const MT*)p.mask + (size_t)b * Q * Hm * Wm;

        unsigned int raw[4 * NVEC];  // feature tile bits in flight (vector path)

        // -- the window prologue's mask pass (see mrp_mask_window) --
        auto mask_window = [&](int pw, int nw) -> unsigned int {
            const int H = s_lv.H, W = s_lv.W;   // from shared memory: short live ranges (see s_lv)
            unsigned char* sb = sB + k_m * MRP_QG + qg;
            int* tc = s_tcnt + tid;
            const int qf = q0 + qg * QPT;
            // Two instantiations (resize or not: block-uniform), each a branch-free loop.
            if (Hm != H || Wm != W)
                return mrp_mask_window<MT, QPT, PRO_U, true, PREFETCH>(mask_b, Q, Hm, Wm, H, W, qf, pw + k_m,
                                                                       p_end, nw, sb, tc);
            return mrp_mask_window<MT, QPT, PRO_U, false, PREFETCH>(mask_b, Q, Hm, Wm, H, W, qf, pw + k_m,
                                                                    p_end, nw, sb, tc);
        };

        // -- the chunk's mask bits (window slot jw) -> fp32 mask tile sM [pixel][ROI] --
        auto expand_mask = [&](int jw) {
            const unsigned int bits = sB[(jw * MRP_TK + k_m) * MRP_QG + qg];
            float* dst = sM + k_m * SM_STRIDE + qg * QPT;
            const float m0 = (bits & 1u) ? 1.0f : 0.0f;
            if (QPT == 4) {
                *reinterpret_cast<float4*>(dst) = make_float4(m0, (bits & 2u) ? 1.0f : 0.0f, (bits & 4u) ? 1.0f : 0.0f,
                                                              (bits & 8u) ? 1.0f : 0.0f);
            } else if (QPT == 2) {
                dst[0] = m0;
                dst[1] = (bits & 2u) ? 1.0f : 0.0f;
            } else {
                dst[0] = m0;
            }
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

        // ---- main loop over mask windows ----
        int w0 = 0;
        int nw = mrp_imin(MRP_WIN, n_chunks);
        int pw = p_begin;                                  // first pixel of the window
        // Prologue.  q4/q8: the first chunk's feature loads go out before its mask is known, so
        // that the mask round trip below and the feature round trip overlap (dropped if empty).
        if (SPEC) load_feat(pw);
        unsigned int mine = mask_window(pw, nw);           // bit jw: this thread saw a mask pixel in chunk jw
        for (;;) {
            unsigned int todo = 0u;                        // block-uniform: the window's non-empty chunks
            for (int jw = 0; jw < nw; ++jw)                // (each vote is also a barrier after sB's stores)
                if (__syncthreads_or((int)((mine >> jw) & 1u))) todo |= 1u << jw;
            if (todo != 0u && (!SPEC || (todo & 1u) == 0u))  // no speculative load, or its chunk is
                load_feat(pw + (__ffs((int)todo) - 1) * MRP_TK);   // empty: fetch the first non-empty one

            // Stream the non-empty chunks: chunk n is stored and multiplied while the loads of the
            // next non-empty chunk are in flight.
            while (todo != 0u) {
                const int jw = __ffs((int)todo) - 1;
                todo &= todo - 1u;
                __syncthreads();                           // the previous product is done with sF / sM
                store_tiles(pw + jw * MRP_TK);
                expand_mask(jw);
                if (todo != 0u) load_feat(pw + (__ffs((int)todo) - 1) * MRP_TK);
                __syncthreads();
#pragma unroll
                for (int i = 0; i < MRP_KPT; ++i) {
                    const int k = kg + MRP_KG * i;
                    float f[MRP_CPT];
#pragma unroll
                    for (int j = 0; j < MRP_CPT; ++j) f[j] = sF[(cg + MRP_CG * j) * MRP_SF_STRIDE + k];
                    const float* mrow = sM + k * SM_STRIDE;
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
            // next window.  Nothing reads sB between the last product above and its stores in
            // mask_window: no barrier needed before it.
            w0 += MRP_WIN;
            if (w0 >= n_chunks) break;
            nw = mrp_imin(MRP_WIN, n_chunks - w0);
            pw = p_begin + w0 * MRP_TK;
            if (SPEC) load_feat(pw);
            mine = mask_window(pw, nw);
        }
    }

    // ---- reduce the 8 pixel groups (fixed order) and the counts ----
#pragma unroll
    for (int j = 0; j < QPT; ++j)
        if (const int c = s_tcnt[j * MRP_THREADS + tid]) atomicAdd(&s_cnt[qg * QPT + j], c);
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
    // ---- epilogue.  It re-derives its tile from s_lv (shared memory) rather than keeping the
    //      main loop's copies in registers all along (register pressure, see s_lv) ----
    const MrpTile tile = mrp_tile(bid, s_lv, p.q_tiles);
    const int b = tile.b, s = tile.s, ct = tile.ct, qt = tile.qt;
    const int q0 = qt * TQ, c0 = ct * MRP_TC;
    const int C = s_lv.C;
    const int c_valid = mrp_imin(MRP_TC, C - c0);
    float tot[OUT_PT];
#pragma unroll
    for (int r = 0; r < OUT_PT; ++r) {
        const int idx = tid + MRP_THREADS * r;   // idx = q * MRP_TC + c
        float v = 0.0f;
#pragma unroll
        for (int sl = 0; sl < MRP_RED_SLOTS; ++sl) v += sR[sl * TQ * MRP_TC + idx];
        tot[r] = v;
    }

    FT* __restrict__ out = (FT*)s_lv.out;
    if (s_lv.splits == 1) {
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
    float* __restrict__ psum = s_lv.partial;                                   // [S][B][Q][C]
    float* __restrict__ pcnt = s_lv.partial + (size_t)s_lv.splits * B * Q * C;    // [S][B][c_tiles][Q]
#pragma unroll
    for (int r = 0; r < OUT_PT; ++r) {
        const int idx = tid + MRP_THREADS * r;
        const int q = idx / MRP_TC, c = idx % MRP_TC;
        if (q0 + q < Q && c < c_valid)
            psum[(((size_t)s * B + b) * Q + q0 + q) * C + c0 + c] = tot[r];
    }
    if (tid < TQ && q0 + tid < Q)
        pcnt[(((size_t)s * B + b) * s_lv.c_tiles + ct) * Q + q0 + tid] = (float)s_cnt[tid];
    __threadfence();
    __syncthreads();
    unsigned int* ticket = s_lv.tickets + ((size_t)b * p.q_tiles + qt) * s_lv.c_tiles + ct;
    if (tid == 0) s_last = (atomicAdd(ticket, 1u) == (unsigned int)(s_lv.splits - 1)) ? 1 : 0;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    // Sum the partials (and, threads tid < TQ, the counts) in split order.  The loads of
    // FIN splits are issued before any of them is added, so the finishing block waits
    // ceil(splits / FIN) L2 round trips instead of one per split and output.
    const bool cnt_role = tid < TQ && q0 + tid < Q;
    float v[OUT_PT];
#pragma unroll
    for (int r = 0; r < OUT_PT; ++r) v[r] = 0.0f;
    float n = 0.0f;
    for (int sp0 = 0; sp0 < s_lv.splits; sp0 += FIN) {
        float ld[FIN][OUT_PT];
        float lc[FIN];
#pragma unroll
        for (int i = 0; i < FIN; ++i) {
            const int sp = sp0 + i;
#pragma unroll
            for (int r = 0; r < OUT_PT; ++r) {
                const int idx = tid + MRP_THREADS * r;
                const int q = idx / MRP_TC, c = idx % MRP_TC;
                ld[i][r] = (sp < s_lv.splits && q0 + q < Q && c < c_valid)
                               ? __ldcg(psum + (((size_t)sp * B + b) * Q + q0 + q) * C + c0 + c) : 0.0f;
            }
            lc[i] = (sp < s_lv.splits && cnt_role)
                        ? __ldcg(pcnt + (((size_t)sp * B + b) * s_lv.c_tiles + ct) * Q + q0 + tid) : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < FIN; ++i) {
            if (sp0 + i < s_lv.splits) {                  // padding adds nothing, not even +0.0 to -0.0
#pragma unroll
                for (int r = 0; r < OUT_PT; ++r) v[r] += ld[i][r];
                n += lc[i];
            }
        }
    }
    if (cnt_role) s_cnt[tid] = (int)n;
    __syncthreads();
#pragma unroll
    for (int r = 0; r < OUT_PT; ++r) {
        const int idx = tid + MRP_THREADS * r;
        const int q = idx / MRP_TC, c = idx % MRP_TC;
        if (q0 + q < Q && c < c_valid) {
            const float inv = 1.0f / ((float)s_cnt[q] + 1e-8f);
            F::store(out + ((size_t)b * Q + q0 + q) * C + c0 + c, v[r] * inv);
        }
    }
    if (tid == 0) atomicExch(ticket, 0u);
}

#define SEAGULL_MRP_ENTRY(NAME, FT, MT, TQ)                                                      \
    extern "C" __global__ void __launch_bounds__(MRP_THREADS, 2) NAME(const MrpParams p) {      \
        mrp_body<FT, MT, TQ>(p);                                                                 \
    }

SEAGULL_MRP_ENTRY(masked_roi_pool_f32_u8_q4, float, unsigned char, 4)
SEAGULL_MRP_ENTRY(masked_roi_pool_f32_u8_q8, float, unsigned char, 8)
SEAGULL_MRP_ENTRY(masked_roi_pool_f32_u8_q16, float, unsigned char, 16)
SEAGULL_MRP_ENTRY(masked_roi_pool_f32_f32_q4, float, float, 4)
SEAGULL_MRP_ENTRY(masked_roi_pool_f32_f32_q8, float, float, 8)
SEAGULL_MRP_ENTRY(masked_roi_pool_f32_f32_q16, float, float, 16)
SEAGULL_MRP_ENTRY(masked_roi_pool_f16_u8_q4, unsigned short, unsigned char, 4)
SEAGULL_MRP_ENTRY(masked_roi_pool_f16_u8_q8, unsigned short, unsigned char, 8)
SEAGULL_MRP_ENTRY(masked_roi_pool_f16_u8_q16, unsigned short, unsigned char, 16)
SEAGULL_MRP_ENTRY(masked_roi_pool_f16_f32_q4, unsigned short, float, 4)
SEAGULL_MRP_ENTRY(masked_roi_pool_f16_f32_q8, unsigned short, float, 8)
SEAGULL_MRP_ENTRY(masked_roi_pool_f16_f32_q16, unsigned short, float, 16)
