// Quantized weight blocks and the dot products over them, shared by the ops in
// qlinear.cpp (one matmul at a time) and decode_step.cpp (a whole decode step).
//
// Weights stay in GGML-style blocks, activations are quantized per 32-element
// block to int8 (llama.cpp's q8_0 / q8_1 scheme), and each dot product runs on
// int8 with one float scale per block.
//
// Weight formats (one row = K/32 blocks, rows contiguous, little-endian):
//   Q4_0  18 B/block: fp16 d, 16 B nibbles             w = d * (q - 8)
//   Q4_1  20 B/block: fp16 d, fp16 m, 16 B nibbles     w = d * q + m
//   Q8_0  34 B/block: fp16 d, 32 x int8                w = d * q
//   I8    K B/row, fp32 scale per row (scales tensor)  w = s[row] * q
// Nibbles: byte j holds element j in its low half and element j + 16 in its high half.

#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define TANDEM_AVX2 1
// 16-lane paths where the compiler targets AVX-512 (always on top of the AVX2 ones).
#if defined(__AVX512F__)
#define TANDEM_AVX512 1
#endif
#endif

namespace {

constexpr int64_t QK = 32;
enum Format : int64_t { Q4_0 = 0, Q4_1 = 1, Q8_0 = 2, I8 = 3 };

// One block of quantized activations: x ~= d * qs, s = d * sum(qs).
struct BlockA {
  float d;
  float s;
  int8_t qs[QK];
};

int64_t block_bytes(int64_t fmt) {
  switch (fmt) {
    case Q4_0: return 18;
    case Q4_1: return 20;
    case Q8_0: return 34;
    case I8: return QK;
  }
  TORCH_CHECK(false, "unknown weight format ", fmt);
}

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
#ifdef TANDEM_AVX2
  return _cvtsh_ss(h);
#else
  return static_cast<float>(c10::Half(h, c10::Half::from_bits()));
#endif
}

#ifdef TANDEM_AVX2
inline float hsum(__m256 v) {
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

inline int hsum_i32(__m256i v) {
  __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(r);
}

// 16 bytes of nibbles -> 32 bytes 0..15 in element order.
inline __m256i nibbles(const uint8_t* p) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

// sum of u8 x s8 products, as 8 floats (one VNNI instruction where the CPU has it).
inline __m256 dot_u8s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s));
#elif defined(__AVXVNNI__)
  return _mm256_cvtepi32_ps(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s));
#else
  const __m256i p = _mm256_maddubs_epi16(u, s);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
#endif
}

// sum of s8 x s8 products (moves the sign onto the second operand).
inline __m256 dot_s8s8(__m256i a, __m256i b) {
  return dot_u8s8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}
#endif

// ---- activations -> int8 blocks ------------------------------------------------

void quantize_row(const float* x, BlockA* out, int64_t k) {
  for (int64_t b = 0; b < k / QK; ++b) {
    const float* v = x + b * QK;
    BlockA& blk = out[b];
#ifdef TANDEM_AVX2
    __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8);
    __m256 v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1));
    m = _mm256_max_ps(m, _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    const float amax = _mm_cvtss_f32(r);
    const float d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, id));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, id));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, id));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, id));
    const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    // pack 32 x int32 -> 32 x int8, then undo the lane interleaving of the packs
    i0 = _mm256_packs_epi32(i0, i1);
    i2 = _mm256_packs_epi32(i2, i3);
    i0 = _mm256_packs_epi16(i0, i2);
    i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blk.qs), i0);
    blk.d = d;
    blk.s = d * static_cast<float>(sum);
#else
    float amax = 0.0f;
    for (int i = 0; i < QK; ++i) amax = std::max(amax, std::fabs(v[i]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int i = 0; i < QK; ++i) {
      blk.qs[i] = static_cast<int8_t>(std::nearbyint(v[i] * id));
      sum += blk.qs[i];
    }
    blk.d = d;
    blk.s = d * static_cast<float>(sum);
#endif
  }
}

// ---- one weight row . one activation row ----------------------------------------

template <int64_t FMT>
float dot_row(const uint8_t* w, const BlockA* a, int64_t nb) {
#ifdef TANDEM_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  float mins = 0.0f;
  int64_t b = 0;
  // two blocks per iteration on independent accumulators, for instruction-level parallelism
  for (; b + 1 < nb; b += 2) {
    const BlockA& a0 = a[b];
    const BlockA& a1 = a[b + 1];
    const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a0.qs));
    const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a1.qs));
    if constexpr (FMT == Q4_0) {
      const uint8_t* w0 = w + b * 18;
      const uint8_t* w1 = w0 + 18;
      const __m256i off = _mm256_set1_epi8(8);
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16(w0) * a0.d), dot_s8s8(_mm256_sub_epi8(nibbles(w0 + 2), off), y0), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16(w1) * a1.d), dot_s8s8(_mm256_sub_epi8(nibbles(w1 + 2), off), y1), acc1);
    } else if constexpr (FMT == Q4_1) {
      const uint8_t* w0 = w + b * 20;
      const uint8_t* w1 = w0 + 20;
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16(w0) * a0.d), dot_u8s8(nibbles(w0 + 4), y0), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16(w1) * a1.d), dot_u8s8(nibbles(w1 + 4), y1), acc1);
      mins += f16(w0 + 2) * a0.s + f16(w1 + 2) * a1.s;
    } else if constexpr (FMT == Q8_0) {
      const uint8_t* w0 = w + b * 34;
      const uint8_t* w1 = w0 + 34;
      const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + 2));
      const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + 2));
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16(w0) * a0.d), dot_s8s8(q0, y0), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16(w1) * a1.d), dot_s8s8(q1, y1), acc1);
    } else {
      const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * QK));
      const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + (b + 1) * QK));
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(a0.d), dot_s8s8(q0, y0), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_set1_ps(a1.d), dot_s8s8(q1, y1), acc1);
    }
  }
  for (; b < nb; ++b) {
    const BlockA& a0 = a[b];
    const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a0.qs));
    if constexpr (FMT == Q4_0) {
      const uint8_t* w0 = w + b * 18;
      const __m256i q = _mm256_sub_epi8(nibbles(w0 + 2), _mm256_set1_epi8(8));
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16(w0) * a0.d), dot_s8s8(q, y0), acc0);
    } else if constexpr (FMT == Q4_1) {
      const uint8_t* w0 = w + b * 20;
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16(w0) * a0.d), dot_u8s8(nibbles(w0 + 4), y0), acc0);
      mins += f16(w0 + 2) * a0.s;
    } else if constexpr (FMT == Q8_0) {
      const uint8_t* w0 = w + b * 34;
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + 2));
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16(w0) * a0.d), dot_s8s8(q, y0), acc0);
    } else {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * QK));
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(a0.d), dot_s8s8(q, y0), acc0);
    }
  }
  return hsum(_mm256_add_ps(acc0, acc1)) + mins;
#else
  float total = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const BlockA& ab = a[b];
    int sum = 0;
    if constexpr (FMT == Q4_0 || FMT == Q4_1) {
      const int64_t size = FMT == Q4_0 ? 18 : 20;
      const uint8_t* qs = w + b * size + (FMT == Q4_0 ? 2 : 4);
      const int off = FMT == Q4_0 ? 8 : 0;
      for (int j = 0; j < 16; ++j) {
        sum += ((qs[j] & 0x0F) - off) * ab.qs[j] + ((qs[j] >> 4) - off) * ab.qs[j + 16];
      }
      total += f16(w + b * size) * ab.d * static_cast<float>(sum);
      if constexpr (FMT == Q4_1) total += f16(w + b * size + 2) * ab.s;
    } else {
      const uint8_t* blk = FMT == Q8_0 ? w + b * 34 : w + b * QK;
      const int8_t* qs = reinterpret_cast<const int8_t*>(FMT == Q8_0 ? blk + 2 : blk);
      for (int j = 0; j < QK; ++j) sum += qs[j] * ab.qs[j];
      total += (FMT == Q8_0 ? f16(blk) : 1.0f) * ab.d * static_cast<float>(sum);
    }
  }
  return total;
#endif
}

// ---- dequantize rows to fp32 -----------------------------------------------------

template <int64_t FMT>
void dequantize_row(const uint8_t* w, float scale, float* out, int64_t k) {
  for (int64_t b = 0; b < k / QK; ++b) {
    float* o = out + b * QK;
    if constexpr (FMT == Q4_0 || FMT == Q4_1) {
      const uint8_t* blk = w + b * (FMT == Q4_0 ? 18 : 20);
      const float d = f16(blk);
      const float m = FMT == Q4_1 ? f16(blk + 2) : -8.0f * d;
      const uint8_t* qs = blk + (FMT == Q4_0 ? 2 : 4);
      for (int j = 0; j < 16; ++j) {
        o[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
        o[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
      }
    } else {
      const uint8_t* blk = FMT == Q8_0 ? w + b * 34 : w + b * QK;
      const float d = FMT == Q8_0 ? f16(blk) : scale;
      const int8_t* qs = reinterpret_cast<const int8_t*>(FMT == Q8_0 ? blk + 2 : blk);
      for (int j = 0; j < QK; ++j) o[j] = static_cast<float>(qs[j]) * d;
    }
  }
}

// ---- one weight row . one fp32 activation row (weights dequantized in registers) ----

#ifdef TANDEM_AVX2
// sum over 32 elements of q[i] * x[i], q given as 32 signed bytes (8 partial sums).
inline __m256 block_dot_f32(__m256i q, const float* x) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  __m256 acc = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(x));
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(x + 8), acc);
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(x + 16), acc);
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(x + 24),
                         acc);
}
#endif

// `xsum[b]` is the sum of block b of x (Q4_1's offsets multiply it).
template <int64_t FMT>
float dot_row_f32(const uint8_t* w, const float* x, const float* xsum, int64_t nb) {
#ifdef TANDEM_AVX2
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * QK;
    if constexpr (FMT == Q4_0) {
      const uint8_t* blk = w + b * 18;
      const __m256i q = _mm256_sub_epi8(nibbles(blk + 2), _mm256_set1_epi8(8));
      acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(blk)), block_dot_f32(q, xb), acc);
    } else if constexpr (FMT == Q4_1) {
      const uint8_t* blk = w + b * 20;
      acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(blk)), block_dot_f32(nibbles(blk + 4), xb), acc);
      mins += f16(blk + 2) * xsum[b];
    } else if constexpr (FMT == Q8_0) {
      const uint8_t* blk = w + b * 34;
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(blk)), block_dot_f32(q, xb), acc);
    } else {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * QK));
      acc = _mm256_add_ps(block_dot_f32(q, xb), acc);
    }
  }
  return hsum(acc) + mins;
#else
  constexpr int64_t size = FMT == Q4_0 ? 18 : FMT == Q4_1 ? 20 : FMT == Q8_0 ? 34 : QK;
  float total = 0.0f, row[QK];
  for (int64_t b = 0; b < nb; ++b) {
    dequantize_row<FMT>(w + b * size, 1.0f, row, QK);
    for (int j = 0; j < QK; ++j) total += row[j] * x[b * QK + j];
  }
  (void)xsum;
  return total;
#endif
}

using DotFn = float (*)(const uint8_t*, const BlockA*, int64_t);
using DequantFn = void (*)(const uint8_t*, float, float*, int64_t);
using DotF32Fn = float (*)(const uint8_t*, const float*, const float*, int64_t);

DotFn dot_fn(int64_t fmt) {
  switch (fmt) {
    case Q4_0: return dot_row<Q4_0>;
    case Q4_1: return dot_row<Q4_1>;
    case Q8_0: return dot_row<Q8_0>;
    default: return dot_row<I8>;
  }
}

DotF32Fn dot_f32_fn(int64_t fmt) {
  switch (fmt) {
    case Q4_0: return dot_row_f32<Q4_0>;
    case Q4_1: return dot_row_f32<Q4_1>;
    case Q8_0: return dot_row_f32<Q8_0>;
    default: return dot_row_f32<I8>;
  }
}

DequantFn dequant_fn(int64_t fmt) {
  switch (fmt) {
    case Q4_0: return dequantize_row<Q4_0>;
    case Q4_1: return dequantize_row<Q4_1>;
    case Q8_0: return dequantize_row<Q8_0>;
    default: return dequantize_row<I8>;
  }
}

void check_weight(const at::Tensor& w, const c10::optional<at::Tensor>& scales, int64_t fmt, int64_t k) {
  TORCH_CHECK(fmt >= Q4_0 && fmt <= I8, "unknown weight format ", fmt);
  TORCH_CHECK(k > 0 && k % QK == 0, "in_features must be a positive multiple of 32, got ", k);
  TORCH_CHECK(w.device().is_cpu() && w.scalar_type() == at::kByte && w.dim() == 2 && w.is_contiguous(),
              "weight must be a contiguous CPU uint8 tensor [out_features, row_bytes]");
  TORCH_CHECK(w.size(1) == k / QK * block_bytes(fmt), "weight rows hold ", w.size(1), " bytes, expected ",
              k / QK * block_bytes(fmt), " for ", k, " inputs");
  if (fmt == I8) {
    TORCH_CHECK(scales.has_value() && scales->scalar_type() == at::kFloat && scales->is_contiguous() &&
                    scales->numel() == w.size(0),
                "int8 per-channel weights need fp32 scales [out_features]");
  }
}

}  // namespace
