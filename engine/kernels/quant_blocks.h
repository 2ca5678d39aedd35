// Quantized weight blocks and the dot products over them, shared by the ops in
// qlinear.cpp (one matmul at a time) and decode_step.cpp (a whole decode step).
//
// Weights stay in GGML-style blocks (the 4-bit ones repacked, below), activations
// are quantized per 32-element block to int8 (llama.cpp's q8_0 / q8_1 scheme),
// and each dot product runs on int8 with one float scale per block.
//
// Weight formats (one row = K/32 blocks, rows contiguous, little-endian):
//   Q4_0  18 B/block: fp16 d, 16 B nibbles             w = d * (q - 8)
//   Q4_1  20 B/block: fp16 d, fp16 m, 16 B nibbles     w = d * q + m
//   Q8_0  34 B/block: fp16 d, 32 x int8                w = d * q
//   I8    K B/row, fp32 scale per row (scales tensor)  w = s[row] * q
// Nibbles: byte j holds element j in its low half and element j + 16 in its high half.
//
// Repacked 4-bit matrices (Q4_0R, Q4_1R: the same bytes, rewritten in place by `repack` at load
// time) go in tiles of 16 rows, so that a decode matvec reads one sequential stream and leaves
// each row's sum in a vector lane: no per-row reduction, no per-row tail. Tile t holds rows
// 16t..16t+15 (its 16 * row bytes); block b of the tile is 16 * 18 (Q4_1: 20) bytes: the 16 rows'
// nibbles (256 B), their fp16 scales (32 B) and, Q4_1, their fp16 minimums (32 B). Byte 64 j + 4 r + i
// of the nibbles is GGML byte 4 j + i of row r's block (elements 4 j + i low, 4 j + i + 16 high):
// one 64-byte load, masked to its low halves, is four elements of each of 16 rows, which one VNNI
// dot against four broadcast activations sums into the row's lane; its high halves, likewise.
// The last n % 16 rows (a matrix of fewer rows, or its remainder) are repacked a row at a time:
// the row's nibbles first, then its fp16 scales, then (Q4_1R) its minimums, each in its own plane;
// the nibbles in groups of 4 blocks (64 B): byte i of a group's first 32 holds element i of its
// block 0 (low half) and of its block 2 (high half); the next 32 bytes, blocks 1 and 3. A row's
// last nb % 4 blocks go as a pair (32 B, low halves the first block) then a single (16 B, GGML order).
// Both 4-bit formats are one sum: d * dot(q, x) + m * sum(x), m = -8 d for Q4_0.
// Repacked Q8_0 (Q8_0R) tiles the same way: block b of a tile is 16 * 34 bytes, the 16 rows'
// int8 values (512 B: byte 64 j + 4 r + i is element 4 j + i of row r, j < 8) stored as q + 128,
// which VNNI multiplies as unsigned (the dot subtracts 128 * sum(x) once a block), then their
// fp16 scales (32 B). Its rows after the last whole tile stay GGML Q8_0 rows.

#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define TANDEM_AVX2 1
// 16-lane paths where the compiler targets AVX-512 (always on top of the AVX2 ones).
#if defined(__AVX512F__)
#define TANDEM_AVX512 1
#endif
// The repacked 4-bit dots on 64-byte vectors need AVX-512's byte ops and VNNI.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define TANDEM_ZMM_DOT 1
#endif
#endif

namespace {

constexpr int64_t QK = 32;
enum Format : int64_t { Q4_0 = 0, Q4_1 = 1, Q8_0 = 2, I8 = 3, Q4_0R = 4, Q4_1R = 5, Q8_0R = 6 };

constexpr bool repacked(int64_t fmt) { return fmt == Q4_0R || fmt == Q4_1R || fmt == Q8_0R; }

int64_t block_bytes(int64_t fmt) {
  switch (fmt) {
    case Q4_0: case Q4_0R: return 18;
    case Q4_1: case Q4_1R: return 20;
    case Q8_0: case Q8_0R: return 34;
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

// ---- activations: int8 blocks in planes ------------------------------------------

// One row of quantized activations: block b is qs[32 b, 32 b + 32) with x ~= d[b] * qs,
// s[b] = d[b] * sum(qs) and sq[b] = sum(qs) (what an offset weight byte's dot subtracts). The planes are zero-padded to a multiple of 16 blocks, so a kernel
// may read 16 blocks' d and s, or 4 blocks' qs, past the row's end.
//
// Two levels (quantize_row2; the output layer, whose logits are the router's signals): the
// block's residual after int8 rounding, quantized again to int8 on a 254x finer step, in
// qs2. Then x ~= d[b] * (254 qs + qs2) with d[b] = (absmax / 127) / 254, and s[b] = sum(x)
// in fp32, sq[b] = 254 sum(qs) + sum(qs2). Level one leaves |x - 254 d qs| <= 127 d, so qs2 fits int8, and what is left
// is at most d / 2 = absmax / (2 * 127 * 254) per element, 1.6e-5 of the block's absmax:
// a dot over a block errs by at most that times the sum of the block's |w| (plus fp32
// rounding, 2^-24 relative). The dots run 254 dot(w, qs) + dot(w, qs2) in int32 (at most
// 32 * 128 * 127 * 255 < 2^31) over the same weight bytes.
//
// Mixed rows (quantize_row_mixed; the prompt's matmuls): one level where it is enough, and a
// second only for the blocks whose absmax stands out of the row's (an outlier channel, which
// would leave the rest of its block a few int8 steps). Such a block keeps the first level's d,
// sq and qs, and adds x's residual in qs2 on the step d / 254, with sq2[b] = sum(qs2) and
// two[b] = 1; s[b] = sum(x) there. Only the batched tile dot (gemm_tile) reads the second level.
struct Acts {
  const int8_t* qs;
  const float* d;
  const float* s;
  const int32_t* sq;
  const int8_t* qs2;   // the residual plane of two-level and mixed rows, else null
  const int32_t* sq2;  // mixed rows: the residual's integer block sums
  const uint8_t* two;  // mixed rows: 1 where a block has a second level (null: none has)
};

class ActBuffer {
 public:
  ActBuffer(int64_t rows, int64_t k, bool two_levels = false)
      : stride_((k / QK + 15) / 16 * 16), qs_(rows * stride_ * QK, 0), qs2_(two_levels ? qs_.size() : 0, 0),
        d_(rows * stride_, 0.0f), s_(rows * stride_, 0.0f), sq_(rows * stride_, 0),
        sq2_(two_levels ? sq_.size() : 0, 0), two_(two_levels ? sq_.size() : 0, 0) {}
  Acts row(int64_t i) const {
    const bool second = !qs2_.empty();
    return {qs_.data() + i * stride_ * QK, d_.data() + i * stride_, s_.data() + i * stride_,
            sq_.data() + i * stride_, second ? qs2_.data() + i * stride_ * QK : nullptr,
            second ? sq2_.data() + i * stride_ : nullptr, second ? two_.data() + i * stride_ : nullptr};
  }
  int8_t* qs(int64_t i) { return qs_.data() + i * stride_ * QK; }
  int8_t* qs2(int64_t i) { return qs2_.data() + i * stride_ * QK; }
  float* d(int64_t i) { return d_.data() + i * stride_; }
  float* s(int64_t i) { return s_.data() + i * stride_; }
  int32_t* sq(int64_t i) { return sq_.data() + i * stride_; }
  int32_t* sq2(int64_t i) { return sq2_.data() + i * stride_; }
  uint8_t* two(int64_t i) { return two_.data() + i * stride_; }

 private:
  int64_t stride_;
  std::vector<int8_t> qs_, qs2_;
  std::vector<float> d_, s_;
  std::vector<int32_t> sq_, sq2_;
  std::vector<uint8_t> two_;
};

#ifdef TANDEM_AVX2
inline float hsum(__m256 v) {
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

inline float hsum128(__m128 r) {
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

inline float hmax128(__m128 r) {
  r = _mm_max_ps(r, _mm_movehl_ps(r, r));
  return _mm_cvtss_f32(_mm_max_ss(r, _mm_movehdup_ps(r)));
}

inline int hsum_i32(__m256i v) {
  __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(r);
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// 16 bytes of GGML-order nibbles -> 32 bytes 0..15 in element order.
inline __m256i nibbles(const uint8_t* p) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

inline __m256i low_nibbles(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0F)); }
inline __m256i high_nibbles(__m256i v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F)); }

// sum of u8 x s8 products, as 8 int32 (one VNNI instruction where the CPU has it).
inline __m256i dot_u8s8_i32(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// acc + the u8 x s8 dot above.
inline __m256i dot_u8s8_acc(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, dot_u8s8_i32(u, s));
#endif
}

// 254 * lo (the two-level blocks' first level, see Acts), without a 32-bit multiply.
inline __m256i times254(__m256i lo) { return _mm256_sub_epi32(_mm256_slli_epi32(lo, 8), _mm256_slli_epi32(lo, 1)); }

// u . (activations at y): one level, or 254 u . y + u . y2 for two (y2: the residual plane).
template <bool TWO>
inline __m256i dot_acts(__m256i u, const int8_t* y, const int8_t* y2) {
  const __m256i lo = dot_u8s8_i32(u, load256(y));
  return TWO ? dot_u8s8_acc(times254(lo), u, load256(y2)) : lo;
}

// signed weights q . activations: the sign moves onto the activations (u8 x s8).
template <bool TWO>
inline __m256 dot_s8_acts(__m256i q, const int8_t* y, const int8_t* y2) {
  const __m256i u = _mm256_sign_epi8(q, q);
  const __m256i lo = dot_u8s8_i32(u, _mm256_sign_epi8(load256(y), q));
  return _mm256_cvtepi32_ps(TWO ? dot_u8s8_acc(times254(lo), u, _mm256_sign_epi8(load256(y2), q)) : lo);
}
#endif

#if defined(TANDEM_ZMM_DOT)
// The 64-byte form of dot_acts.
template <bool TWO>
inline __m512i dot_acts512(__m512i u, const int8_t* y, const int8_t* y2) {
  const __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, _mm512_loadu_si512(y));
  if (!TWO) return lo;
  const __m512i c = _mm512_sub_epi32(_mm512_slli_epi32(lo, 8), _mm512_slli_epi32(lo, 1));
  return _mm512_dpbusd_epi32(c, u, _mm512_loadu_si512(y2));
}
#endif

void quantize_row(const float* x, int8_t* qs, float* dp, float* sp, int32_t* sqp, int64_t k) {
  for (int64_t b = 0; b < k / QK; ++b) {
    const float* v = x + b * QK;
    int8_t* q = qs + b * QK;
#ifdef TANDEM_AVX2
    __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8);
    __m256 v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1));
    m = _mm256_max_ps(m, _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    const float amax = hmax128(_mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1)));
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
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), i0);
#else
    float amax = 0.0f;
    for (int i = 0; i < QK; ++i) amax = std::max(amax, std::fabs(v[i]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int i = 0; i < QK; ++i) {
      q[i] = static_cast<int8_t>(std::nearbyint(v[i] * id));
      sum += q[i];
    }
#endif
    dp[b] = d;
    sp[b] = d * static_cast<float>(sum);
    sqp[b] = sum;
  }
}

// Row i of `acts` from x (k floats).
inline void quantize_row(const float* x, ActBuffer& acts, int64_t i, int64_t k) {
  quantize_row(x, acts.qs(i), acts.d(i), acts.s(i), acts.sq(i), k);
}

// Row i of a two-level `acts` (see Acts) from x (k floats): once per row, so plain C++.
// One block's second level: the residual of v (32 floats) after the first level q1 on step d1,
// rounded to int8 on the step d1 / 254 into q2. Returns sum(q2); `sum` gets sum(v).
inline int32_t second_level_block(const float* v, float d1, const int8_t* q1, int8_t* q2, float& sum) {
  const float id2 = d1 != 0.0f ? 254.0f / d1 : 0.0f;
  int32_t sum2 = 0;
  sum = 0.0f;
  for (int64_t j = 0; j < QK; ++j) {
    const float r = (v[j] - d1 * static_cast<float>(q1[j])) * id2;
    q2[j] = static_cast<int8_t>(std::clamp(std::nearbyint(r), -127.0f, 127.0f));
    sum += v[j];
    sum2 += q2[j];
  }
  return sum2;
}

inline void quantize_row2(const float* x, ActBuffer& acts, int64_t i, int64_t k) {
  int8_t* q1 = acts.qs(i);
  int8_t* q2 = acts.qs2(i);
  float* d = acts.d(i);
  float* s = acts.s(i);
  int32_t* sq = acts.sq(i);
  quantize_row(x, q1, d, s, sq, k);
  for (int64_t b = 0; b < k / QK; ++b) {
    const int32_t sum2 = second_level_block(x + b * QK, d[b], q1 + b * QK, q2 + b * QK, s[b]);
    d[b] /= 254.0f;
    sq[b] = 254 * sq[b] + sum2;
  }
}

// A block gets a second level (mixed rows) when its absmax is this many times the row's median
// block absmax. On SmolLM2's prompts (chat template, ten questions; the prompt's matmuls emulated in
// fp32 with the activations rounded) the first token's distribution moved from the fp32
// activations' by a mean KL of 0.0041 with one level everywhere, 0.0007 at 2x (15 % of blocks with
// two levels), 0.0005 at 1.5x (24 %), 0.00035 with bf16 activations; at 2x the device tier's
// first token on "What is the capital of France?" (a 0.08-nat margin in the fp32 twin) flipped.
constexpr float kOutlierBlock = 1.5f;

// Row i of a mixed `acts` (see Acts) from x (k floats): one level, then the outlier blocks' second.
inline void quantize_row_mixed(const float* x, ActBuffer& acts, int64_t i, int64_t k) {
  quantize_row(x, acts, i, k);
  const int64_t nb = k / QK;
  float* d = acts.d(i);
  std::vector<float> sorted(d, d + nb);  // the lower median (of an even count, the smaller middle one)
  std::nth_element(sorted.begin(), sorted.begin() + (nb - 1) / 2, sorted.end());
  const float limit = kOutlierBlock * sorted[(nb - 1) / 2];
  const int8_t* q1 = acts.qs(i);
  int8_t* q2 = acts.qs2(i);
  uint8_t* two = acts.two(i);
  for (int64_t b = 0; b < nb; ++b) {
    two[b] = d[b] > limit;
    if (two[b]) acts.sq2(i)[b] = second_level_block(x + b * QK, d[b], q1 + b * QK, q2 + b * QK, acts.s(i)[b]);
  }
}

// ---- the repacked 4-bit layout ---------------------------------------------------

// Where element i (0..31) of block b of a repacked row of nb blocks lies in its nibble
// plane: the byte, and whether in its high half.
inline std::pair<int64_t, bool> nibble_at(int64_t b, int64_t i, int64_t nb) {
  const int64_t full = nb / 4 * 4;
  if (b < full) {
    const int64_t t = b % 4;
    return {b / 4 * 64 + (t % 2) * 32 + i, t >= 2};
  }
  if (nb - full >= 2 && b < full + 2) return {full * 16 + i, b == full + 1};
  return {nb * 16 - 16 + i % 16, i >= 16};
}

// One GGML row of Q4_0 / Q4_1 blocks -> its repacked form (same bytes, `out` distinct).
void repack_row(const uint8_t* row, uint8_t* out, int64_t nb, bool with_min) {
  const int64_t size = with_min ? 20 : 18, head = with_min ? 4 : 2;
  std::memset(out, 0, nb * 16);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * size;
    std::memcpy(out + nb * 16 + b * 2, blk, 2);
    if (with_min) std::memcpy(out + nb * 18 + b * 2, blk + 2, 2);
    for (int64_t i = 0; i < QK; ++i) {
      const uint8_t byte = blk[head + i % 16];
      const uint8_t q = i < 16 ? byte & 0x0F : byte >> 4;
      const auto [at, high] = nibble_at(b, i, nb);
      out[at] |= high ? q << 4 : q;
    }
  }
}

#ifdef TANDEM_AVX2
// The 32 nibbles (0..15, element order) of block b of a repacked row of nb blocks.
inline __m256i block_nibbles(const uint8_t* nib, int64_t b, int64_t nb) {
  const int64_t full = nb / 4 * 4;
  if (b < full) {
    const int64_t t = b % 4;
    const __m256i v = load256(nib + b / 4 * 64 + (t % 2) * 32);
    return t >= 2 ? high_nibbles(v) : low_nibbles(v);
  }
  if (nb - full >= 2 && b < full + 2) {
    const __m256i v = load256(nib + full * 16);
    return b == full + 1 ? high_nibbles(v) : low_nibbles(v);
  }
  return nibbles(nib + nb * 16 - 16);
}
#endif

// Rows a repacked tile holds (the int32 lanes of one 64-byte vector).
constexpr int64_t kTileRows = 16;

// 16 GGML rows of Q4_0 / Q4_1 blocks, `row_bytes` apart -> one repacked tile at `out` (distinct).
void repack_tile(const uint8_t* rows, int64_t row_bytes, uint8_t* out, int64_t nb, bool with_min) {
  const int64_t size = with_min ? 20 : 18, head = with_min ? 4 : 2;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* o = out + b * kTileRows * size;
    for (int64_t r = 0; r < kTileRows; ++r) {
      const uint8_t* blk = rows + r * row_bytes + b * size;
      for (int64_t j = 0; j < 4; ++j) std::memcpy(o + 64 * j + 4 * r, blk + head + 4 * j, 4);
      std::memcpy(o + 256 + 2 * r, blk, 2);
      if (with_min) std::memcpy(o + 288 + 2 * r, blk + 2, 2);
    }
  }
}

// Row `lane`'s 16 GGML nibble bytes of one tile block `p`.
inline void tile_row_nibbles(const uint8_t* p, int64_t lane, uint8_t* out) {
  for (int64_t j = 0; j < 4; ++j) std::memcpy(out + 4 * j, p + 64 * j + 4 * lane, 4);
}

// Software prefetch of `bytes` from p (whole 64-byte lines) into L1 (Level 3) or L2 (Level 2): the
// hardware streamers stop at every 4 KiB and keep few lines in flight per core, and on a Xeon VM a
// core's DRAM stream stalled at ~10 GB/s without these requests.
template <int Level>
inline void prefetch(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, Level);
}

// How far ahead of a matvec's tile stream the weights are asked for, into L2: 1B shapes' Q4_0
// decode step, interleaved runs on the Xeon VM, 22.6-25.6 tok/s without, 33-35 with 4-16 KiB.
constexpr int64_t kStreamAhead = 8192;

// Four activation bytes as one int32, to broadcast against four elements of 16 rows.
inline int32_t quad(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#if defined(TANDEM_ZMM_DOT)
// The int32 dots of block b's 32 activations with 16 rows' values u (unsigned bytes, four of each
// row a vector): u[j] holds elements 4 j.. of each row (Q8_0, EVEN = 8), or for 4-bit tiles (EVEN =
// 4) u[j] elements 4 j.. and u[4 + j] elements 16 + 4 j.. (low and high nibbles of load j). Two
// levels: 254 * first + second, each weight vector used for both while it is in a register.
template <bool TWO, int EVEN>
inline __m512i dot_tile512(const __m512i* u, const Acts& a, int64_t b) {
  const int8_t* y = a.qs + QK * b;
  const int8_t* y2 = TWO ? a.qs2 + QK * b : y;
  __m512i s[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()}, t[2] = {s[0], s[1]};
  for (int j = 0; j < 8; ++j) {
    const int e = EVEN == 8 ? 4 * j : (j < 4 ? 4 * j : 16 + 4 * (j - 4));  // u[j]'s first element
    s[j % 2] = _mm512_dpbusd_epi32(s[j % 2], u[j], _mm512_set1_epi32(quad(y + e)));
    if (TWO) t[j % 2] = _mm512_dpbusd_epi32(t[j % 2], u[j], _mm512_set1_epi32(quad(y2 + e)));
  }
  const __m512i lo = _mm512_add_epi32(s[0], s[1]);
  if (!TWO) return lo;
  return _mm512_add_epi32(_mm512_sub_epi32(_mm512_slli_epi32(lo, 8), _mm512_slli_epi32(lo, 1)), _mm512_add_epi32(t[0], t[1]));
}
#endif

#ifdef TANDEM_AVX2
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
constexpr bool kVnni256 = true;  // u8 x s8 dots in one instruction (dot_u8s8_acc)
#else
constexpr bool kVnni256 = false;
#endif
constexpr bool kOffsetBytes = kVnni256;  // u8 x s8 dots take Q8_0R's q + 128 bytes as they are

// acc + sum of (v - 128) x over 8 lanes of 4 (Q8_0R bytes v): where VNNI is not there, the bytes
// go back to signed q and the sign moves onto the activations (maddubs saturates beyond 127 * 255).
// With VNNI it adds sum of v x: the caller subtracts 128 * sum(x).
inline __m256i dot_q8r_acc(__m256i acc, __m256i v, __m256i x) {
  if constexpr (kOffsetBytes) return dot_u8s8_acc(acc, v, x);
  const __m256i q = _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80)));
  return _mm256_add_epi32(acc, dot_u8s8_i32(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q)));
}
#endif

#if defined(TANDEM_AVX2) && !defined(TANDEM_ZMM_DOT)
// dot_tile512's 8-row form for AVX2 (rows 0-7 or 8-15 of a tile: half of each 64-byte load). Q8:
// Q8_0R's q + 128 bytes (dot_q8r_acc), else 4-bit values as they are.
template <bool TWO, int EVEN, bool Q8>
inline __m256i dot_tile256(const __m256i* u, const Acts& a, int64_t b) {
  const int8_t* y = a.qs + QK * b;
  const int8_t* y2 = TWO ? a.qs2 + QK * b : y;
  if constexpr (!Q8 && !kVnni256) {
    // 4-bit values (<= 15) times int8: a maddubs pair is at most 2 * 15 * 127, the block's eight
    // at most 30,480, so they add up in int16 and widen once (one madd, not eight)
    __m256i s16 = _mm256_setzero_si256(), t16 = s16;
    for (int j = 0; j < 8; ++j) {
      const int e = j < 4 ? 4 * j : 16 + 4 * (j - 4);  // u[j]'s first element
      s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(u[j], _mm256_set1_epi32(quad(y + e))));
      if (TWO) t16 = _mm256_add_epi16(t16, _mm256_maddubs_epi16(u[j], _mm256_set1_epi32(quad(y2 + e))));
    }
    const __m256i ones = _mm256_set1_epi16(1), lo = _mm256_madd_epi16(s16, ones);
    return TWO ? _mm256_add_epi32(times254(lo), _mm256_madd_epi16(t16, ones)) : lo;
  }
  auto acc = [](__m256i sum, __m256i v, const int8_t* x) {
    const __m256i xs = _mm256_set1_epi32(quad(x));
    return Q8 ? dot_q8r_acc(sum, v, xs) : dot_u8s8_acc(sum, v, xs);
  };
  __m256i s[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()}, t[2] = {s[0], s[1]};
  for (int j = 0; j < 8; ++j) {
    const int e = EVEN == 8 ? 4 * j : (j < 4 ? 4 * j : 16 + 4 * (j - 4));  // u[j]'s first element
    s[j % 2] = acc(s[j % 2], u[j], y + e);
    if (TWO) t[j % 2] = acc(t[j % 2], u[j], y2 + e);
  }
  const __m256i lo = _mm256_add_epi32(s[0], s[1]);
  return TWO ? _mm256_add_epi32(times254(lo), _mm256_add_epi32(t[0], t[1])) : lo;
}
#endif

// out[r] = row r of a repacked tile . int8 activations, r < 16 (TWO: two-level rows). Each row
// sums its blocks in order in its own lane: sum_b d_b da_b dot(q_b, x_b) + m_b s_b.
template <bool WITH_MIN, bool TWO>
void dot_tile_q4(const uint8_t* t, const Acts& a, int64_t nb, float* out) {
  constexpr int64_t kStride = kTileRows * (WITH_MIN ? 20 : 18);
#if defined(TANDEM_ZMM_DOT)
  const __m512i mask4 = _mm512_set1_epi8(0x0F);
  __m512 acc = _mm512_setzero_ps(), off = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = t + b * kStride;
    prefetch<2>(p + kStreamAhead, kStride);
    __m512i u[8];
    for (int j = 0; j < 4; ++j) {
      const __m512i v = _mm512_loadu_si512(p + 64 * j);
      u[j] = _mm512_and_si512(v, mask4);
      u[4 + j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask4);
    }
    __m512i i = dot_tile512<TWO, 4>(u, a, b);
    const __m512 d = _mm512_cvtph_ps(load256(p + 256));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(d, _mm512_set1_ps(a.d[b])), acc);
    off = _mm512_fmadd_ps(WITH_MIN ? _mm512_cvtph_ps(load256(p + 288)) : d, _mm512_set1_ps(a.s[b]), off);
  }
  _mm512_storeu_ps(out, WITH_MIN ? _mm512_add_ps(acc, off) : _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), off, acc));
#elif defined(TANDEM_AVX2)
  const __m256i mask4 = _mm256_set1_epi8(0x0F);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, off[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = t + b * kStride;
    prefetch<2>(p + kStreamAhead, kStride);
    for (int h = 0; h < 2; ++h) {  // rows 8 h .. 8 h + 7: the second 32 bytes of each 64
      __m256i u[8];
      for (int j = 0; j < 4; ++j) {
        const __m256i v = load256(p + 64 * j + 32 * h);
        u[j] = _mm256_and_si256(v, mask4);
        u[4 + j] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask4);
      }
      const __m256i i = dot_tile256<TWO, 4, false>(u, a, b);
      const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 256 + 16 * h)));
      const __m256 m =
          WITH_MIN ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 288 + 16 * h))) : d;
      acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(d, _mm256_set1_ps(a.d[b])), acc[h]);
      off[h] = _mm256_fmadd_ps(m, _mm256_set1_ps(a.s[b]), off[h]);
    }
  }
  for (int h = 0; h < 2; ++h) {
    _mm256_storeu_ps(out + 8 * h, WITH_MIN ? _mm256_add_ps(acc[h], off[h])
                                           : _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), off[h], acc[h]));
  }
#else
  for (int64_t r = 0; r < kTileRows; ++r) {
    float total = 0.0f, offsets = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = t + b * kStride;
      uint8_t q[16];
      tile_row_nibbles(p, r, q);
      int sum = 0, sum2 = 0;
      for (int64_t i = 0; i < 16; ++i) {
        sum += (q[i] & 0x0F) * a.qs[QK * b + i] + (q[i] >> 4) * a.qs[QK * b + i + 16];
        if (TWO) sum2 += (q[i] & 0x0F) * a.qs2[QK * b + i] + (q[i] >> 4) * a.qs2[QK * b + i + 16];
      }
      if (TWO) sum = 254 * sum + sum2;
      const float d = f16(p + 256 + 2 * r);
      total += d * a.d[b] * static_cast<float>(sum);
      offsets += (WITH_MIN ? f16(p + 288 + 2 * r) : d) * a.s[b];
    }
    out[r] = total + (WITH_MIN ? offsets : -8.0f * offsets);
  }
#endif
}

// 16 GGML rows of Q8_0 blocks, `row_bytes` apart -> one repacked tile at `out` (distinct).
void repack_tile_q8(const uint8_t* rows, int64_t row_bytes, uint8_t* out, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* o = out + b * kTileRows * 34;
    for (int64_t r = 0; r < kTileRows; ++r) {
      const uint8_t* blk = rows + r * row_bytes + b * 34;
      for (int64_t e = 0; e < QK; ++e) o[e / 4 * 64 + 4 * r + e % 4] = blk[2 + e] ^ 0x80;
      std::memcpy(o + 512 + 2 * r, blk, 2);
    }
  }
}

// out[r] = row r of a repacked Q8_0 tile . int8 activations, r < 16 (TWO: two-level rows).
template <bool TWO>
void dot_tile_q8(const uint8_t* t, const Acts& a, int64_t nb, float* out) {
  constexpr int64_t kStride = kTileRows * 34;
#if defined(TANDEM_ZMM_DOT)
  __m512 acc = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = t + b * kStride;
    prefetch<2>(p + kStreamAhead, kStride);
    __m512i u[8];
    for (int j = 0; j < 8; ++j) u[j] = _mm512_loadu_si512(p + 64 * j);
    const __m512i i = _mm512_sub_epi32(dot_tile512<TWO, 8>(u, a, b), _mm512_set1_epi32(128 * a.sq[b]));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(_mm512_cvtph_ps(load256(p + 512)), _mm512_set1_ps(a.d[b])), acc);
  }
  _mm512_storeu_ps(out, acc);
#elif defined(TANDEM_AVX2)
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = t + b * kStride;
    prefetch<2>(p + kStreamAhead, kStride);
    for (int h = 0; h < 2; ++h) {  // rows 8 h .. 8 h + 7: the second 32 bytes of each 64
      __m256i u[8];
      for (int j = 0; j < 8; ++j) u[j] = load256(p + 64 * j + 32 * h);
      __m256i i = dot_tile256<TWO, 8, true>(u, a, b);
      if (kOffsetBytes) i = _mm256_sub_epi32(i, _mm256_set1_epi32(128 * a.sq[b]));
      const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 512 + 16 * h)));
      acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(d, _mm256_set1_ps(a.d[b])), acc[h]);
    }
  }
  for (int h = 0; h < 2; ++h) _mm256_storeu_ps(out + 8 * h, acc[h]);
#else
  for (int64_t r = 0; r < kTileRows; ++r) {
    float total = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = t + b * kStride;
      int sum = 0, sum2 = 0;
      for (int64_t e = 0; e < QK; ++e) {
        const int q = static_cast<int>(p[e / 4 * 64 + 4 * r + e % 4]) - 128;
        sum += q * a.qs[QK * b + e];
        if (TWO) sum2 += q * a.qs2[QK * b + e];
      }
      if (TWO) sum = 254 * sum + sum2;
      total += f16(p + 512 + 2 * r) * a.d[b] * static_cast<float>(sum);
    }
    out[r] = total;
  }
#endif
}

// ---- many activation rows against one tile (prefill) -----------------------------

// Activation rows a batched tile dot takes at once: each unpacked weight vector serves all of
// them while it is in a register (AVX-512: 8 weight vectors and 8 accumulators of 32 registers;
// AVX2 has 16, so half as many rows).
#if defined(TANDEM_ZMM_DOT)
constexpr int64_t kBatchRows = 8;
#else
constexpr int64_t kBatchRows = 4;
#endif

// out[i * ld + r] = row r of a repacked tile (format FMT) . one-level activation row a[i], for
// r < 16 and i < kBatchRows: the prompt's matmuls as int8 dot products, the weights unpacked once
// for kBatchRows rows. Each output keeps one fp32 sum over the blocks: the Q4_0 and Q8_0R offsets
// go into the integer sums (-8 or -128 times the block's integer sum of x), Q4_1's minimum adds a
// second multiply-add. Only the SIMD builds have it (gemm_tile_fn).
#if defined(TANDEM_AVX2)
// A mixed row's second level as a one-level row of its own (its blocks' values qs2).
inline Acts second_level(const Acts& a) { return {a.qs2, a.d, a.s, a.sq2, nullptr, nullptr, nullptr}; }

template <int64_t FMT>
void gemm_tile(const uint8_t* t, const Acts* a, int64_t nb, float* out, int64_t ld) {
  constexpr bool Q8 = FMT == Q8_0R, MIN = FMT == Q4_1R;
  constexpr int64_t kStride = kTileRows * (Q8 ? 34 : MIN ? 20 : 18), kScales = Q8 ? 512 : 256;
  constexpr int EVEN = Q8 ? 8 : 4;
  constexpr int32_t kOffset = Q8 ? 128 : 8;
  constexpr int T = kBatchRows;
#if defined(TANDEM_ZMM_DOT)
  const __m512i mask4 = _mm512_set1_epi8(0x0F);
  __m512 acc[T];
  for (int i = 0; i < T; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = t + b * kStride;
    __m512i u[8];
    for (int j = 0; j < (Q8 ? 8 : 4); ++j) {
      const __m512i v = _mm512_loadu_si512(p + 64 * j);
      if (Q8) {
        u[j] = v;
      } else {
        u[j] = _mm512_and_si512(v, mask4);
        u[4 + j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask4);
      }
    }
    const __m512 d = _mm512_cvtph_ps(load256(p + kScales));
    const __m512 mn = MIN ? _mm512_cvtph_ps(load256(p + 288)) : d;
    for (int i = 0; i < T; ++i) {
      __m512i s = dot_tile512<false, EVEN>(u, a[i], b);
      if (!MIN) s = _mm512_sub_epi32(s, _mm512_set1_epi32(kOffset * a[i].sq[b]));
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(a[i].d[b])), acc[i]);
      if (a[i].two && a[i].two[b]) {
        __m512i s2 = dot_tile512<false, EVEN>(u, second_level(a[i]), b);
        if (!MIN) s2 = _mm512_sub_epi32(s2, _mm512_set1_epi32(kOffset * a[i].sq2[b]));
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s2), _mm512_mul_ps(d, _mm512_set1_ps(a[i].d[b] / 254.0f)), acc[i]);
      }
      if (MIN) acc[i] = _mm512_fmadd_ps(mn, _mm512_set1_ps(a[i].s[b]), acc[i]);
    }
  }
  for (int i = 0; i < T; ++i) _mm512_storeu_ps(out + i * ld, acc[i]);
#else
  const __m256i mask4 = _mm256_set1_epi8(0x0F);
  // Without VNNI, Q8_0R's bytes go back to signed in the dot (dot_q8r_acc): no offset to take off.
  constexpr bool kSubtract = Q8 ? kOffsetBytes : !MIN;
  for (int h = 0; h < 2; ++h) {  // rows 8 h .. 8 h + 7: the second 32 bytes of each 64
    __m256 acc[T];
    for (int i = 0; i < T; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = t + b * kStride;
      __m256i u[8];
      for (int j = 0; j < (Q8 ? 8 : 4); ++j) {
        const __m256i v = load256(p + 64 * j + 32 * h);
        if (Q8) {
          u[j] = v;
        } else {
          u[j] = _mm256_and_si256(v, mask4);
          u[4 + j] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask4);
        }
      }
      const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + kScales + 16 * h)));
      const __m256 mn = MIN ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 288 + 16 * h))) : d;
      for (int i = 0; i < T; ++i) {
        __m256i s = dot_tile256<false, EVEN, Q8>(u, a[i], b);
        if (kSubtract) s = _mm256_sub_epi32(s, _mm256_set1_epi32(kOffset * a[i].sq[b]));
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, _mm256_set1_ps(a[i].d[b])), acc[i]);
        if (a[i].two && a[i].two[b]) {
          __m256i s2 = dot_tile256<false, EVEN, Q8>(u, second_level(a[i]), b);
          if (kSubtract) s2 = _mm256_sub_epi32(s2, _mm256_set1_epi32(kOffset * a[i].sq2[b]));
          acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s2), _mm256_mul_ps(d, _mm256_set1_ps(a[i].d[b] / 254.0f)), acc[i]);
        }
        if (MIN) acc[i] = _mm256_fmadd_ps(mn, _mm256_set1_ps(a[i].s[b]), acc[i]);
      }
    }
    for (int i = 0; i < T; ++i) _mm256_storeu_ps(out + i * ld + 8 * h, acc[i]);
  }
#endif
}
#endif

// ---- one weight row . one activation row ----------------------------------------

// How far ahead the 4-bit dots prefetch: the next row, or this many bytes where rows are
// shorter (a DRAM access takes ~100 ns, a short row's dot less).
constexpr int64_t kPrefetchBytes = 2048;

// Repacked 4-bit row . int8 activations (TWO: two-level rows): sum_b d_b da_b dot(q_b, x_b) + m_b s_b.
template <bool WITH_MIN, bool TWO>
float dot_q4r(const uint8_t* w, const Acts& a, int64_t nb) {
  const uint8_t* nib = w;
  const uint8_t* dw = w + nb * 16;
  const uint8_t* mw = dw + nb * 2;  // Q4_1R only
  const int64_t full = nb / 4 * 4;
  float total = 0.0f, offsets = 0.0f;  // offsets: sum of m_b s_b (Q4_1) or d_b s_b (Q4_0, times -8 at the end)
  int64_t b = 0;
#ifdef TANDEM_AVX2
  // The row reads three planes at once (nibbles, scales, minimums), which the hardware
  // prefetcher does not follow: the vector loops below fetch the next row (rows are
  // contiguous), at least kPrefetchBytes ahead, as this one goes.
  constexpr int64_t kBlockBytes = WITH_MIN ? 20 : 18;
  const char* next = reinterpret_cast<const char*>(w) + std::max<int64_t>(nb * kBlockBytes, kPrefetchBytes);
#endif
#if defined(TANDEM_ZMM_DOT)
  {
    // Lanes of one group's two dot products (4 int32 a lane, two lanes a block) -> its scale.
    __m512i lo_idx[4], hi_idx[4];
    for (int j = 0; j < 4; ++j) {
      lo_idx[j] = _mm512_setr_epi32(4 * j, 4 * j, 4 * j, 4 * j, 4 * j, 4 * j, 4 * j, 4 * j, 4 * j + 1, 4 * j + 1,
                                    4 * j + 1, 4 * j + 1, 4 * j + 1, 4 * j + 1, 4 * j + 1, 4 * j + 1);
      hi_idx[j] = _mm512_add_epi32(lo_idx[j], _mm512_set1_epi32(2));
    }
    const __m512i mask4 = _mm512_set1_epi8(0x0F);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), off = _mm512_setzero_ps();
    for (; b < full; b += 16) {
      for (int64_t at = b * kBlockBytes; at < (b + 16) * kBlockBytes; at += 64) _mm_prefetch(next + at, _MM_HINT_T0);
      const int64_t count = std::min<int64_t>(16, full - b);
      const __mmask16 live = static_cast<__mmask16>((1u << count) - 1);
      const __m512 wd = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, dw + 2 * b));
      const __m512 sc = _mm512_mul_ps(wd, _mm512_loadu_ps(a.d + b));
      const __m512 wm = WITH_MIN ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, mw + 2 * b)) : wd;
      off = _mm512_fmadd_ps(wm, _mm512_loadu_ps(a.s + b), off);
      for (int64_t j = 0; j < count / 4; ++j) {
        const __m512i q = _mm512_loadu_si512(nib + 16 * (b + 4 * j));
        const int64_t at = QK * (b + 4 * j);
        const int8_t* y = a.qs + at;
        const int8_t* y2 = TWO ? a.qs2 + at : nullptr;
        const __m512i plo = dot_acts512<TWO>(_mm512_and_si512(q, mask4), y, y2);
        const __m512i phi = dot_acts512<TWO>(_mm512_and_si512(_mm512_srli_epi16(q, 4), mask4), y + 64,
                                             TWO ? y2 + 64 : nullptr);
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(plo), _mm512_permutexvar_ps(lo_idx[j], sc), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(phi), _mm512_permutexvar_ps(hi_idx[j], sc), acc1);
      }
    }
    b = full;
    total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    offsets = _mm512_reduce_add_ps(off);
  }
#elif defined(TANDEM_AVX2)
  {
    const __m256i lane[4] = {_mm256_set1_epi32(0), _mm256_set1_epi32(1), _mm256_set1_epi32(2), _mm256_set1_epi32(3)};
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m128 off = _mm_setzero_ps();
    for (; b < full; b += 4) {
      _mm_prefetch(next + b * kBlockBytes, _MM_HINT_T0);
      _mm_prefetch(next + b * kBlockBytes + 64, _MM_HINT_T0);
      const __m128 wd = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(dw + 2 * b)));
      const __m256 sc = _mm256_castps128_ps256(_mm_mul_ps(wd, _mm_loadu_ps(a.d + b)));
      const __m128 wm = WITH_MIN ? _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mw + 2 * b))) : wd;
      off = _mm_fmadd_ps(wm, _mm_loadu_ps(a.s + b), off);
      const __m256i q02 = load256(nib + 16 * b), q13 = load256(nib + 16 * b + 32);
      const int8_t* y = a.qs + QK * b;
      const int8_t* y2 = TWO ? a.qs2 + QK * b : y;  // y2 is read only when TWO
      auto dot = [&](__m256i u, int64_t off) { return _mm256_cvtepi32_ps(dot_acts<TWO>(u, y + off, y2 + off)); };
      acc0 = _mm256_fmadd_ps(dot(low_nibbles(q02), 0), _mm256_permutevar8x32_ps(sc, lane[0]), acc0);
      acc1 = _mm256_fmadd_ps(dot(low_nibbles(q13), 32), _mm256_permutevar8x32_ps(sc, lane[1]), acc1);
      acc0 = _mm256_fmadd_ps(dot(high_nibbles(q02), 64), _mm256_permutevar8x32_ps(sc, lane[2]), acc0);
      acc1 = _mm256_fmadd_ps(dot(high_nibbles(q13), 96), _mm256_permutevar8x32_ps(sc, lane[3]), acc1);
    }
    total = hsum(_mm256_add_ps(acc0, acc1));
    offsets = hsum128(off);
  }
#endif
  for (; b < nb; ++b) {
    const float d = f16(dw + 2 * b);
    int sum = 0;
#ifdef TANDEM_AVX2
    sum = hsum_i32(dot_acts<TWO>(block_nibbles(nib, b, nb), a.qs + QK * b, TWO ? a.qs2 + QK * b : a.qs));
#else
    int sum2 = 0;
    for (int64_t i = 0; i < QK; ++i) {
      const auto [at, high] = nibble_at(b, i, nb);
      const int q = high ? nib[at] >> 4 : nib[at] & 0x0F;
      sum += q * a.qs[QK * b + i];
      if (TWO) sum2 += q * a.qs2[QK * b + i];
    }
    if (TWO) sum = 254 * sum + sum2;
#endif
    total += d * a.d[b] * static_cast<float>(sum);
    offsets += (WITH_MIN ? f16(mw + 2 * b) : d) * a.s[b];
  }
  return total + (WITH_MIN ? offsets : -8.0f * offsets);
}

// Q8_0 / I8 row . int8 activations, one or two levels (I8's per-row scale is applied by the caller).
template <int64_t FMT, bool TWO>
float dot_q8(const uint8_t* w, const Acts& a, int64_t nb) {
  constexpr int64_t size = FMT == Q8_0 ? 34 : QK, head = FMT == Q8_0 ? 2 : 0;
  auto scale = [&](int64_t b) { return (FMT == Q8_0 ? f16(w + b * size) : 1.0f) * a.d[b]; };
#ifdef TANDEM_AVX2
  auto y = [&](int64_t b) { return a.qs + QK * b; };
  auto y2 = [&](int64_t b) { return (TWO ? a.qs2 : a.qs) + QK * b; };  // read only when TWO
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
#if defined(TANDEM_ZMM_DOT)
  {
    // Two blocks a 64-byte vector, two vectors an iteration; the weights' sign moves onto the activations.
    auto pair = [&](int64_t c) {
      const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(load256(w + c * size + head)),
                                           load256(w + (c + 1) * size + head), 1);
      const __mmask64 neg = _mm512_movepi8_mask(q);
      const __m512i u = _mm512_abs_epi8(q), zero = _mm512_setzero_si512();
      const __m512i y1 = _mm512_loadu_si512(y(c));
      __m512i i = _mm512_dpbusd_epi32(zero, u, _mm512_mask_sub_epi8(y1, neg, zero, y1));
      if (TWO) {
        const __m512i y2v = _mm512_loadu_si512(y2(c));
        i = _mm512_dpbusd_epi32(_mm512_sub_epi32(_mm512_slli_epi32(i, 8), _mm512_slli_epi32(i, 1)), u,
                                _mm512_mask_sub_epi8(y2v, neg, zero, y2v));
      }
      const __m512 sc = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(scale(c)), _mm512_set1_ps(scale(c + 1)));
      return std::pair<__m512i, __m512>{i, sc};
    };
    __m512 z0 = _mm512_setzero_ps(), z1 = _mm512_setzero_ps();
    for (; b + 3 < nb; b += 4) {
      const auto [i0, s0] = pair(b);
      const auto [i1, s1] = pair(b + 2);
      z0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), s0, z0);
      z1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1), s1, z1);
    }
    const __m512 z = _mm512_add_ps(z0, z1);
    acc0 = _mm256_add_ps(_mm512_castps512_ps256(z), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z), 1)));
  }
#endif
  // two blocks per iteration on independent accumulators, for instruction-level parallelism
  for (; b + 1 < nb; b += 2) {
    const __m256i q0 = load256(w + b * size + head), q1 = load256(w + (b + 1) * size + head);
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(scale(b)), dot_s8_acts<TWO>(q0, y(b), y2(b)), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(scale(b + 1)), dot_s8_acts<TWO>(q1, y(b + 1), y2(b + 1)), acc1);
  }
  if (b < nb) acc0 = _mm256_fmadd_ps(_mm256_set1_ps(scale(b)), dot_s8_acts<TWO>(load256(w + b * size + head), y(b),
                                                                                y2(b)), acc0);
  return hsum(_mm256_add_ps(acc0, acc1));
#else
  float total = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const int8_t* qs = reinterpret_cast<const int8_t*>(w + b * size + head);
    int sum = 0, sum2 = 0;
    for (int j = 0; j < QK; ++j) sum += qs[j] * a.qs[QK * b + j];
    if (TWO) {
      for (int j = 0; j < QK; ++j) sum2 += qs[j] * a.qs2[QK * b + j];
      sum = 254 * sum + sum2;
    }
    total += scale(b) * static_cast<float>(sum);
  }
  return total;
#endif
}

// ---- a whole matrix -------------------------------------------------------------

// A quantized weight matrix [n, k] as the kernels read it (scales: I8's per-row fp32 scales).
struct QWeights {
  const uint8_t* w;
  const float* scales;
  int64_t fmt, n, k, row_bytes;

  int64_t nb() const { return k / QK; }
  // Rows held in 16-row tiles (the repacked formats' whole tiles); the rest are rows of their own.
  int64_t tiled_rows() const { return repacked(fmt) ? n / kTileRows * kTileRows : 0; }
  const uint8_t* row(int64_t r) const { return w + r * row_bytes; }
  // Block b of the tile holding row r (r < tiled_rows()), tile blocks of `block` bytes a row.
  const uint8_t* tile_block(int64_t r, int64_t b, int64_t block) const {
    return w + r / kTileRows * kTileRows * row_bytes + b * kTileRows * block;
  }
  float scale(int64_t r) const { return scales ? scales[r] : 1.0f; }
};

// Rows [r0, r1) of part `part` of `parts` of an n-row matrix, cut at tile boundaries (the last
// part takes the rows after the last whole tile).
inline std::pair<int64_t, int64_t> rows_of_part(int64_t n, int64_t part, int64_t parts) {
  const int64_t units = (n + kTileRows - 1) / kTileRows;
  return {std::min(n, units * part / parts * kTileRows), std::min(n, units * (part + 1) / parts * kTileRows)};
}

// ---- dequantize rows to fp32 -----------------------------------------------------

template <int64_t FMT>
void dequantize_row(const QWeights& m, int64_t r, float* out) {
  if constexpr (FMT == Q8_0R) {
    if (r >= m.tiled_rows()) return dequantize_row<Q8_0>(m, r, out);  // the rows after the tiles: GGML rows
  }
  const int64_t nb = m.nb();
  const uint8_t* w = m.row(r);
  for (int64_t b = 0; b < nb; ++b) {
    float* o = out + b * QK;
    if constexpr (FMT == Q4_0R || FMT == Q4_1R) {
      constexpr int64_t size = FMT == Q4_1R ? 20 : 18;
      float d, mn;
      uint8_t tiled[16];  // a tiled row's block in GGML order
      const bool in_tile = r < m.tiled_rows();
      if (in_tile) {
        const uint8_t* p = m.tile_block(r, b, size);
        const int64_t lane = r % kTileRows;
        tile_row_nibbles(p, lane, tiled);
        d = f16(p + 256 + 2 * lane);
        mn = FMT == Q4_1R ? f16(p + 288 + 2 * lane) : -8.0f * d;
      } else {
        d = f16(w + nb * 16 + 2 * b);
        mn = FMT == Q4_1R ? f16(w + nb * 18 + 2 * b) : -8.0f * d;
      }
#ifdef TANDEM_AVX2
      const __m256i q = in_tile ? nibbles(tiled) : block_nibbles(w, b, nb);
      const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(mn);
      for (int part = 0; part < 4; ++part) {
        const __m128i bytes = part < 2 ? _mm256_castsi256_si128(q) : _mm256_extracti128_si256(q, 1);
        const __m128i eight = part % 2 ? _mm_srli_si128(bytes, 8) : bytes;
        const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(eight));
        _mm256_storeu_ps(o + 8 * part, _mm256_fmadd_ps(v, vd, vm));
      }
#else
      for (int64_t i = 0; i < QK; ++i) {
        int q;
        if (in_tile) {
          q = i < 16 ? tiled[i] & 0x0F : tiled[i - 16] >> 4;
        } else {
          const auto [at, high] = nibble_at(b, i, nb);
          q = high ? w[at] >> 4 : w[at] & 0x0F;
        }
        o[i] = static_cast<float>(q) * d + mn;
      }
#endif
    } else if constexpr (FMT == Q4_0 || FMT == Q4_1) {
      const uint8_t* blk = w + b * (FMT == Q4_0 ? 18 : 20);
      const float d = f16(blk);
      const float mn = FMT == Q4_1 ? f16(blk + 2) : -8.0f * d;
      const uint8_t* qs = blk + (FMT == Q4_0 ? 2 : 4);
      for (int j = 0; j < 16; ++j) {
        o[j] = static_cast<float>(qs[j] & 0x0F) * d + mn;
        o[j + 16] = static_cast<float>(qs[j] >> 4) * d + mn;
      }
    } else if constexpr (FMT == Q8_0R) {
      const uint8_t* p = m.tile_block(r, b, 34);
      const int64_t lane = r % kTileRows;
      const float d = f16(p + 512 + 2 * lane);
      for (int64_t e = 0; e < QK; ++e) {
        o[e] = static_cast<float>(static_cast<int>(p[e / 4 * 64 + 4 * lane + e % 4]) - 128) * d;
      }
    } else {
      const uint8_t* blk = FMT == Q8_0 ? w + b * 34 : w + b * QK;
      const float d = FMT == Q8_0 ? f16(blk) : m.scale(r);
      const int8_t* qs = reinterpret_cast<const int8_t*>(FMT == Q8_0 ? blk + 2 : blk);
      for (int j = 0; j < QK; ++j) o[j] = static_cast<float>(qs[j]) * d;
    }
  }
}

using DotFn = float (*)(const uint8_t*, const Acts&, int64_t);
using TileDotFn = void (*)(const uint8_t*, const Acts&, int64_t, float*);
using DequantFn = void (*)(const QWeights&, int64_t, float*);

const char* const kNotRepacked =
    "4-bit weights in GGML order have no dot kernel: repack them first (torch.ops.tandem.repack)";

// The dot for one row of weight format `fmt` against one-level activation rows, or two-level ones (Acts).
DotFn dot_fn(int64_t fmt, bool two_levels = false) {
  switch (fmt) {
    case Q4_0R: return two_levels ? dot_q4r<false, true> : dot_q4r<false, false>;
    case Q4_1R: return two_levels ? dot_q4r<true, true> : dot_q4r<true, false>;
    case Q8_0: case Q8_0R: return two_levels ? dot_q8<Q8_0, true> : dot_q8<Q8_0, false>;
    case I8: return two_levels ? dot_q8<I8, true> : dot_q8<I8, false>;
  }
  TORCH_CHECK(false, kNotRepacked);
}

// The dot for one tile of a repacked format (null for the formats without tiles).
TileDotFn tile_dot_fn(int64_t fmt, bool two_levels) {
  switch (fmt) {
    case Q4_0R: return two_levels ? dot_tile_q4<false, true> : dot_tile_q4<false, false>;
    case Q4_1R: return two_levels ? dot_tile_q4<true, true> : dot_tile_q4<true, false>;
    case Q8_0R: return two_levels ? dot_tile_q8<true> : dot_tile_q8<false>;
  }
  return nullptr;
}

using GemmTileFn = void (*)(const uint8_t*, const Acts*, int64_t, float*, int64_t);

// The batched tile dot of a repacked format (null where there is none: other formats, the
// portable build).
GemmTileFn gemm_tile_fn(int64_t fmt) {
#if defined(TANDEM_AVX2)
  switch (fmt) {
    case Q4_0R: return gemm_tile<Q4_0R>;
    case Q4_1R: return gemm_tile<Q4_1R>;
    case Q8_0R: return gemm_tile<Q8_0R>;
  }
#endif
  return nullptr;
}

// Weight bytes of the tiles a batched pass takes through every activation row before moving on:
// they stay in the core's L2 while the activations stream past.
constexpr int64_t kTileGroupBytes = 256 << 10;

// out[i * ld + r] = row r of `m` . acts[i] for rows [r0, r1) (cut at tile boundaries: rows_of_part)
// and the m_rows activation rows. Each tile is read from memory once for all of them: one-level
// and mixed rows go kBatchRows at a time through the batched dot where the format has one (mixed
// rows only there: a caller passes them for kBatchRows rows or more of a matrix of whole tiles).
void dot_rows(const QWeights& m, const Acts* acts, int64_t m_rows, bool two_levels, int64_t r0, int64_t r1,
              float* out, int64_t ld) {
  const int64_t nb = m.nb(), tiled = std::min(r1, m.tiled_rows());
  int64_t r = r0;
  if (r < tiled) {
    const TileDotFn tile = tile_dot_fn(m.fmt, two_levels);
    const GemmTileFn gemm = two_levels ? nullptr : gemm_tile_fn(m.fmt);
    const int64_t batched = gemm ? m_rows / kBatchRows * kBatchRows : 0;
    // The rows after the last whole batch go through the batched dot too, as one padded batch
    // (repeats of the last row, their sums written to `spare`), so that every row of a mixed
    // matmul gets the same arithmetic; fewer rows than a batch take the one-row tile dot.
    const int64_t left = batched ? m_rows - batched : 0;
    Acts padded[kBatchRows];
    for (int64_t j = 0; j < kBatchRows; ++j) padded[j] = acts[std::min(batched + j, m_rows - 1)];
    float spare[kBatchRows * kTileRows];
    const int64_t group = kTileRows * std::max<int64_t>(1, kTileGroupBytes / (kTileRows * m.row_bytes));
    for (; r < tiled; r = std::min(tiled, r + group)) {
      const int64_t end = std::min(tiled, r + group);
      for (int64_t i = 0; i < batched; i += kBatchRows) {
        for (int64_t t = r; t < end; t += kTileRows) gemm(m.row(t), acts + i, nb, out + i * ld + t, ld);
      }
      for (int64_t t = r; left && t < end; t += kTileRows) {
        gemm(m.row(t), padded, nb, spare, kTileRows);
        for (int64_t j = 0; j < left; ++j) std::memcpy(out + (batched + j) * ld + t, spare + j * kTileRows, sizeof(spare) / kBatchRows);
      }
      for (int64_t i = batched + left; i < m_rows; ++i) {
        for (int64_t t = r; t < end; t += kTileRows) tile(m.row(t), acts[i], nb, out + i * ld + t);
      }
    }
  }
  const DotFn dot = dot_fn(m.fmt, two_levels);
  for (; r < r1; ++r) {
    for (int64_t i = 0; i < m_rows; ++i) out[i * ld + r] = m.scale(r) * dot(m.row(r), acts[i], nb);
  }
}

DequantFn dequant_fn(int64_t fmt) {
  switch (fmt) {
    case Q4_0: return dequantize_row<Q4_0>;
    case Q4_1: return dequantize_row<Q4_1>;
    case Q8_0: return dequantize_row<Q8_0>;
    case Q4_0R: return dequantize_row<Q4_0R>;
    case Q4_1R: return dequantize_row<Q4_1R>;
    case Q8_0R: return dequantize_row<Q8_0R>;
    default: return dequantize_row<I8>;
  }
}

void check_weight(const at::Tensor& w, const c10::optional<at::Tensor>& scales, int64_t fmt, int64_t k) {
  TORCH_CHECK(fmt >= Q4_0 && fmt <= Q8_0R, "unknown weight format ", fmt);
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

// The checked matrix of a weight tensor [n, row bytes].
QWeights weights(const at::Tensor& w, const c10::optional<at::Tensor>& scales, int64_t fmt, int64_t k) {
  check_weight(w, scales, fmt, k);
  return {w.data_ptr<uint8_t>(), fmt == I8 ? scales->data_ptr<float>() : nullptr, fmt, w.size(0), k, w.size(1)};
}

}  // namespace
