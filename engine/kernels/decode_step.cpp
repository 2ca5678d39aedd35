// One decode token through every transformer layer in a single native call.
//
// A small model decodes in a few milliseconds, and run op by op from Python a
// third of that went to dispatching ~3,000 tiny ops a token (norms, RoPE,
// cache writes, attention, residuals). Here each layer is RMSNorm -> int8
// activation blocks -> QKV -> RoPE -> cache append -> attention -> WO ->
// residual -> RMSNorm -> W13 -> SwiGLU -> W2 -> residual, in plain loops over
// buffers allocated once per call. The threads enter one parallel region per
// token and meet at spin barriers between phases: a fork/join per matmul (150
// a token) costs ~35 us each once another thread of the process has its own
// OpenMP team (libgomp then stops spinning and parks its workers), which made
// the step 3x slower next to an in-process server. The arithmetic is the
// per-op path's: the same activation rounding before every matmul, fp32
// everywhere else.

#include <torch/library.h>

#include <atomic>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "quant_blocks.h"

namespace {

QWeights matrix(const at::Tensor& w, const c10::optional<at::Tensor>& scales, int64_t fmt, int64_t n, int64_t k,
                const char* name) {
  TORCH_CHECK(w.size(0) == n, name, " has ", w.size(0), " output rows, expected ", n);
  return weights(w, scales, fmt, k);
}

inline void pause() {
#ifdef TANDEM_AVX2
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Pauses a waiting thread spins before it starts yielding its core (~10-50 us).
constexpr int kSpins = 1 << 12;

// Spin while the others are close behind; once that takes long, a peer is
// probably off its core (more threads than cores), so give the core away
// instead of burning its time slice.
template <typename Done>
void wait_until(const Done& done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins < kSpins) {
      pause();
    } else {
      std::this_thread::yield();
    }
  }
}

// The threads of one decode step: `tid` of `n`, and a spinning barrier between phases.
struct Team {
  int tid, n;
  std::atomic<int>* count;
  std::atomic<int>* phase;

  void sync() const {
    if (n == 1) return;
    const int ph = phase->load(std::memory_order_acquire);
    if (count->fetch_add(1, std::memory_order_acq_rel) == n - 1) {
      count->store(0, std::memory_order_relaxed);
      phase->fetch_add(1, std::memory_order_release);
    } else {
      wait_until([&] { return phase->load(std::memory_order_acquire) != ph; });
    }
  }
  bool leader() const { return tid == 0; }
};

// This thread's share of out = W x (a contiguous run of rows, whole tiles), x given as int8 blocks
// (two levels: see Acts).
void matvec(const QWeights& m, const Acts& x, float* out, const Team& team, bool two_levels = false) {
  const auto [r0, r1] = rows_of_part(m.n, team.tid, team.n);
  dot_rows(m, &x, 1, two_levels, r0, r1, out, m.n);
}

// Runs body(team) on the intra-op threads in one parallel region. The team is
// whoever at::parallel_for starts (one thread when called from inside another
// region), counted as they arrive, so the barriers never wait for a no-show.
// Steps from concurrent callers (sessions decoding on several Python threads)
// take turns: two teams spinning on the same two cores took 4x as long as turns.
template <typename Body>
void with_team(const Body& body) {
  static std::mutex turn;
  const std::lock_guard<std::mutex> hold(turn);
  const int64_t want = std::max(1, at::get_num_threads());
  std::atomic<int64_t> arrived{0};
  std::atomic<int> joined{0}, count{0}, phase{0};
  at::parallel_for(0, want, 1, [&](int64_t b, int64_t e) {
    const int tid = joined.fetch_add(1);
    arrived.fetch_add(e - b);
    wait_until([&] { return arrived.load() >= want; });
    body(Team{tid, joined.load(), &count, &phase});
  });
}

#ifdef TANDEM_AVX2
// e^x for x in [-87, 88] (Cephes' polynomial, ~1 ulp): softmax and SiLU need thousands a layer.
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

#ifdef TANDEM_AVX512
// The same e^x on 16 lanes; scalef applies 2^n without building the exponent by hand.
inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}
#endif

// The cache holds fp32 or fp16 (c10::Half) keys and values; fp16 halves the bytes
// attention streams per token. load8 reads 8 of either as fp32 lanes: fp16 is widened
// in the register (F16C), never a conversion of the whole cache. (8 lanes on AVX-512
// too: a head is 64-128 wide, and the sums keep the order the step's tests hold.)
inline float widen(float v) { return v; }
inline float widen(c10::Half v) { return static_cast<float>(v); }
#ifdef TANDEM_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const c10::Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
#endif

template <typename T>
float dot(const float* a, const T* b, int64_t n) {
  int64_t i = 0;
  float total = 0.0f;
#ifdef TANDEM_AVX2
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b + i), acc);
  total = hsum(acc);
#endif
  for (; i < n; ++i) total += a[i] * widen(b[i]);
  return total;
}

// y += a * x
template <typename T>
void axpy(float a, const T* x, float* y, int64_t n) {
  int64_t i = 0;
#ifdef TANDEM_AVX2
  const __m256 va = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load8(x + i), _mm256_loadu_ps(y + i)));
#endif
  for (; i < n; ++i) y[i] += a * widen(x[i]);
}

// A key or value row into the cache, rounded to its type (round-to-nearest-even, as torch's .half()).
void store_row(const float* x, float* out, int64_t n) { std::memcpy(out, x, n * sizeof(float)); }
void store_row(const float* x, c10::Half* out, int64_t n) {
  int64_t i = 0;
#ifdef TANDEM_AVX2
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
#endif
  for (; i < n; ++i) out[i] = static_cast<c10::Half>(x[i]);
}

// An int8 cache: one fp16 scale per row of `hd` values (engine/int8_rows.py, the KV codec's int8
// format), x ~= q * scale. Offsets are in values, always whole rows, as for the float caches.
struct I8Rows {
  int8_t* q;
  c10::Half* s;
  int64_t hd;
  I8Rows operator+(int64_t off) const { return {q + off, s + off / hd, hd}; }
};

// Symmetric int8 rounding of n values: scale = fp16(absmax / 127), q = round-half-even(x / scale),
// both as engine/int8_rows.py computes them (fp32 product with the scale's fp32 inverse), so the
// step and the torch path write the same bytes. Returns the scale as stored.
c10::Half round_int8(const float* x, int8_t* q, int64_t n) {
  float top = 0.0f;
  for (int64_t i = 0; i < n; ++i) top = std::max(top, std::fabs(x[i]));
  const c10::Half scale(top / 127.0f);
  const float inv = static_cast<float>(scale) == 0.0f ? 0.0f : 1.0f / static_cast<float>(scale);
  for (int64_t i = 0; i < n; ++i) {
    q[i] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, std::nearbyint(x[i] * inv))));
  }
  return scale;
}

void store_row(const float* x, I8Rows out, int64_t n) { *out.s = round_int8(x, out.q, n); }

// v[i] = exp(v[i] - shift); returns the sum.
float exp_shifted(float* v, int64_t n, float shift) {
  int64_t i = 0;
  float total = 0.0f;
#if defined(TANDEM_AVX512)
  const __m512 s = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(v + i), s));
    _mm512_storeu_ps(v + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  total = _mm512_reduce_add_ps(acc);
#elif defined(TANDEM_AVX2)
  const __m256 s = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(v + i), s));
    _mm256_storeu_ps(v + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  total = hsum(acc);
#endif
  for (; i < n; ++i) total += (v[i] = std::exp(v[i] - shift));
  return total;
}

// ---- attention ------------------------------------------------------------------------
// The query of an attention over an int8 cache is rounded to int16 (see score_int8).
// 32639 = 127 * 256 + 127: the largest int16 whose two signed bytes (q = 256 qh + ql, ql the low
// byte read as signed) both fit in int8, for the AVX-512 kernel's byte dot products.
constexpr float kQueryMax = 32639.0f;

// Each head's query rounded to int16 with its scale, once a step, before the items share them
// out; and, for score_int8_t, the same integers as two signed bytes each (hi, lo) with each head's
// bias = 128 * sum(q) (what the keys' +128 offset adds to q . k).
struct RoundedQueries {
  std::vector<int16_t> q;
  std::vector<float> scale;
  std::vector<int8_t> hi, lo;
  std::vector<int32_t> bias;
  int64_t hd;

  RoundedQueries(int64_t heads, int64_t hd) : q(heads * hd), scale(heads), hi(heads * hd), lo(heads * hd),
                                              bias(heads), hd(hd) {}

  void round(const float* x, int64_t heads) {
    for (int64_t h = 0; h < heads; ++h, x += hd) {
      float big = 0.0f;
      for (int64_t i = 0; i < hd; ++i) big = std::max(big, std::fabs(x[i]));
      scale[h] = big / kQueryMax;
      const float inv_q = big == 0.0f ? 0.0f : kQueryMax / big;
      int16_t* qh = q.data() + h * hd;
      for (int64_t i = 0; i < hd; ++i) qh[i] = static_cast<int16_t>(std::nearbyint(x[i] * inv_q));
#ifdef TANDEM_ZMM_DOT
      int32_t total = 0;
      for (int64_t i = h * hd; i < (h + 1) * hd; ++i) {
        lo[i] = static_cast<int8_t>(q[i] & 0xff);
        hi[i] = static_cast<int8_t>((q[i] - lo[i]) / 256);
        total += q[i];
      }
      bias[h] = 128 * total;
#endif
    }
  }
};

// The rounded queries of the heads from `head` on.
struct QueryView {
  const int16_t* q;
  const float* scale;
  const int8_t* hi;
  const int8_t* lo;
  const int32_t* bias;

  QueryView(const RoundedQueries& r, int64_t head)
      : q(r.q.data() + head * r.hd), scale(r.scale.data() + head), hi(r.hi.data() + head * r.hd),
        lo(r.lo.data() + head * r.hd), bias(r.bias.data() + head) {}
};

// A step's attention is cut into items: one kv head's query heads over a run of kChunk
// positions. The threads share out the items (a long cache is read once, half by each core,
// and 9 heads on 2 threads no longer leave one thread a head behind); each item is computed
// whole by one thread and the runs are merged in a fixed order, so the result does not depend
// on how many threads there are. An item leaves, per head, the largest score `top`, the sum of
// e^(score - top) and the unnormalized output sum_t e^(score_t - top) v_t (merge_runs).
constexpr int64_t kChunk = 256;

// The next item's keys (this thread's next run), asked into L2 a slice at a time while an item
// weighs its values, which is arithmetic on rows already near: its scoring then starts on keys
// that have arrived instead of waiting on each (SmolLM2, int8 cache at 1,000 positions: the
// attention's share of a step 0.42 -> 0.39 ms).
struct Ahead {
  const char* p = nullptr;
  int64_t bytes = 0;

  static Ahead rows(const float* r, int64_t values) { return {reinterpret_cast<const char*>(r), values * 4}; }
  static Ahead rows(const c10::Half* r, int64_t values) { return {reinterpret_cast<const char*>(r), values * 2}; }
  static Ahead rows(I8Rows r, int64_t values) { return {reinterpret_cast<const char*>(r.q), values}; }

  // Slice i of `steps`.
  void step(int64_t i, int64_t steps) const {
    if (bytes == 0) return;
    const int64_t per = (bytes / steps + 64) & ~int64_t{63}, off = i * per;
    if (off < bytes) prefetch<2>(p + off, std::min(per, bytes - off));
  }
};

// Query heads attended together: the heads sharing a kv head read each key and value once
// (loaded and widened once, used by every head of the group); up to this many at a time.
constexpr int64_t kMaxGroup = 4;

// f(std::integral_constant<int, G>) for G = heads (1..kMaxGroup): the grouped kernels take the
// group's size at compile time, so its queries and outputs stay in registers.
template <typename F>
void with_group_size(int64_t heads, const F& f) {
  switch (heads) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    default: return f(std::integral_constant<int, 4>{});
  }
}

// Attention asks for its rows ahead (prefetch, quant_blocks.h): keys kAhead rows ahead of the
// scores, each value row into L2 as its key is scored, and into L1 kAhead rows ahead of the
// weighing (fp16 cache of SmolLM2 at 1,000 positions: the attention's share of a step 1.31 ->
// 0.84 ms, ~the read bandwidth).
constexpr int64_t kAhead = 16;

#if defined(TANDEM_AVX512)
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const c10::Half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// 16 lanes added pairwise into 8 (AVX-512F only: no DQ extract)
inline __m256 fold(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// o_g = sum_t w_g[t] v_t for G heads over n value rows (head_dim = 16 * HD16), each row widened
// once for all heads, 64 lanes a pass so the outputs stay in registers: w_g[t] = p[g * stride + t].
template <int HD16, int G, typename T>
void weigh_values_zmm(const float* p, int64_t stride, const T* values, int64_t n, float* o, const Ahead& ahead) {
  static_assert(HD16 % 4 == 0, "values are weighed 64 lanes a pass");
  constexpr int64_t hd = 16 * HD16;
  for (int j0 = 0; j0 < HD16; j0 += 4) {
    __m512 out[G][4];
    for (int g = 0; g < G; ++g) {
      for (int j = 0; j < 4; ++j) out[g][j] = _mm512_setzero_ps();
    }
    for (int64_t t = 0; t < n; ++t) {
      if (t + kAhead < n) prefetch<3>(values + (t + kAhead) * hd + 16 * j0, 64 * sizeof(T));
      if (j0 == 0) ahead.step(t, n);
      __m512 w[G];
      for (int g = 0; g < G; ++g) w[g] = _mm512_set1_ps(p[g * stride + t]);
      for (int j = 0; j < 4; ++j) {
        const __m512 v = load16(values + t * hd + 16 * (j0 + j));
        for (int g = 0; g < G; ++g) out[g][j] = _mm512_fmadd_ps(w[g], v, out[g][j]);
      }
    }
    for (int g = 0; g < G; ++g) {
      for (int j = 0; j < 4; ++j) _mm512_storeu_ps(o + g * hd + 16 * (j0 + j), out[g][j]);
    }
  }
}

// G heads' attention over one item's n positions, 16 lanes at a time (head_dim = 16 * HD16).
// Keys are scored four at a time: each head's four 16-lane sums reduce together to one
// 4-lane vector of scores, a quarter of the horizontal adds one key at a time would take.
// Values are weighed by weigh_values_zmm.
template <int HD16, int G, typename T>
void attend_zmm(const float* q, const T* keys, const T* values, int64_t n, float scale, float* s, int64_t stride,
                float* o, float* top, float* sum, const Ahead& ahead) {
  constexpr int64_t hd = 16 * HD16;
  const __m128 vscale = _mm_set1_ps(scale);
  __m128 vtop[G];
  for (int g = 0; g < G; ++g) vtop[g] = _mm_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) {
    if (t + kAhead + 4 <= n) prefetch<3>(keys + (t + kAhead) * hd, 4 * hd * sizeof(T));
    prefetch<2>(values + t * hd, 4 * hd * sizeof(T));
    __m512 acc[4][G];
    for (int i = 0; i < 4; ++i) {
      for (int g = 0; g < G; ++g) acc[i][g] = _mm512_setzero_ps();
    }
    for (int j = 0; j < HD16; ++j) {
      for (int i = 0; i < 4; ++i) {
        const __m512 k = load16(keys + (t + i) * hd + 16 * j);
        for (int g = 0; g < G; ++g) acc[i][g] = _mm512_fmadd_ps(_mm512_loadu_ps(q + g * hd + 16 * j), k, acc[i][g]);
      }
    }
    for (int g = 0; g < G; ++g) {
      const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold(acc[0][g]), fold(acc[1][g])),
                                      _mm256_hadd_ps(fold(acc[2][g]), fold(acc[3][g])));
      const __m128 v = _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)), vscale);
      _mm_storeu_ps(s + g * stride + t, v);
      vtop[g] = _mm_max_ps(vtop[g], v);
    }
  }
  for (int g = 0; g < G; ++g) top[g] = hmax128(vtop[g]);
  for (; t < n; ++t) {
    __m512 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
    for (int j = 0; j < HD16; ++j) {
      const __m512 k = load16(keys + t * hd + 16 * j);
      for (int g = 0; g < G; ++g) acc[g] = _mm512_fmadd_ps(_mm512_loadu_ps(q + g * hd + 16 * j), k, acc[g]);
    }
    for (int g = 0; g < G; ++g) top[g] = std::max(top[g], s[g * stride + t] = _mm512_reduce_add_ps(acc[g]) * scale);
  }
  for (int g = 0; g < G; ++g) sum[g] = exp_shifted(s + g * stride, n, top[g]);
  weigh_values_zmm<HD16, G>(s, stride, values, n, o, ahead);
}
#elif defined(TANDEM_AVX2)
// G heads' attention over one item's n positions with their queries and outputs held in
// registers (head_dim = 8 * HD8); only the loads of keys and values are shared.
template <int HD8, int G, typename T>
void attend_in_registers(const float* q, const T* keys, const T* values, int64_t n, float scale, float* s,
                         int64_t stride, float* o, float* top, float* sum, const Ahead& ahead) {
  constexpr int64_t hd = 8 * HD8;
  __m256 qv[G][HD8], out[G][HD8];
  for (int g = 0; g < G; ++g) {
    for (int j = 0; j < HD8; ++j) qv[g][j] = _mm256_loadu_ps(q + g * hd + 8 * j), out[g][j] = _mm256_setzero_ps();
    top[g] = -std::numeric_limits<float>::infinity();
  }
  for (int64_t t = 0; t < n; ++t) {
    const T* k = keys + t * hd;
    if (t + kAhead < n) prefetch<3>(k + kAhead * hd, hd * sizeof(T));
    prefetch<2>(values + t * hd, hd * sizeof(T));
    __m256 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
    for (int j = 0; j < HD8; ++j) {
      const __m256 kj = load8(k + 8 * j);
      for (int g = 0; g < G; ++g) acc[g] = _mm256_fmadd_ps(qv[g][j], kj, acc[g]);
    }
    for (int g = 0; g < G; ++g) top[g] = std::max(top[g], s[g * stride + t] = hsum(acc[g]) * scale);
  }
  for (int g = 0; g < G; ++g) sum[g] = exp_shifted(s + g * stride, n, top[g]);
  for (int64_t t = 0; t < n; ++t) {
    __m256 p[G];
    for (int g = 0; g < G; ++g) p[g] = _mm256_set1_ps(s[g * stride + t]);
    const T* v = values + t * hd;
    if (t + kAhead < n) prefetch<3>(v + kAhead * hd, hd * sizeof(T));
    ahead.step(t, n);
    for (int j = 0; j < HD8; ++j) {
      const __m256 vj = load8(v + 8 * j);
      for (int g = 0; g < G; ++g) out[g][j] = _mm256_fmadd_ps(p[g], vj, out[g][j]);
    }
  }
  for (int g = 0; g < G; ++g) {
    for (int j = 0; j < HD8; ++j) _mm256_storeu_ps(o + g * hd + 8 * j, out[g][j]);
  }
}
#endif

// One item of a float cache: `heads` (<= kMaxGroup) query heads of one kv head over n positions.
// q, o: heads rows of hd; s: heads rows of n scores, `stride` apart; top, sum: one per head (see
// kChunk); qv, an int8 cache's rounded queries, a float cache does not need; ahead: see Ahead.
template <typename T>
void attend(const float* q, const T* keys, const T* values, int64_t heads, int64_t n, int64_t hd, float scale,
            float* s, int64_t stride, float* o, float* top, float* sum, const QueryView&, const Ahead& ahead) {
#if defined(TANDEM_AVX512)
  if (hd == 64) {
    return with_group_size(heads, [&](auto g) { attend_zmm<4, g>(q, keys, values, n, scale, s, stride, o, top, sum, ahead); });
  }
  if (hd == 128) {
    return with_group_size(heads, [&](auto g) { attend_zmm<8, g>(q, keys, values, n, scale, s, stride, o, top, sum, ahead); });
  }
#elif defined(TANDEM_AVX2)
  if (hd == 64) {
    return with_group_size(
        heads, [&](auto g) { attend_in_registers<8, g>(q, keys, values, n, scale, s, stride, o, top, sum, ahead); });
  }
  if (hd == 128) {
    return with_group_size(
        heads, [&](auto g) { attend_in_registers<16, g>(q, keys, values, n, scale, s, stride, o, top, sum, ahead); });
  }
#endif
  for (int64_t h = 0; h < heads; ++h, q += hd, s += stride, o += hd) {
    top[h] = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < n; ++t) top[h] = std::max(top[h], s[t] = dot(q, keys + t * hd, hd) * scale);
    sum[h] = exp_shifted(s, n, top[h]);
    std::fill(o, o + hd, 0.0f);
    for (int64_t t = 0; t < n; ++t) axpy(s[t], values + t * hd, o, hd);
  }
}

// ---- attention over an int8 cache ------------------------------------------------------
// The query is rounded to int16 once per head (one scale, absmax / kQueryMax), so q . k is an
// integer dot product with the int8 keys (score_int8_t's byte dot products on AVX-512 VNNI; the
// keys widened to int16 for vpdpwssd or vpmaddwd elsewhere), times the two scales. The values are
// weighed by probability * their row's scale: in int16 dot products on AVX-512 VNNI
// (weigh_values_i16), widened to fp32 in registers elsewhere. An int8 query (llama.cpp's q8_0
// one) would halve the keys' dot products but put a 1/254 rounding of the query into every
// score, which doubled the step's error against the fp32 reference on the test model.
#ifdef TANDEM_AVX2
// The scoring loop over keys given their integer sums: key_sums(k, acc) leaves in acc[g] eight
// int32 lanes that add up to qq_g . k. Four keys' lanes are reduced together, to one 4-lane
// vector of scores a head.
template <int G, typename KeySums>
void score_rows(const KeySums& key_sums, const float* q_scale, I8Rows keys, const int8_t* values, int64_t n,
                int64_t hd, float scale, float* s, int64_t stride, float* top) {
  __m128 vtop[G], vqs[G];
  for (int g = 0; g < G; ++g) {
    vtop[g] = _mm_set1_ps(-std::numeric_limits<float>::infinity());
    vqs[g] = _mm_set1_ps(q_scale[g] * scale);
  }
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) {
    if (t + kAhead + 4 <= n) prefetch<3>(keys.q + (t + kAhead) * hd, 4 * hd);
    prefetch<2>(values + t * hd, 4 * hd);
    __m256i a[4][G];
    for (int i = 0; i < 4; ++i) key_sums(keys.q + (t + i) * hd, a[i]);
    const __m128 ks = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(keys.s + t)));
    for (int g = 0; g < G; ++g) {
      // [k0 .. k3]: hadd pairs within 128-bit halves, then the halves
      const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0][g], a[1][g]), _mm256_hadd_epi32(a[2][g], a[3][g]));
      const __m128i sums = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
      const __m128 v = _mm_mul_ps(_mm_mul_ps(_mm_cvtepi32_ps(sums), vqs[g]), ks);
      _mm_storeu_ps(s + g * stride + t, v);
      vtop[g] = _mm_max_ps(vtop[g], v);
    }
  }
  for (int g = 0; g < G; ++g) top[g] = hmax128(vtop[g]);
  for (; t < n; ++t) {
    __m256i a[G];
    key_sums(keys.q + t * hd, a);
    for (int g = 0; g < G; ++g) {
      const float v = static_cast<float>(hsum_i32(a[g])) * (q_scale[g] * scale) * static_cast<float>(keys.s[t]);
      top[g] = std::max(top[g], s[g * stride + t] = v);
    }
  }
}
#endif

#ifdef TANDEM_ZMM_DOT
// score_int8 on AVX-512 for head_dim = 32 * HD32: a key's 32-value halves widened to int16 once
// for the G heads' vpdpwssd.
template <int HD32, int G>
void score_int8_zmm(const int16_t* qq, const float* q_scale, I8Rows keys, const int8_t* values, int64_t n,
                    float scale, float* s, int64_t stride, float* top) {
  constexpr int64_t hd = 32 * HD32;
  auto key_sums = [&](const int8_t* k, __m256i* acc) {
    __m512i wide[G];
    for (int g = 0; g < G; ++g) wide[g] = _mm512_setzero_si512();
    for (int j = 0; j < HD32; ++j) {
      const __m512i kv = _mm512_cvtepi8_epi16(load256(k + 32 * j));
      for (int g = 0; g < G; ++g) wide[g] = _mm512_dpwssd_epi32(wide[g], _mm512_loadu_si512(qq + g * hd + 32 * j), kv);
    }
    for (int g = 0; g < G; ++g) {
      acc[g] = _mm256_add_epi32(_mm512_castsi512_si256(wide[g]), _mm512_extracti64x4_epi64(wide[g], 1));
    }
  };
  score_rows<G>(key_sums, q_scale, keys, values, n, hd, scale, s, stride, top);
}
#endif

#ifdef TANDEM_ZMM_DOT
// How many key rows ahead score_int8_t asks for keys into L2 (4 KiB of a 64-value head).
constexpr int64_t kKeysAhead = 64;

// 16 rows of 16 dwords transposed in registers: afterwards r[j] holds dword j of every row, row i
// in lane i (three rounds of unpacks within 128-bit lanes, then the lanes across registers).
inline void transpose16(__m512i* r) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // u[i + k] lane L: rows i..i+3, dword 4L + k
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int k = 0; k < 4; ++k) {
    const __m512i v0 = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x44), v1 = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xee);
    const __m512i v2 = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x44);
    const __m512i v3 = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xee);
    t[k] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    t[4 + k] = _mm512_shuffle_i32x4(v0, v2, 0xdd);
    t[8 + k] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    t[12 + k] = _mm512_shuffle_i32x4(v1, v3, 0xdd);
  }
  for (int j = 0; j < 16; ++j) r[j] = t[j];
}

inline __m512i broadcast_dword(const int8_t* p) {
  int32_t d;
  std::memcpy(&d, p, sizeof d);
  return _mm512_set1_epi32(d);
}

// Keys scored 16 at a time for G heads (head_dim = HD: 64 or 128), each 16 keys' rows transposed
// in registers so that a lane is one key and no sum crosses lanes (the 4-key kernel spent most of
// its time on horizontal adds): the keys offset to unsigned bytes (k + 128) meet each 4-value
// slice of the query as two signed bytes (vpdpbusd), the high bytes' sums shifted 8 bits up
// before the low bytes' are added and the offset's 128 sum(q) taken off, which leaves exactly
// the integer q . k of the other paths (|qh|, |ql| <= 128, so every partial sum fits in int32),
// scaled in the same order: scores bit for bit theirs. Tails shorter than 16 keys go to score_int8_zmm.
template <int HD, int G>
void score_int8_t(const QueryView& qv, I8Rows keys, const int8_t* values, int64_t n, float scale, float* s,
                  int64_t stride, float* top) {
  constexpr int kBlocks = HD / 64;  // 16-dword column blocks of a row
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 vqs[G], vtop[G];
  __m512i bias[G];
  for (int g = 0; g < G; ++g) {
    vqs[g] = _mm512_set1_ps(qv.scale[g] * scale);
    vtop[g] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    bias[g] = _mm512_set1_epi32(qv.bias[g]);
  }
  int64_t t = 0;
  for (; t + 16 <= n; t += 16) {
    if (t + 32 <= n) prefetch<3>(keys.q + (t + 16) * HD, 16 * HD);
    if (t + 16 + kKeysAhead <= n) prefetch<2>(keys.q + (t + kKeysAhead) * HD, 16 * HD);
    prefetch<2>(values + t * HD, 16 * HD);
    __m512i hi[G], lo[G];
    for (int g = 0; g < G; ++g) hi[g] = lo[g] = _mm512_setzero_si512();
    for (int b = 0; b < kBlocks; ++b) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm512_xor_si512(_mm512_loadu_si512(keys.q + (t + i) * HD + 64 * b), flip);
      transpose16(r);
      for (int g = 0; g < G; ++g) {
        const int8_t* qh = qv.hi + g * HD + 64 * b;
        const int8_t* ql = qv.lo + g * HD + 64 * b;
        for (int j = 0; j < 16; ++j) {
          hi[g] = _mm512_dpbusd_epi32(hi[g], r[j], broadcast_dword(qh + 4 * j));
          lo[g] = _mm512_dpbusd_epi32(lo[g], r[j], broadcast_dword(ql + 4 * j));
        }
      }
    }
    const __m512 ks = _mm512_cvtph_ps(load256(keys.s + t));
    for (int g = 0; g < G; ++g) {
      const __m512i dot = _mm512_sub_epi32(_mm512_add_epi32(_mm512_slli_epi32(hi[g], 8), lo[g]), bias[g]);
      const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), vqs[g]), ks);
      _mm512_storeu_ps(s + g * stride + t, v);
      vtop[g] = _mm512_max_ps(vtop[g], v);
    }
  }
  float rest[G];
  score_int8_zmm<HD / 32, G>(qv.q, qv.scale, keys + t * HD, values + t * HD, n - t, scale, s + t, stride, rest);
  for (int g = 0; g < G; ++g) top[g] = std::max(_mm512_reduce_max_ps(vtop[g]), rest[g]);
}
#endif

// Keys scored for G query heads of one kv head (qq: G rows of hd int16s, q_scale one per head;
// the value rows are brought into L2 on the way):
// s[g * stride + t] = (qq_g . k_t) * q_scale[g] * k_scale[t] * scale; top[g] the largest of head g.
// |qq| <= 32767 and |k| <= 127, so a head of up to 512 values sums within int32; the integer
// sums are exact, so sharing each key's widening between the heads, or summing 32 values a
// step on AVX-512 instead of 16, changes no score.
template <int G>
void score_int8(const QueryView& qv, I8Rows keys, const int8_t* values, int64_t n, int64_t hd, float scale, float* s,
                int64_t stride, float* top) {
  const int16_t* qq = qv.q;
  const float* q_scale = qv.scale;
#ifdef TANDEM_ZMM_DOT
  if (hd == 64) return score_int8_t<64, G>(qv, keys, values, n, scale, s, stride, top);
  if (hd == 128) return score_int8_t<128, G>(qv, keys, values, n, scale, s, stride, top);
#endif
#ifdef TANDEM_AVX2
  if (hd % 16 == 0 && hd <= 128) {
    const int64_t chunks = hd / 16;
    __m256i qv[G][8];
    for (int g = 0; g < G; ++g) {
      for (int64_t j = 0; j < chunks; ++j) qv[g][j] = load256(qq + g * hd + 16 * j);
    }
    // the key's 16-value chunks widened once for the G heads
    auto key_sums = [&](const int8_t* k, __m256i* acc) {
      for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_si256();
      for (int64_t j = 0; j < chunks; ++j) {
        const __m256i kv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + 16 * j)));
        for (int g = 0; g < G; ++g) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
          acc[g] = _mm256_dpwssd_epi32(acc[g], qv[g][j], kv);
#elif defined(__AVXVNNI__)
          acc[g] = _mm256_dpwssd_avx_epi32(acc[g], qv[g][j], kv);
#else
          acc[g] = _mm256_add_epi32(acc[g], _mm256_madd_epi16(qv[g][j], kv));
#endif
        }
      }
    };
    return score_rows<G>(key_sums, q_scale, keys, values, n, hd, scale, s, stride, top);
  }
#endif
  for (int g = 0; g < G; ++g) {
    const float qs = q_scale[g] * scale;
    top[g] = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* k = keys.q + t * hd;
      int32_t total = 0;
      for (int64_t i = 0; i < hd; ++i) total += static_cast<int32_t>(qq[g * hd + i]) * k[i];
      top[g] = std::max(top[g], s[g * stride + t] = static_cast<float>(total) * qs * static_cast<float>(keys.s[t]));
    }
  }
}

#ifdef TANDEM_ZMM_DOT
// weigh_values_int8 in integer dot products (head_dim = HD: 64 or 128): each head's weights
// w[t] = p[t] * v_scale[t] rounded to int16 on a grid of their largest (w_max / 32767: ~1e-5 of
// the largest weight, against the values' own 1/254), two positions' values interleaved as int16
// pairs for vpdpwssd against the pair of weights, 64 channels a pass; the int32 sums hold 32767 *
// 127 * kChunk. Three times the fp32 loop's speed, where widening each value to fp32 and one FMA
// per head and 16 values took most of the attention's time at long contexts.
template <int HD, int G>
void weigh_values_i16(const float* p, int64_t stride, I8Rows values, int64_t n, float* o, const Ahead& ahead) {
  alignas(64) int16_t w16[G][kChunk + 16];
  float unit[G];
  for (int g = 0; g < G; ++g) {
    const float* pg = p + g * stride;
    __m512 big = _mm512_setzero_ps();
    int64_t t = 0;
    for (; t + 16 <= n; t += 16) {
      big = _mm512_max_ps(big, _mm512_mul_ps(_mm512_loadu_ps(pg + t), _mm512_cvtph_ps(load256(values.s + t))));
    }
    float top = _mm512_reduce_max_ps(big);
    for (int64_t r = t; r < n; ++r) top = std::max(top, pg[r] * static_cast<float>(values.s[r]));
    unit[g] = top / 32767.0f;
    const float inv = top == 0.0f ? 0.0f : 32767.0f / top;
    const __m512 vinv = _mm512_set1_ps(inv);
    for (t = 0; t + 16 <= n; t += 16) {
      const __m512 w = _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(pg + t), _mm512_cvtph_ps(load256(values.s + t))), vinv);
      _mm256_store_si256(reinterpret_cast<__m256i*>(w16[g] + t), _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(w)));
    }
    for (; t < n; ++t) w16[g][t] = static_cast<int16_t>(std::nearbyint(pg[t] * static_cast<float>(values.s[t]) * inv));
    w16[g][n] = 0;  // an odd run's last pair
  }
  const __m256i zero = _mm256_setzero_si256();
  for (int c0 = 0; c0 < HD; c0 += 64) {
    __m512i acc[G][4];
    for (int g = 0; g < G; ++g) {
      for (int k = 0; k < 4; ++k) acc[g][k] = _mm512_setzero_si512();
    }
    for (int64_t t = 0; t < n; t += 2) {
      const int8_t* a = values.q + t * HD + c0;
      if (t + kAhead < n) prefetch<3>(a + kAhead * HD, 128);
      if (c0 == 0) ahead.step(t / 2, (n + 1) / 2);
      const bool pair = t + 1 < n;
      const __m512i a0 = _mm512_cvtepi8_epi16(load256(a)), a1 = _mm512_cvtepi8_epi16(load256(a + 32));
      const __m512i b0 = _mm512_cvtepi8_epi16(pair ? load256(a + HD) : zero);
      const __m512i b1 = _mm512_cvtepi8_epi16(pair ? load256(a + HD + 32) : zero);
      // dword (lane L, m): channel 8L + m of each 32, then 8L + 4 + m
      const __m512i v[4] = {_mm512_unpacklo_epi16(a0, b0), _mm512_unpackhi_epi16(a0, b0),
                            _mm512_unpacklo_epi16(a1, b1), _mm512_unpackhi_epi16(a1, b1)};
      for (int g = 0; g < G; ++g) {
        int32_t wpair;
        std::memcpy(&wpair, w16[g] + t, sizeof wpair);
        const __m512i w = _mm512_set1_epi32(wpair);
        for (int k = 0; k < 4; ++k) acc[g][k] = _mm512_dpwssd_epi32(acc[g][k], v[k], w);
      }
    }
    for (int g = 0; g < G; ++g) {
      alignas(64) int32_t sums[4][16];
      for (int k = 0; k < 4; ++k) _mm512_store_si512(sums[k], acc[g][k]);
      float* out = o + g * HD + c0;
      for (int k = 0; k < 4; ++k) {
        for (int lane = 0; lane < 16; ++lane) {
          const int channel = 32 * (k / 2) + 8 * (lane / 4) + 4 * (k % 2) + lane % 4;
          out[channel] = static_cast<float>(sums[k][lane]) * unit[g];
        }
      }
    }
  }
}
#endif

// o_g = sum_t w_g[t] * v_t with w_g[t] = p[g * stride + t] * v_scale[t] for G heads, the int8
// rows widened in registers once for all of them.
template <int G>
void weigh_values_int8(const float* p, int64_t stride, I8Rows values, int64_t n, int64_t hd, float* o,
                       const Ahead& ahead) {
#ifdef TANDEM_ZMM_DOT
  if (hd == 64) return weigh_values_i16<64, G>(p, stride, values, n, o, ahead);
  if (hd == 128) return weigh_values_i16<128, G>(p, stride, values, n, o, ahead);
#endif
#ifdef TANDEM_AVX2
  if (hd % 8 == 0 && hd <= 128) {
    __m256 out[G][16];
    const int64_t lanes = hd / 8;
    for (int g = 0; g < G; ++g) {
      for (int64_t j = 0; j < lanes; ++j) out[g][j] = _mm256_setzero_ps();
    }
    for (int64_t t = 0; t < n; ++t) {
      __m256 w[G];
      for (int g = 0; g < G; ++g) w[g] = _mm256_set1_ps(p[g * stride + t] * static_cast<float>(values.s[t]));
      const int8_t* v = values.q + t * hd;
      if (t + kAhead < n) prefetch<3>(v + kAhead * hd, hd);
      ahead.step(t, n);
      for (int64_t j = 0; j < lanes; ++j) {
        const __m256 wide = _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(v + 8 * j))));
        for (int g = 0; g < G; ++g) out[g][j] = _mm256_fmadd_ps(w[g], wide, out[g][j]);
      }
    }
    for (int g = 0; g < G; ++g) {
      for (int64_t j = 0; j < lanes; ++j) _mm256_storeu_ps(o + g * hd + 8 * j, out[g][j]);
    }
    return;
  }
#endif
  std::fill(o, o + G * hd, 0.0f);
  for (int g = 0; g < G; ++g) {
    for (int64_t t = 0; t < n; ++t) {
      const float w = p[g * stride + t] * static_cast<float>(values.s[t]);
      const int8_t* v = values.q + t * hd;
      for (int64_t i = 0; i < hd; ++i) o[g * hd + i] += w * static_cast<float>(v[i]);
    }
  }
}

// One item over int8 rows (arguments as the float attend's; qv: the rounded queries of these heads).
void attend(const float*, I8Rows keys, I8Rows values, int64_t heads, int64_t n, int64_t hd, float scale, float* s,
            int64_t stride, float* o, float* top, float* sum, const QueryView& qv, const Ahead& ahead) {
  with_group_size(heads, [&](auto g) {
    constexpr int G = decltype(g)::value;
    score_int8<G>(qv, keys, values.q, n, hd, scale, s, stride, top);
    for (int h = 0; h < G; ++h) sum[h] = exp_shifted(s + h * stride, n, top[h]);
    weigh_values_int8<G>(s, stride, values, n, hd, o, ahead);
  });
}

// ---- attention over the 4-bit groups of an int8 cache ---------------------------------
// Reading a long int8 cache was most of a step's time above the short prompt's (SmolLM2 at 1,000
// positions: 11.9 MB a token against 88 MB of weights). Each finished group of kQ4Group positions
// of a kv head also lives in 4 bits (engine/packed_kv.py builds it from the int8 rows, which stay
// for prefill, the hand-off and the unfinished group): keys per channel over the group's positions
// (KIVI's layout: a key channel's range is steady along positions, a position's is not), values
// per position over 32 channels, each with an fp16 scale and minimum. 76 bytes a position and kv
// head of 64 values instead of 132.
constexpr int64_t kQ4Group = 64;

// One kv head's 4-bit groups from some group on (engine/packed_kv.py's layout):
// keys [groups, 32 * HD] bytes: per group 4 blocks of 16 positions, each HD / 8 vectors of 64
//   bytes in which dword lane i is position i and byte j holds channel 8m + j in its low nibble,
//   8m + 4 + j in its high one (vector m): the nibbles meet the query with no transposing;
// key_stats [groups, 2, HD] fp16: each channel's scale, then its minimum;
// values [positions / 2, HD] bytes: per pair of positions and 64-channel block, dword lane L
//   holds channels L, 16 + L (low, high nibble of byte 0: the first position; byte 2: the
//   second), 32 + L and 48 + L (bytes 1 and 3), so that masks and shifts leave int16 pairs;
// value_stats [groups, HD / 32, 2, kQ4Group] fp16: each 32-channel group's scales, then minimums.
struct Q4Rows {
  const uint8_t* keys;
  const c10::Half* key_stats;
  const uint8_t* values;
  const c10::Half* value_stats;
};

// The 4-bit groups of a whole cache (`base`: [n_layers, batch, kv_heads, ...], batch row 0 used):
// the first `groups` groups of every kv head are current.
struct Q4Cache {
  Q4Rows base;
  int64_t heads_per_layer, max_groups, hd, groups;

  Q4Rows at(int64_t layer, int64_t kv, int64_t t0) const {
    const int64_t row = layer * heads_per_layer + kv, g = row * max_groups + t0 / kQ4Group;
    return {base.keys + g * 32 * hd, base.key_stats + g * 2 * hd,
            base.values + (row * max_groups * kQ4Group + t0) / 2 * hd,
            base.value_stats + g * (hd / 32) * 2 * kQ4Group};
  }
};

#ifdef TANDEM_ZMM_DOT
// Scores of n positions (a multiple of kQ4Group) for G heads: per group, each head's query times
// the keys' channel scales rounded to int8 (one scale a head: the keys' own 4-bit rounding is
// ~16 times coarser), q . min added once, and the nibbles' dot products in vpdpbusd.
template <int HD, int G>
void score_q4(const float* q, Q4Rows r, int64_t n, float scale, float* s, int64_t stride, float* top) {
  const __m512i mask4 = _mm512_set1_epi8(0x0F);
  __m512 vtop[G];
  for (int g = 0; g < G; ++g) vtop[g] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  alignas(64) int8_t qq[G][HD];
  float qs[G], bias[G];
  for (int64_t gi = 0; gi < n / kQ4Group; ++gi) {
    const c10::Half* stats = r.key_stats + gi * 2 * HD;
    const uint8_t* kb = r.keys + gi * 32 * HD;
    if (gi + 1 < n / kQ4Group) prefetch<2>(kb + 32 * HD, 32 * HD);
    prefetch<2>(r.values + gi * 32 * HD, 32 * HD);
    for (int g = 0; g < G; ++g) {
      alignas(64) float scaled[HD];
      __m512 big = _mm512_setzero_ps(), b = _mm512_setzero_ps();
      for (int c = 0; c < HD; c += 16) {
        const __m512 qv = _mm512_loadu_ps(q + g * HD + c);
        const __m512 p = _mm512_mul_ps(qv, _mm512_cvtph_ps(load256(stats + c)));
        _mm512_store_ps(scaled + c, p);
        big = _mm512_max_ps(big, _mm512_abs_ps(p));
        b = _mm512_fmadd_ps(qv, _mm512_cvtph_ps(load256(stats + HD + c)), b);
      }
      const float m = _mm512_reduce_max_ps(big);
      qs[g] = m / 127.0f * scale;
      bias[g] = _mm512_reduce_add_ps(b) * scale;
      const __m512 inv = _mm512_set1_ps(m == 0.0f ? 0.0f : 127.0f / m);
      for (int c = 0; c < HD; c += 16) {
        _mm_store_si128(reinterpret_cast<__m128i*>(qq[g] + c),
                        _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(scaled + c), inv))));
      }
    }
    for (int blk = 0; blk < kQ4Group / 16; ++blk) {
      __m512i acc[G];
      for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_si512();
      for (int m = 0; m < HD / 8; ++m) {
        const __m512i v = _mm512_loadu_si512(kb + (blk * HD / 8 + m) * 64);
        const __m512i lo = _mm512_and_si512(v, mask4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask4);
        for (int g = 0; g < G; ++g) {
          acc[g] = _mm512_dpbusd_epi32(acc[g], lo, broadcast_dword(qq[g] + 8 * m));
          acc[g] = _mm512_dpbusd_epi32(acc[g], hi, broadcast_dword(qq[g] + 8 * m + 4));
        }
      }
      for (int g = 0; g < G; ++g) {
        const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[g]), _mm512_set1_ps(qs[g]), _mm512_set1_ps(bias[g]));
        _mm512_storeu_ps(s + g * stride + gi * kQ4Group + 16 * blk, v);
        vtop[g] = _mm512_max_ps(vtop[g], v);
      }
    }
  }
  for (int g = 0; g < G; ++g) top[g] = _mm512_reduce_max_ps(vtop[g]);
}

// o_g = sum_t p_g[t] (scale_t v_t + min_t) over 4-bit values: the weights p * scale of each
// 32-channel group rounded to int16 on a grid of the head's largest (as weigh_values_i16), a pair
// of positions' nibbles against a pair of weights in vpdpwssd, sum_t p_g[t] min_t added once.
template <int HD, int G>
void weigh_q4(const float* p, int64_t stride, Q4Rows r, int64_t n, float* o, const Ahead& ahead) {
  constexpr int NG = HD / 32;  // value groups a position
  alignas(64) float wf[G][NG][kChunk];
  alignas(64) int16_t w16[G][NG][kChunk];
  float unit[G], mins[G][NG];
  for (int g = 0; g < G; ++g) {
    const float* pg = p + g * stride;
    __m512 big = _mm512_setzero_ps(), msum[NG];
    for (int j = 0; j < NG; ++j) msum[j] = _mm512_setzero_ps();
    for (int64_t t = 0; t < n; t += 16) {
      const c10::Half* st = r.value_stats + (t / kQ4Group) * NG * 2 * kQ4Group + t % kQ4Group;
      const __m512 pv = _mm512_loadu_ps(pg + t);
      for (int j = 0; j < NG; ++j) {
        const __m512 w = _mm512_mul_ps(pv, _mm512_cvtph_ps(load256(st + 2 * j * kQ4Group)));
        _mm512_store_ps(wf[g][j] + t, w);
        big = _mm512_max_ps(big, w);
        msum[j] = _mm512_fmadd_ps(pv, _mm512_cvtph_ps(load256(st + (2 * j + 1) * kQ4Group)), msum[j]);
      }
    }
    const float m = _mm512_reduce_max_ps(big);
    unit[g] = m / 32767.0f;
    const __m512 inv = _mm512_set1_ps(m == 0.0f ? 0.0f : 32767.0f / m);
    for (int j = 0; j < NG; ++j) {
      mins[g][j] = _mm512_reduce_add_ps(msum[j]);
      for (int64_t t = 0; t < n; t += 16) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(w16[g][j] + t),
                           _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(wf[g][j] + t), inv))));
      }
    }
  }
  const __m512i mask = _mm512_set1_epi32(0x000F000F);
  for (int blk = 0; blk < HD / 64; ++blk) {
    __m512i acc[G][4];
    for (int g = 0; g < G; ++g) {
      for (int k = 0; k < 4; ++k) acc[g][k] = _mm512_setzero_si512();
    }
    for (int64_t t = 0; t < n; t += 2) {
      const uint8_t* a = r.values + (t / 2) * HD + 64 * blk;
      if (t + kAhead < n) prefetch<3>(a + kAhead / 2 * HD, 64);
      if (blk == 0) ahead.step(t / 2, n / 2);
      const __m512i v = _mm512_loadu_si512(a);
      const __m512i x[4] = {_mm512_and_si512(v, mask), _mm512_and_si512(_mm512_srli_epi32(v, 4), mask),
                            _mm512_and_si512(_mm512_srli_epi32(v, 8), mask),
                            _mm512_and_si512(_mm512_srli_epi32(v, 12), mask)};
      for (int g = 0; g < G; ++g) {
        int32_t lo, hi;
        std::memcpy(&lo, w16[g][2 * blk] + t, sizeof lo);
        std::memcpy(&hi, w16[g][2 * blk + 1] + t, sizeof hi);
        const __m512i wl = _mm512_set1_epi32(lo), wh = _mm512_set1_epi32(hi);
        acc[g][0] = _mm512_dpwssd_epi32(acc[g][0], x[0], wl);
        acc[g][1] = _mm512_dpwssd_epi32(acc[g][1], x[1], wl);
        acc[g][2] = _mm512_dpwssd_epi32(acc[g][2], x[2], wh);
        acc[g][3] = _mm512_dpwssd_epi32(acc[g][3], x[3], wh);
      }
    }
    for (int g = 0; g < G; ++g) {
      for (int k = 0; k < 4; ++k) {
        const __m512 out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[g][k]), _mm512_set1_ps(unit[g]),
                                           _mm512_set1_ps(mins[g][2 * blk + k / 2]));
        _mm512_storeu_ps(o + g * HD + 64 * blk + 16 * k, out);
      }
    }
  }
}

// One item over 4-bit groups (n a multiple of kQ4Group; arguments as the float attend's).
void attend_q4(const float* q, Q4Rows rows, int64_t heads, int64_t n, int64_t hd, float scale, float* s,
               int64_t stride, float* o, float* top, float* sum, const Ahead& ahead) {
  with_group_size(heads, [&](auto g) {
    constexpr int G = decltype(g)::value;
    if (hd == 64) {
      score_q4<64, G>(q, rows, n, scale, s, stride, top);
    } else {
      score_q4<128, G>(q, rows, n, scale, s, stride, top);
    }
    for (int h = 0; h < G; ++h) sum[h] = exp_shifted(s + h * stride, n, top[h]);
    if (hd == 64) {
      weigh_q4<64, G>(s, stride, rows, n, o, ahead);
    } else {
      weigh_q4<128, G>(s, stride, rows, n, o, ahead);
    }
  });
}
#endif

// ---- packing an int8 cache's finished groups into 4 bits ---------------------------------
// engine/packed_kv.py's pack_keys / pack_values from the int8 rows, bit for bit (the same fp32
// products, fp16 roundings and round-half-even codes), without the torch temporaries: SmolLM2's 15
// groups at 1,000 positions took those ~60-75 ms, a group ~10 ms.

// 4-bit codes of n values x[i * stride] (x ~ min + scale * code), their fp16 scale and minimum.
void round_4bit(const float* x, int64_t n, int64_t stride, uint8_t* codes, c10::Half* scale, c10::Half* low) {
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (int64_t i = 0; i < n; ++i) lo = std::min(lo, x[i * stride]), hi = std::max(hi, x[i * stride]);
  *low = c10::Half(std::min(65504.0f, std::max(-65504.0f, lo)));
  const float l = static_cast<float>(*low);
  *scale = c10::Half(std::min(65504.0f, (hi - l) / 15.0f));
  const float s = static_cast<float>(*scale), d = s > 0.0f ? s : 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    codes[i] = static_cast<uint8_t>(std::min(15.0f, std::max(0.0f, std::nearbyint((x[i * stride] - l) / d))));
  }
}

// Groups [first, last) of every layer and kv head (batch rows too) of an int8 cache into its 4-bit tensors.
void pack_kv_groups(const at::Tensor& k, const at::Tensor& k_scale, const at::Tensor& v, const at::Tensor& v_scale,
                    at::Tensor& k4, at::Tensor& k4_stats, at::Tensor& v4, at::Tensor& v4_stats, int64_t first,
                    int64_t last) {
  TORCH_CHECK(k.scalar_type() == at::kChar && v.scalar_type() == at::kChar && k.dim() == 5 && k.sizes() == v.sizes() &&
                  k.is_contiguous() && v.is_contiguous() && k_scale.is_contiguous() && v_scale.is_contiguous(),
              "pack_kv_groups takes a contiguous int8 cache [layers, batch, heads, positions, head_dim]");
  const int64_t rows = k.size(0) * k.size(1) * k.size(2), positions = k.size(3), hd = k.size(4);
  const int64_t max_groups = k4.size(3);
  TORCH_CHECK((hd == 64 || hd == 128) && 0 <= first && first <= last && last <= max_groups &&
                  last * kQ4Group <= positions && k4.is_contiguous() && k4_stats.is_contiguous() &&
                  v4.is_contiguous() && v4_stats.is_contiguous() && k4.numel() == rows * max_groups * 32 * hd,
              "pack_kv_groups: groups ", first, "..", last, " do not fit these tensors");
  const int8_t* kq = k.data_ptr<int8_t>();
  const int8_t* vq = v.data_ptr<int8_t>();
  const c10::Half* ks = k_scale.data_ptr<c10::Half>();
  const c10::Half* vs = v_scale.data_ptr<c10::Half>();
  uint8_t* k_out = k4.data_ptr<uint8_t>();
  uint8_t* v_out = v4.data_ptr<uint8_t>();
  c10::Half* k_stats = k4_stats.data_ptr<c10::Half>();
  c10::Half* v_stats = v4_stats.data_ptr<c10::Half>();
  const int64_t ng = hd / 32, groups = last - first;
  at::parallel_for(0, rows * groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> x(kQ4Group * hd);
    std::vector<uint8_t> codes(kQ4Group * hd), column(kQ4Group);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t row = item / groups, g = first + item % groups, t0 = g * kQ4Group;
      const int64_t at = row * positions + t0, slot = row * max_groups + g;
      // keys: per channel over the group's positions
      for (int64_t t = 0; t < kQ4Group; ++t) {
        const float scale = static_cast<float>(ks[at + t]);
        for (int64_t c = 0; c < hd; ++c) x[t * hd + c] = static_cast<float>(kq[(at + t) * hd + c]) * scale;
      }
      c10::Half* stats = k_stats + slot * 2 * hd;
      for (int64_t c = 0; c < hd; ++c) {
        round_4bit(x.data() + c, kQ4Group, hd, column.data(), stats + c, stats + hd + c);
        for (int64_t t = 0; t < kQ4Group; ++t) codes[t * hd + c] = column[t];
      }
      uint8_t* out = k_out + slot * 32 * hd;
      for (int64_t blk = 0; blk < kQ4Group / 16; ++blk) {
        for (int64_t m = 0; m < hd / 8; ++m) {
          for (int64_t i = 0; i < 16; ++i) {
            const uint8_t* c = codes.data() + (16 * blk + i) * hd + 8 * m;
            for (int64_t j = 0; j < 4; ++j) out[(blk * hd / 8 + m) * 64 + 4 * i + j] = c[j] | (c[4 + j] << 4);
          }
        }
      }
      // values: per position over 32 channels
      for (int64_t t = 0; t < kQ4Group; ++t) {
        const float scale = static_cast<float>(vs[at + t]);
        for (int64_t c = 0; c < hd; ++c) x[t * hd + c] = static_cast<float>(vq[(at + t) * hd + c]) * scale;
      }
      stats = v_stats + slot * ng * 2 * kQ4Group;
      for (int64_t t = 0; t < kQ4Group; ++t) {
        for (int64_t j = 0; j < ng; ++j) {
          round_4bit(x.data() + t * hd + 32 * j, 32, 1, codes.data() + t * hd + 32 * j,
                     stats + (2 * j) * kQ4Group + t, stats + (2 * j + 1) * kQ4Group + t);
        }
      }
      out = v_out + (row * max_groups * kQ4Group + t0) / 2 * hd;
      for (int64_t pair = 0; pair < kQ4Group / 2; ++pair) {
        for (int64_t blk = 0; blk < hd / 64; ++blk) {
          for (int64_t lane = 0; lane < 16; ++lane) {
            for (int64_t b = 0; b < 4; ++b) {  // byte b: position 2 pair + b / 2, channels 64 blk + 32 (b % 2) + lane
              const uint8_t* c = codes.data() + (2 * pair + b / 2) * hd + 64 * blk + 32 * (b % 2) + lane;
              out[pair * hd + 64 * blk + 4 * lane + b] = c[0] | (c[16] << 4);
            }
          }
        }
      }
    }
  });
}

// Each head's runs merged: o = sum_r e^(top_r - M) o_r / sum_r e^(top_r - M) sum_r with M the
// largest top. parts: [runs, heads, hd] unnormalized outputs; top, sum: [runs, heads].
void merge_runs(const float* parts, const float* top, const float* sum, int64_t runs, int64_t heads, int64_t hd,
                float* o) {
  for (int64_t h = 0; h < heads; ++h, o += hd) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t r = 0; r < runs; ++r) m = std::max(m, top[r * heads + h]);
    float total = 0.0f;
    for (int64_t r = 0; r < runs; ++r) total += std::exp(top[r * heads + h] - m) * sum[r * heads + h];
    std::fill(o, o + hd, 0.0f);
    for (int64_t r = 0; r < runs; ++r) {
      axpy(std::exp(top[r * heads + h] - m) / total, parts + (r * heads + h) * hd, o, hd);
    }
  }
}

// out[i] = silu(gate[i]) * up[i]
void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
#ifdef TANDEM_AVX2
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(zero, g))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(g, sig), _mm256_loadu_ps(up + i)));
  }
#endif
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// out = RMSNorm(x) * weight
void rms_norm(const float* x, const float* weight, float eps, int64_t n, float* out) {
  const float inv = 1.0f / std::sqrt(dot(x, x, n) / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv * weight[i];
}

// RMSNorm(x) * weight, rounded to int8 blocks for the matmul that follows.
void norm_quantize(const float* x, const float* weight, float eps, int64_t n, float* tmp, ActBuffer& out) {
  rms_norm(x, weight, eps, n, tmp);
  quantize_row(tmp, out, 0, n);
}

// The final norm and output layer, when the step ends in logits: the normed hidden state
// [dim] and the logits [vocab] are written to `normed` and `logits`. The output layer's
// activations go in two int8 levels (near-fp32), as its qlinear call rounds them: its logits
// are the router's confidence signals.
struct Head {
  const float* norm = nullptr;
  QWeights w{};
  float* normed = nullptr;
  float* logits = nullptr;
};

// Rotate `heads` vectors of size d in place (half-split layout; `sin` carries the sign).
void rope(float* x, int64_t heads, int64_t d, const float* cos, const float* sin) {
  const int64_t half = d / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * d;
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] + b * sin[i];
      v[i + half] = b * cos[i + half] + a * sin[i + half];
    }
  }
}

// x: the token's hidden state [1, 1, dim]; norms [L, 2, dim] (attention, ffn);
// weights/scales/fmts: wqkv, wo, w13, w2 of each layer; caches [L, B, Hkv, S, D]
// (batch row 0 is used), fp32, fp16 or int8 with fp16 row scales k_scale, v_scale
// [L, B, Hkv, S]; cos/sin [S, 1, D]. Appends the token's keys and values at `pos`
// and returns the hidden state after the last layer.
at::Tensor run_step(const at::Tensor& x, const at::Tensor& norms, at::TensorList weights,
                    const c10::List<c10::optional<at::Tensor>>& scales, at::IntArrayRef fmts, const at::Tensor& k_cache,
                    const at::Tensor& v_cache, const at::Tensor& cos, const at::Tensor& sin, int64_t pos,
                    int64_t n_heads, double eps, const c10::optional<at::Tensor>& k_scale,
                    const c10::optional<at::Tensor>& v_scale, const Head& head, const Q4Cache* q4) {
  for (const at::Tensor* t : {&x, &norms, &cos, &sin}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous(),
                "decode_step takes contiguous fp32 CPU tensors");
  }
  const bool half = k_cache.scalar_type() == at::kHalf, int8 = k_cache.scalar_type() == at::kChar;
  for (const at::Tensor* t : {&k_cache, &v_cache}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == k_cache.scalar_type() &&
                    (half || int8 || t->scalar_type() == at::kFloat) && t->is_contiguous(),
                "decode_step takes contiguous fp32, fp16 or int8 CPU caches, both of one type");
  }
  TORCH_CHECK(int8 == (k_scale.has_value() && v_scale.has_value()) && (k_scale.has_value() == v_scale.has_value()),
              "an int8 cache needs its row scales (k_scale, v_scale), and only an int8 cache takes them");
  TORCH_CHECK(norms.dim() == 3 && norms.size(1) == 2, "norms must be [n_layers, 2, dim]");
  const int64_t n_layers = norms.size(0), dim = norms.size(2);
  TORCH_CHECK(x.numel() == dim, "decode_step runs one token of ", dim, " features, got ", x.sizes());
  TORCH_CHECK(k_cache.dim() == 5 && k_cache.sizes() == v_cache.sizes() && k_cache.size(0) == n_layers,
              "caches must be [n_layers, batch, kv_heads, positions, head_dim]");
  const int64_t batch = k_cache.size(1), n_kv = k_cache.size(2), max_pos = k_cache.size(3), hd = k_cache.size(4);
  TORCH_CHECK(pos >= 0 && pos < max_pos && pos < cos.size(0), "position ", pos, " is outside the cache of ", max_pos);
  TORCH_CHECK(n_heads > 0 && n_heads % n_kv == 0, "n_heads must be a multiple of the cache's kv heads");
  if (int8) {
    TORCH_CHECK(hd <= 512, "an int8 cache takes heads of up to 512 values (int32 dot products), not ", hd);
    for (const at::Tensor* t : {&*k_scale, &*v_scale}) {
      TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kHalf && t->is_contiguous() &&
                      t->sizes() == k_cache.sizes().slice(0, 4),
                  "an int8 cache's scales must be contiguous fp16 [n_layers, batch, kv_heads, positions]");
    }
  }
  TORCH_CHECK(cos.numel() == cos.size(0) * hd && sin.sizes() == cos.sizes(), "rope tables must be [positions, 1, ",
              hd, "]");
  const int64_t n_w = static_cast<int64_t>(weights.size());
  TORCH_CHECK(n_w == 4 * n_layers && static_cast<int64_t>(scales.size()) == n_w &&
                  static_cast<int64_t>(fmts.size()) == n_w,
              "need wqkv, wo, w13, w2 (with scales and formats) for each of ", n_layers, " layers");
  const int64_t q_size = n_heads * hd, kv_size = n_kv * hd, group = n_heads / n_kv;
  const int64_t ffn = weights[3].size(1) / block_bytes(fmts[3]) * QK;
  const int64_t widest = std::max({dim, q_size, ffn});

  std::vector<QWeights> mats;
  for (int64_t l = 0; l < n_layers; ++l) {
    mats.push_back(matrix(weights[4 * l], scales.get(4 * l), fmts[4 * l], q_size + 2 * kv_size, dim, "wqkv"));
    mats.push_back(matrix(weights[4 * l + 1], scales.get(4 * l + 1), fmts[4 * l + 1], dim, q_size, "wo"));
    mats.push_back(matrix(weights[4 * l + 2], scales.get(4 * l + 2), fmts[4 * l + 2], 2 * ffn, dim, "w13"));
    mats.push_back(matrix(weights[4 * l + 3], scales.get(4 * l + 3), fmts[4 * l + 3], dim, ffn, "w2"));
  }

  at::Tensor out = x.clone();
  float* h = out.data_ptr<float>();
  std::vector<float> tmp(widest), qkv(q_size + 2 * kv_size), attn(q_size), proj(dim), gate_up(2 * ffn);
  // Runs of kChunk positions: first over the 4-bit groups (if any), then over the int8 rows after them.
  const int64_t n = pos + 1, packed = q4 ? q4->groups * kQ4Group : 0;
  const int64_t packed_runs = (packed + kChunk - 1) / kChunk, runs = packed_runs + (n - packed + kChunk - 1) / kChunk;
  const int64_t items = n_kv * runs;
  auto span = [&](int64_t r) -> std::pair<int64_t, int64_t> {  // (first position, length) of run r
    const int64_t t0 = r < packed_runs ? r * kChunk : packed + (r - packed_runs) * kChunk;
    return {t0, std::min(kChunk, (r < packed_runs ? packed : n) - t0)};
  };
  std::vector<float> scores(n_heads * n), parts(runs * q_size), tops(runs * n_heads), sums(runs * n_heads);
  ActBuffer act(1, widest), head_act(1, head.logits ? dim : 0, true);
  const Acts x_act = act.row(0);
  RoundedQueries queries(n_heads, hd);  // an int8 cache's
  const float* cos_row = cos.data_ptr<float>() + pos * hd;
  const float* sin_row = sin.data_ptr<float>() + pos * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float epsf = static_cast<float>(eps);
  const float* norms_p = norms.data_ptr<float>();
  // Phases end at team.sync(); serial work (norms, rounding, RoPE, residuals) is the leader's.
  // The body is generic over the cache's rows (float*, c10::Half* or I8Rows).
  auto run = [&](auto k_base, auto v_base) { with_team([&](const Team& team) {
    for (int64_t l = 0; l < n_layers; ++l) {
      const QWeights* w = mats.data() + 4 * l;
      const float* norm = norms_p + l * 2 * dim;
      const int64_t layer_off = l * batch * n_kv * max_pos * hd;  // batch row 0
      const auto kc = k_base + layer_off;
      const auto vc = v_base + layer_off;

      if (team.leader()) norm_quantize(h, norm, epsf, dim, tmp.data(), act);
      team.sync();
      matvec(w[0], x_act, qkv.data(), team);
      team.sync();
      if (team.leader()) {
        rope(qkv.data(), n_heads + n_kv, hd, cos_row, sin_row);
        for (int64_t g = 0; g < n_kv; ++g) {
          store_row(qkv.data() + q_size + g * hd, kc + (g * max_pos + pos) * hd, hd);
          store_row(qkv.data() + q_size + kv_size + g * hd, vc + (g * max_pos + pos) * hd, hd);
        }
        if constexpr (std::is_same_v<std::decay_t<decltype(kc)>, I8Rows>) {
          queries.round(qkv.data(), n_heads);
        }
      }
      team.sync();
      // Each thread takes a contiguous share of the items (kv head-major, so a thread reads one
      // run after another of the same rows; claiming them one at a time instead was slower); an
      // item's query heads go together (up to kMaxGroup), reading each key and value once.
      for (int64_t item = items * team.tid / team.n, end = items * (team.tid + 1) / team.n; item < end; ++item) {
        const int64_t kv = item / runs, run = item % runs;
        const auto [t0, len] = span(run);
        Ahead ahead;
        if (item + 1 < end) {
          const int64_t kv1 = (item + 1) / runs, r1 = (item + 1) % runs;
          const auto [t1, len1] = span(r1);
          ahead = r1 < packed_runs ? Ahead{reinterpret_cast<const char*>(q4->at(l, kv1, t1).keys), len1 * hd / 2}
                                   : Ahead::rows(kc + (kv1 * max_pos + t1) * hd, len1 * hd);
        }
        for (int64_t head = kv * group; head < (kv + 1) * group; head += kMaxGroup) {
          const int64_t heads = std::min(kMaxGroup, (kv + 1) * group - head), part = run * n_heads + head;
#ifdef TANDEM_ZMM_DOT
          if (run < packed_runs) {
            attend_q4(qkv.data() + head * hd, q4->at(l, kv, t0), heads, len, hd, scale, scores.data() + head * n + t0,
                      n, parts.data() + part * hd, tops.data() + part, sums.data() + part,
                      head == kv * group ? ahead : Ahead{});
            continue;
          }
#endif
          attend(qkv.data() + head * hd, kc + (kv * max_pos + t0) * hd, vc + (kv * max_pos + t0) * hd, heads, len,
                 hd, scale, scores.data() + head * n + t0, n, parts.data() + part * hd, tops.data() + part,
                 sums.data() + part, QueryView(queries, head), head == kv * group ? ahead : Ahead{});
        }
      }
      team.sync();
      if (team.leader()) {
        merge_runs(parts.data(), tops.data(), sums.data(), runs, n_heads, hd, attn.data());
        quantize_row(attn.data(), act, 0, q_size);
      }
      team.sync();
      matvec(w[1], x_act, proj.data(), team);
      team.sync();
      if (team.leader()) {
        for (int64_t i = 0; i < dim; ++i) h[i] += proj[i];
        norm_quantize(h, norm + dim, epsf, dim, tmp.data(), act);
      }
      team.sync();
      matvec(w[2], x_act, gate_up.data(), team);
      team.sync();
      if (team.leader()) {
        swiglu(gate_up.data(), gate_up.data() + ffn, tmp.data(), ffn);
        quantize_row(tmp.data(), act, 0, ffn);
      }
      team.sync();
      matvec(w[3], x_act, proj.data(), team);
      team.sync();
      if (team.leader()) {
        for (int64_t i = 0; i < dim; ++i) h[i] += proj[i];
      }
    }
    if (head.logits) {
      if (team.leader()) {
        rms_norm(h, head.norm, epsf, dim, head.normed);
        quantize_row2(head.normed, head_act, 0, dim);
      }
      team.sync();
      matvec(head.w, head_act.row(0), head.logits, team, true);
    }
  }); };
  if (int8) {
    run(I8Rows{k_cache.data_ptr<int8_t>(), k_scale->data_ptr<c10::Half>(), hd},
        I8Rows{v_cache.data_ptr<int8_t>(), v_scale->data_ptr<c10::Half>(), hd});
  } else if (half) {
    run(k_cache.data_ptr<c10::Half>(), v_cache.data_ptr<c10::Half>());
  } else {
    run(k_cache.data_ptr<float>(), v_cache.data_ptr<float>());
  }
  return out;
}

// The 4-bit groups passed with an int8 cache (engine/packed_kv.py), checked against it; none when
// `groups` is 0.
std::optional<Q4Cache> q4_cache(const at::Tensor& k_cache, int64_t pos, const c10::optional<at::Tensor>& keys,
                                const c10::optional<at::Tensor>& key_stats, const c10::optional<at::Tensor>& values,
                                const c10::optional<at::Tensor>& value_stats, int64_t groups) {
  if (groups == 0) return std::nullopt;
#ifndef TANDEM_ZMM_DOT
  TORCH_CHECK(false, "4-bit cache groups are read only by AVX-512 VNNI builds (see packed_kv_supported)");
#endif
  TORCH_CHECK(keys && key_stats && values && value_stats,
              "4-bit cache groups need keys, key_stats, values, value_stats");
  TORCH_CHECK(k_cache.scalar_type() == at::kChar, "4-bit cache groups go with an int8 cache");
  const int64_t layers = k_cache.size(0), batch = k_cache.size(1), heads = k_cache.size(2), hd = k_cache.size(4);
  TORCH_CHECK(hd == 64 || hd == 128, "4-bit cache groups take heads of 64 or 128 values, not ", hd);
  const int64_t max_groups = keys->dim() == 5 ? keys->size(3) : -1;
  const std::vector<std::pair<const at::Tensor*, std::vector<int64_t>>> expected = {
      {&*keys, {layers, batch, heads, max_groups, 32 * hd}},
      {&*key_stats, {layers, batch, heads, max_groups, 2, hd}},
      {&*values, {layers, batch, heads, max_groups * kQ4Group / 2, hd}},
      {&*value_stats, {layers, batch, heads, max_groups, hd / 32, 2, kQ4Group}}};
  for (const auto& [t, sizes] : expected) {
    TORCH_CHECK(t->device().is_cpu() && t->is_contiguous() && t->sizes() == at::IntArrayRef(sizes) &&
                    t->scalar_type() == (t == &*keys || t == &*values ? at::kByte : at::kHalf),
                "4-bit cache groups have the wrong shape or type: ", t->sizes(), " ", t->scalar_type());
  }
  TORCH_CHECK(groups > 0 && groups <= max_groups && groups * kQ4Group <= pos,
              "4-bit cache groups (", groups, ") must end at or before position ", pos);
  const Q4Rows base{keys->data_ptr<uint8_t>(), key_stats->data_ptr<c10::Half>(), values->data_ptr<uint8_t>(),
                    value_stats->data_ptr<c10::Half>()};
  return Q4Cache{base, batch * heads, max_groups, hd, groups};
}

at::Tensor decode_step(const at::Tensor& x, const at::Tensor& norms, at::TensorList weights,
                       const c10::List<c10::optional<at::Tensor>>& scales, at::IntArrayRef fmts,
                       const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& cos,
                       const at::Tensor& sin, int64_t pos, int64_t n_heads, double eps,
                       const c10::optional<at::Tensor>& k_scale, const c10::optional<at::Tensor>& v_scale,
                       const c10::optional<at::Tensor>& k4, const c10::optional<at::Tensor>& k4_stats,
                       const c10::optional<at::Tensor>& v4, const c10::optional<at::Tensor>& v4_stats,
                       int64_t groups4) {
  const auto q4 = q4_cache(k_cache, pos, k4, k4_stats, v4, v4_stats, groups4);
  return run_step(x, norms, weights, scales, fmts, k_cache, v_cache, cos, sin, pos, n_heads, eps, k_scale, v_scale,
                  Head{}, q4 ? &*q4 : nullptr);
}

bool packed_kv_supported() {
#ifdef TANDEM_ZMM_DOT
  return true;
#else
  return false;
#endif
}

// decode_step, then the final norm (weight final_norm [dim]) and the output layer (w, in
// format fmt, I8's scales): (normed hidden state [dim], logits [vocab]), in one parallel region.
std::tuple<at::Tensor, at::Tensor> decode_logits(
    const at::Tensor& x, const at::Tensor& norms, at::TensorList weights,
    const c10::List<c10::optional<at::Tensor>>& scales, at::IntArrayRef fmts, const at::Tensor& k_cache,
    const at::Tensor& v_cache, const at::Tensor& cos, const at::Tensor& sin, int64_t pos, int64_t n_heads, double eps,
    const c10::optional<at::Tensor>& k_scale, const c10::optional<at::Tensor>& v_scale, const at::Tensor& final_norm,
    const at::Tensor& w, const c10::optional<at::Tensor>& w_scales, int64_t fmt, const c10::optional<at::Tensor>& k4,
    const c10::optional<at::Tensor>& k4_stats, const c10::optional<at::Tensor>& v4,
    const c10::optional<at::Tensor>& v4_stats, int64_t groups4) {
  const auto q4 = q4_cache(k_cache, pos, k4, k4_stats, v4, v4_stats, groups4);
  const int64_t dim = norms.size(-1);
  TORCH_CHECK(final_norm.device().is_cpu() && final_norm.scalar_type() == at::kFloat && final_norm.is_contiguous() &&
                  final_norm.numel() == dim,
              "the final norm must be a contiguous fp32 CPU tensor of ", dim, " values");
  at::Tensor normed = at::empty({dim}, at::kFloat), logits = at::empty({w.size(0)}, at::kFloat);
  const Head head{final_norm.data_ptr<float>(), matrix(w, w_scales, fmt, w.size(0), dim, "the output layer"), normed.data_ptr<float>(),
                  logits.data_ptr<float>()};
  run_step(x, norms, weights, scales, fmts, k_cache, v_cache, cos, sin, pos, n_heads, eps, k_scale, v_scale, head,
           q4 ? &*q4 : nullptr);
  return {normed, logits};
}

// ---- the confidence signals of one token's distribution ----------------------------

// ---- a prompt's attention over the int8 cache ------------------------------------------
// Prefill attended with torch's fp32 SDPA over the cache dequantized back to floats: on SmolLM2's
// 1,000-token prompt ~30 % of prefill. Each prompt position is here what a decode step at that
// position computes (the same query rounding, int8 dot products and int16 value weights, runs of
// kChunk merged in order), so a prompt and its decoded continuation attend alike.
// q: [T, H, D] fp32 after RoPE (rows may be strided, as the QKV matmul leaves them); the caches
// [L, B, Hkv, S, D] int8 with their fp16 scales, holding positions 0..start+T of `layer` (batch
// row 0); returns [T, H * D]: position start + t attends positions 0..start + t.
at::Tensor prefill_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& k_scale,
                             const at::Tensor& v_cache, const at::Tensor& v_scale, int64_t layer, int64_t start) {
  TORCH_CHECK(q.device().is_cpu() && q.scalar_type() == at::kFloat && q.dim() == 3 && q.stride(2) == 1 &&
                  q.stride(1) == q.size(2),
              "prefill_attention takes fp32 CPU queries [T, H, D] with contiguous heads");
  for (const at::Tensor* t : {&k_cache, &v_cache}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kChar && t->is_contiguous() && t->dim() == 5 &&
                    t->sizes() == k_cache.sizes(),
                "prefill_attention reads contiguous int8 caches [n_layers, batch, kv_heads, positions, head_dim]");
  }
  for (const at::Tensor* t : {&k_scale, &v_scale}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kHalf && t->is_contiguous() &&
                    t->sizes() == k_cache.sizes().slice(0, 4),
                "an int8 cache's scales must be contiguous fp16 [n_layers, batch, kv_heads, positions]");
  }
  const int64_t T = q.size(0), H = q.size(1), hd = q.size(2), n_kv = k_cache.size(2), S = k_cache.size(3);
  TORCH_CHECK(hd == k_cache.size(4) && hd <= 512 && H % n_kv == 0, "queries [", T, ", ", H, ", ", hd,
              "] do not fit a cache of ", n_kv, " kv heads of ", k_cache.size(4), " values (up to 512)");
  TORCH_CHECK(layer >= 0 && layer < k_cache.size(0) && start >= 0 && start + T <= S, "positions ", start, "..",
              start + T, " of layer ", layer, " are outside the cache");
  const int64_t group = H / n_kv, layer_off = layer * k_cache.size(1) * n_kv * S;
  const I8Rows keys{k_cache.data_ptr<int8_t>() + layer_off * hd, k_scale.data_ptr<c10::Half>() + layer_off, hd};
  const I8Rows values{v_cache.data_ptr<int8_t>() + layer_off * hd, v_scale.data_ptr<c10::Half>() + layer_off, hd};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  at::Tensor out = at::empty({T, H * hd}, at::kFloat);
  const float* qp = q.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t q_stride = q.stride(0), max_runs = (start + T + kChunk - 1) / kChunk;
  // Item i is (position, kv head); positions alternate from both ends of the prompt, so that a
  // thread's share of the causal work is even however parallel_for cuts the range.
  at::parallel_for(0, T * n_kv, 1, [&](int64_t i0, int64_t i1) {
    RoundedQueries queries(group, hd);
    std::vector<float> scores(group * kChunk), parts(max_runs * group * hd), tops(max_runs * group),
        sums(max_runs * group);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t j = i / n_kv, kv = i % n_kv, t = j % 2 == 0 ? j / 2 : T - 1 - j / 2, n = start + t + 1;
      queries.round(qp + t * q_stride + kv * group * hd, group);
      const int64_t runs = (n + kChunk - 1) / kChunk;
      for (int64_t r = 0; r < runs; ++r) {
        const int64_t t0 = r * kChunk, len = std::min(kChunk, n - t0), row = (kv * S + t0) * hd;
        for (int64_t head = 0; head < group; head += kMaxGroup) {
          const int64_t part = r * group + head;
          attend(nullptr, keys + row, values + row, std::min(kMaxGroup, group - head), len, hd, scale,
                 scores.data() + head * kChunk, kChunk, parts.data() + part * hd, tops.data() + part,
                 sums.data() + part, QueryView(queries, head), Ahead{});
        }
      }
      merge_runs(parts.data(), tops.data(), sums.data(), runs, group, hd, op + t * H * hd + kv * group * hd);
    }
  });
  return out;
}

// The two largest logits so far, ranked by value, then by the lower index (argmax's
// rule for ties); an empty slot holds -inf at the last index.
struct Top2 {
  float v1 = -std::numeric_limits<float>::infinity(), v2 = v1;
  int64_t i1 = std::numeric_limits<int64_t>::max(), i2 = i1;

  static bool before(float v, int64_t i, float w, int64_t j) { return v > w || (v == w && i < j); }
  void offer(float v, int64_t i) {
    if (before(v, i, v1, i1)) {
      v2 = v1, i2 = i1, v1 = v, i1 = i;
    } else if (before(v, i, v2, i2)) {
      v2 = v, i2 = i;
    }
  }
};

// Pass 1: the top two. Each SIMD lane keeps its own top two (a strict > keeps a lane's
// earliest index on ties, as its indices only grow), then the lanes' are merged.
Top2 top2(const float* x, int64_t n) {
  Top2 top;
  int64_t i = 0;
#if defined(TANDEM_AVX512)
  constexpr int W = 16;
  __m512 v1 = _mm512_set1_ps(top.v1), v2 = v1;
  __m512i i1 = _mm512_set1_epi32(-1), i2 = i1;
  __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (; i + W <= n; i += W) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __mmask16 gt1 = _mm512_cmp_ps_mask(v, v1, _CMP_GT_OQ), gt2 = _mm512_cmp_ps_mask(v, v2, _CMP_GT_OQ);
    v2 = _mm512_mask_blend_ps(gt1, _mm512_mask_blend_ps(gt2, v2, v), v1);
    i2 = _mm512_mask_blend_epi32(gt1, _mm512_mask_blend_epi32(gt2, i2, idx), i1);
    v1 = _mm512_mask_blend_ps(gt1, v1, v);
    i1 = _mm512_mask_blend_epi32(gt1, i1, idx);
    idx = _mm512_add_epi32(idx, _mm512_set1_epi32(W));
  }
  alignas(64) float lv1[W], lv2[W];
  alignas(64) int32_t li1[W], li2[W];
  _mm512_store_ps(lv1, v1), _mm512_store_ps(lv2, v2);
  _mm512_store_si512(li1, i1), _mm512_store_si512(li2, i2);
#elif defined(TANDEM_AVX2)
  constexpr int W = 8;
  __m256 v1 = _mm256_set1_ps(top.v1), v2 = v1;
  __m256 i1 = _mm256_castsi256_ps(_mm256_set1_epi32(-1)), i2 = i1;  // int32 lanes, blended as floats
  __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (; i + W <= n; i += W) {
    const __m256 v = _mm256_loadu_ps(x + i), vi = _mm256_castsi256_ps(idx);
    const __m256 gt1 = _mm256_cmp_ps(v, v1, _CMP_GT_OQ), gt2 = _mm256_cmp_ps(v, v2, _CMP_GT_OQ);
    v2 = _mm256_blendv_ps(_mm256_blendv_ps(v2, v, gt2), v1, gt1);
    i2 = _mm256_blendv_ps(_mm256_blendv_ps(i2, vi, gt2), i1, gt1);
    v1 = _mm256_blendv_ps(v1, v, gt1);
    i1 = _mm256_blendv_ps(i1, vi, gt1);
    idx = _mm256_add_epi32(idx, _mm256_set1_epi32(W));
  }
  alignas(32) float lv1[W], lv2[W];
  alignas(32) int32_t li1[W], li2[W];
  _mm256_store_ps(lv1, v1), _mm256_store_ps(lv2, v2);
  _mm256_store_si256(reinterpret_cast<__m256i*>(li1), _mm256_castps_si256(i1));
  _mm256_store_si256(reinterpret_cast<__m256i*>(li2), _mm256_castps_si256(i2));
#endif
#if defined(TANDEM_AVX2)
  for (int l = 0; l < W; ++l) {
    if (li1[l] >= 0) top.offer(lv1[l], li1[l]);
    if (li2[l] >= 0) top.offer(lv2[l], li2[l]);
  }
#endif
  for (; i < n; ++i) top.offer(x[i], i);
  return top;
}

// Pass 2: s = sum e^(x-m), t = sum e^(x-m) (x-m), so that log-sum-exp = m + log s and the
// entropy = log s - t/s without cancelling large terms. A -inf logit counts as x-m = -87
// (e^-87 ~ 1e-38: no weight); a NaN reaches t and makes the entropy NaN.
std::pair<double, double> exp_moments(const float* x, int64_t n, float m) {
  int64_t i = 0;
  double s = 0.0, t = 0.0;
#if defined(TANDEM_AVX512)
  const __m512 vm = _mm512_set1_ps(m), floor = _mm512_set1_ps(-87.0f);
  __m512 vs = _mm512_setzero_ps(), vt = vs;
  for (; i + 16 <= n; i += 16) {
    const __m512 d = _mm512_max_ps(floor, _mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    const __m512 e = exp16(d);
    vs = _mm512_add_ps(vs, e);
    vt = _mm512_fmadd_ps(e, d, vt);
  }
  s = _mm512_reduce_add_ps(vs), t = _mm512_reduce_add_ps(vt);
#elif defined(TANDEM_AVX2)
  const __m256 vm = _mm256_set1_ps(m), floor = _mm256_set1_ps(-87.0f);
  __m256 vs = _mm256_setzero_ps(), vt = vs;
  for (; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_max_ps(floor, _mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    const __m256 e = exp_ps(d);
    vs = _mm256_add_ps(vs, e);
    vt = _mm256_fmadd_ps(e, d, vt);
  }
  s = hsum(vs), t = hsum(vt);
#endif
  for (; i < n; ++i) {
    float d = x[i] - m;
    if (d < -87.0f) d = -87.0f;
    const float e = std::exp(d);
    s += e, t += static_cast<double>(e) * d;
  }
  return {s, t};
}

// logits [V] fp32 -> [top1 id, top2 id, top1 logit, top2 logit, log-sum-exp, entropy] (fp64):
// everything generation reports about a token's temperature-1 distribution, in two passes
// over the logits instead of the dozen torch ops (log-softmax, top-k, exp, sum) it took.
// Degenerate logits (all -inf, +inf, NaN, fewer than two finite) come back non-finite and
// the caller takes the reference path.
at::Tensor token_signals(const at::Tensor& logits) {
  TORCH_CHECK(logits.device().is_cpu() && logits.scalar_type() == at::kFloat && logits.dim() == 1 &&
                  logits.is_contiguous() && logits.numel() >= 2 && logits.numel() < (int64_t{1} << 31),
              "token_signals takes contiguous fp32 CPU logits [V], 2 <= V < 2^31");
  const float* x = logits.data_ptr<float>();
  const int64_t n = logits.numel();
  const Top2 top = top2(x, n);
  const auto [s, t] = exp_moments(x, n, top.v1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const bool ok = top.i2 < n;
  at::Tensor out = at::empty({6}, at::kDouble);
  double* o = out.data_ptr<double>();
  o[0] = ok ? static_cast<double>(top.i1) : -1.0;
  o[1] = ok ? static_cast<double>(top.i2) : -1.0;
  o[2] = top.v1, o[3] = top.v2;
  o[4] = ok ? top.v1 + std::log(s) : nan;
  o[5] = ok ? std::log(s) - t / s : nan;
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(tandem, m) {
  m.def(
      "decode_step(Tensor x, Tensor norms, Tensor[] weights, Tensor?[] scales, int[] fmts, Tensor(a!) k_cache, "
      "Tensor(b!) v_cache, Tensor cos, Tensor sin, int pos, int n_heads, float eps, Tensor(c!)? k_scale=None, "
      "Tensor(d!)? v_scale=None, Tensor? k4=None, Tensor? k4_stats=None, Tensor? v4=None, Tensor? v4_stats=None, "
      "int groups4=0) -> Tensor");
  m.def(
      "decode_logits(Tensor x, Tensor norms, Tensor[] weights, Tensor?[] scales, int[] fmts, Tensor(a!) k_cache, "
      "Tensor(b!) v_cache, Tensor cos, Tensor sin, int pos, int n_heads, float eps, Tensor(c!)? k_scale, "
      "Tensor(d!)? v_scale, Tensor final_norm, Tensor w, Tensor? w_scales, int fmt, Tensor? k4=None, "
      "Tensor? k4_stats=None, Tensor? v4=None, Tensor? v4_stats=None, int groups4=0) -> (Tensor, Tensor)");
  m.def("token_signals(Tensor logits) -> Tensor");
  m.def(
      "prefill_attention(Tensor q, Tensor k_cache, Tensor k_scale, Tensor v_cache, Tensor v_scale, int layer, "
      "int start) -> Tensor");
  m.def("packed_kv_supported() -> bool", &packed_kv_supported);
  m.def(
      "pack_kv_groups(Tensor k, Tensor k_scale, Tensor v, Tensor v_scale, Tensor(a!) k4, Tensor(b!) k4_stats, "
      "Tensor(c!) v4, Tensor(d!) v4_stats, int first, int last) -> ()");
}

TORCH_LIBRARY_IMPL(tandem, CPU, m) {
  m.impl("decode_step", decode_step);
  m.impl("decode_logits", decode_logits);
  m.impl("token_signals", token_signals);
  m.impl("prefill_attention", prefill_attention);
  m.impl("pack_kv_groups", pack_kv_groups);
}
