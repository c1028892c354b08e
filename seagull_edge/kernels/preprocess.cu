// Frame preprocessing on the GPU for the TensorRT (torch-free) path: the uint8 frame and the ROI
// masks are uploaded once, and the encoder's image, the ROI crops and the ROI masks are made here,
// straight into the engines' input buffers.  Compiled at run time with NVRTC
// (seagull_edge/kernels/preprocess.py), so this file holds device code only: no host code, no
// includes.
//
// Semantics (the CPU path is seagull_edge/runtime/image.py: preprocess_image, preprocess_crops,
// preprocess_masks; the exact float32 reference of these kernels is
// seagull_edge/kernels/preprocess.py: resample_reference / masks_reference):
//
//   prep_resample_*: for ROI q (the frame itself is one ROI, its box the whole frame), output
//   pixel (oy, ox) of a D x D output, channel c:
//       for each y tap k of row  ry = q*D + oy:  (sy_k, wy_k) = (y_first[ry] + k, y_weight[y_offset[ry] + k])
//       for each x tap j of row  rx = q*D + ox:  (sx_j, wx_j) = (x_first[rx] + j, x_weight[x_offset[rx] + j])
//       h_k = sum_j wx_j * src[sy_k, sx_j, c]         (fp32, j ascending, starting from 0)
//       v   = sum_k wy_k * h_k                          (fp32, k ascending, starting from 0)
//       out[q, c, oy, ox] = (v * scale - mean[c]) / std[c]
//   Every product, sum and the division are rounded separately (__fmul_rn / __fadd_rn /
//   __fsub_rn / __fdiv_rn: no FMA contraction), so the result is bit-for-bit the numpy reference,
//   which does the same float32 operations in the same order.  This is the CPU path's order too
//   (OpenCV resizes the width first and stores the rows as float32, then the height), with the
//   tables built from OpenCV's own weight formulas (preprocess.py, axis_tables); what is left
//   between the two is float32 rounding inside OpenCV (its SIMD may fuse multiply-adds).
//   The tables are sparse rows over consecutive source pixels (CSR): row r reads
//   x_offset[r + 1] - x_offset[r] >= 1 pixels from x_first[r] on, x_first already holding the
//   box's origin (absolute frame columns).  Taps per row: 1-2 when enlarging, about src/dst + 1
//   when shrinking (area).
//
//   prep_masks_*: ROI q's mask at S x S by nearest neighbour, then 0/1:
//       sy = y_index[oy], sx = x_index[ox]                 (OpenCV INTER_NEAREST source pixels)
//       out[q, oy, ox] = (box_q contains (sx, sy) and mask_q[sy - by, sx - bx] != 0) ? 1 : 0
//   Only each mask's box (x, y, w, h) is uploaded, packed: mask_q is [h, w] uint8 at
//   masks + mask_offset[q]; outside its box a mask is zero (the box is its tight box), so those
//   pixels are never read.  This equals preprocess_masks' "nearest resize, then > 0.1" on 0/1.
//
// Memory layout (dense, C-contiguous):
//   src      : the frame, uint8 [H, W, 3] (RGB), row r at src + r * src_row_bytes
//   resample : x_first / y_first int32 [Q*D], x_offset / y_offset int32 [Q*D + 1],
//              x_weight / y_weight fp32 [x_offset[Q*D]] / [y_offset[Q*D]]
//   out      : fp32 or fp16 [Q, 3, D, D] (the encoder's "image" with Q = 1, or the assessor's "crops")
//   masks    : the boxes' pixels, uint8 (0 = outside the ROI), ROI q's [h_q, w_q] block at byte
//              mask_offset[q] (int64 [Q]); boxes int32 [Q, 4] = (x, y, w, h);
//              x_index / y_index int32 [S] (source column / row of each output column / row)
//   mask out : fp32 or fp16 [Q, S, S] (the assessor's "masks")
//
// Entry points (extern "C", each with one by-value parameter struct):
//   prep_resample_f32, prep_resample_f16 (PrepResampleParams), prep_masks_f32, prep_masks_f16
//   (PrepMaskParams); _f32 / _f16 is the output dtype.
// Launch configuration (both): blockDim = (256, 1, 1), no shared memory,
//   gridDim = (ceil(D*D / 256), Q, 1): thread blockIdx.x * 256 + threadIdx.x of grid row
//   blockIdx.y computes output pixel p = oy * D + ox of ROI q = blockIdx.y (all three channels for
//   resample).  Threads with p >= D*D do nothing.
//
// fp16 outputs are rounded to nearest even from the fp32 value with the single PTX instruction
// cvt.rn.f16.f32 (no cuda_fp16.h: NVRTC 13 ships none built in).  SEAGULL_PREP_CUSTOM_HALF lets a
// host-side emulation supply prep_f2h itself (used by the CPU tests).

#define PREP_THREADS 256

// ---------------------------------------------------------------------------------------------
// Parameters.  Host mirror: seagull_edge/kernels/preprocess.py (_ResampleParams / _MaskParams,
// ctypes).  8-byte pointers first, then 4-byte ints and floats: no implicit padding.
struct PrepResampleParams {
    const unsigned char* src;   // [H, W, 3] uint8
    void* out;                  // [Q, 3, D, D] fp32 / fp16
    const int* x_first;         // [Q*D]
    const int* x_offset;        // [Q*D + 1]
    const float* x_weight;      // [x_offset[Q*D]]
    const int* y_first;         // [Q*D]
    const int* y_offset;        // [Q*D + 1]
    const float* y_weight;      // [y_offset[Q*D]]
    int src_row_bytes;          // W * 3
    int D;                      // output side
    int Q;                      // ROIs (gridDim.y)
    float scale;                // 1/255 rounded to fp32, as the CPU path's np.float32(1 / 255)
    float mean[3];
    float stdv[3];
};                              // sizeof = 64 + 4 * 10 = 104

struct PrepMaskParams {
    const unsigned char* masks;     // packed box pixels, uint8
    const long long* mask_offset;   // [Q] byte offset of ROI q's [h, w] block
    const int* boxes;               // [Q, 4] x, y, w, h
    const int* x_index;             // [S]
    const int* y_index;             // [S]
    void* out;                      // [Q, S, S] fp32 / fp16
    int S;
    int Q;
};                                  // sizeof = 48 + 8 = 56

// ---------------------------------------------------------------------------------------------
// fp32 -> fp16 bits (round to nearest even).
#if defined(SEAGULL_PREP_CUSTOM_HALF)
// supplied by the includer: unsigned short prep_f2h(float);
#else
__device__ __forceinline__ unsigned short prep_f2h(float f) {
    unsigned short b;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(b) : "f"(f));
    return b;
}
#endif

__device__ __forceinline__ void prep_store(float* out, long long i, float v) { out[i] = v; }
__device__ __forceinline__ void prep_store(unsigned short* out, long long i, float v) { out[i] = prep_f2h(v); }

// ---------------------------------------------------------------------------------------------
template <typename OutT>
__device__ __forceinline__ void prep_resample(const PrepResampleParams& p) {
    const int D = p.D;
    const int q = blockIdx.y;
    const int pix = blockIdx.x * PREP_THREADS + threadIdx.x;
    if (pix >= D * D || q >= p.Q) return;
    const int oy = pix / D;
    const int ox = pix - oy * D;
    const int rx = q * D + ox;
    const int ry = q * D + oy;
    const int x0 = p.x_first[rx], xb = p.x_offset[rx], xn = p.x_offset[rx + 1] - xb;
    const int y0 = p.y_first[ry], yb = p.y_offset[ry], yn = p.y_offset[ry + 1] - yb;
    const float* wx = p.x_weight + xb;
    const float* wy = p.y_weight + yb;

    float v0 = 0.0f, v1 = 0.0f, v2 = 0.0f;
    for (int k = 0; k < yn; ++k) {
        // One source row: the horizontal pass's value at (row y0 + k, column ox), kept in fp32
        // like the CPU path's intermediate image.
        const unsigned char* row = p.src + (long long)(y0 + k) * p.src_row_bytes + (long long)x0 * 3;
        float h0 = 0.0f, h1 = 0.0f, h2 = 0.0f;
        for (int j = 0; j < xn; ++j) {
            const float w = wx[j];
            const unsigned char* px = row + 3 * j;
            h0 = __fadd_rn(h0, __fmul_rn(w, (float)px[0]));
            h1 = __fadd_rn(h1, __fmul_rn(w, (float)px[1]));
            h2 = __fadd_rn(h2, __fmul_rn(w, (float)px[2]));
        }
        const float w = wy[k];
        v0 = __fadd_rn(v0, __fmul_rn(w, h0));
        v1 = __fadd_rn(v1, __fmul_rn(w, h1));
        v2 = __fadd_rn(v2, __fmul_rn(w, h2));
    }
    // (v * (1/255) - mean) / std, each step rounded, as numpy computes it on float32 arrays.
    OutT* out = (OutT*)p.out;
    const long long plane = (long long)D * D;
    const long long base = (long long)q * 3 * plane + pix;
    prep_store(out, base, __fdiv_rn(__fsub_rn(__fmul_rn(v0, p.scale), p.mean[0]), p.stdv[0]));
    prep_store(out, base + plane, __fdiv_rn(__fsub_rn(__fmul_rn(v1, p.scale), p.mean[1]), p.stdv[1]));
    prep_store(out, base + 2 * plane, __fdiv_rn(__fsub_rn(__fmul_rn(v2, p.scale), p.mean[2]), p.stdv[2]));
}

template <typename OutT>
__device__ __forceinline__ void prep_masks(const PrepMaskParams& p) {
    const int S = p.S;
    const int q = blockIdx.y;
    const int pix = blockIdx.x * PREP_THREADS + threadIdx.x;
    if (pix >= S * S || q >= p.Q) return;
    const int oy = pix / S;
    const int ox = pix - oy * S;
    const int* box = p.boxes + 4 * q;
    // Unsigned compares: a source pixel left of / above the box wraps to a large value.
    const unsigned int dx = (unsigned int)(p.x_index[ox] - box[0]);
    const unsigned int dy = (unsigned int)(p.y_index[oy] - box[1]);
    float v = 0.0f;
    if (dx < (unsigned int)box[2] && dy < (unsigned int)box[3]) {
        const unsigned char* m = p.masks + p.mask_offset[q];
        v = m[(long long)dy * box[2] + dx] != 0 ? 1.0f : 0.0f;
    }
    prep_store((OutT*)p.out, (long long)q * S * S + pix, v);
}

extern "C" __global__ void __launch_bounds__(PREP_THREADS) prep_resample_f32(const PrepResampleParams p) {
    prep_resample<float>(p);
}
extern "C" __global__ void __launch_bounds__(PREP_THREADS) prep_resample_f16(const PrepResampleParams p) {
    prep_resample<unsigned short>(p);
}
extern "C" __global__ void __launch_bounds__(PREP_THREADS) prep_masks_f32(const PrepMaskParams p) {
    prep_masks<float>(p);
}
extern "C" __global__ void __launch_bounds__(PREP_THREADS) prep_masks_f16(const PrepMaskParams p) {
    prep_masks<unsigned short>(p);
}
