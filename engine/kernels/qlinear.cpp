// The quantized matmul and embedding ops (formats and block dots: quant_blocks.h).
//
// Activations are rounded to int8 blocks and the matmul runs as int8 dot products over the
// weight blocks: a few rows (decode) bandwidth-bound, many rows (prefill) on a repacked matrix
// compute-bound, kBatchRows activation rows per unpacked tile (gemm_tile). Many rows of the other
// formats (int8 per-channel, the portable build), and of every format on a CPU with AMX, dequantize
// a tile of weight rows (to bf16 where the CPU has bf16 dot products, else fp32) and call the BLAS
// matmul.
// `quantize_x = false` quantizes the activations to two int8 levels on the few-rows
// path (near-fp32: 1.6e-5 of each block's absmax, see Acts in quant_blocks.h): the
// output layer uses it, because its logits are the router's confidence signals and
// one int8 level there flips near-ties between the top tokens.

#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/library.h>

#include "quant_blocks.h"

namespace {

// Rows per task so that each thread gets a contiguous run of weight rows.
int64_t grain(int64_t n) {
  return std::max<int64_t>(16, (n + at::get_num_threads() - 1) / at::get_num_threads());
}

// Up to this many activation rows, int8 dot products whatever the format; beyond, those formats
// without a batched tile dot dequantize + BLAS.
constexpr int64_t kMaxDotRows = 8;
// Weight rows dequantized at a time on the BLAS path (a tile of ~4 MiB in fp32, half that in bf16).
constexpr int64_t kTileBytes = 4 << 20;
// Where the CPU has bf16 dot products (-march=native says), the BLAS path runs on
// bf16 tiles of rounded activations: 4.5x the fp32 rate on a Zen 4 core, and a
// rounding (2^-9 relative) of the order of the int8 blocks of the decode path.
#if defined(__AVX512BF16__) || defined(__AMX_BF16__)
constexpr bool kBf16Gemm = true;
#else
constexpr bool kBf16Gemm = false;
#endif

bool bf16_gemm() { return kBf16Gemm; }

// On a CPU with AMX tiles (Sapphire Rapids and later), the BLAS path's bf16 matmul runs on them:
// with the weights dequantized for every call it still did 1.1-4.6x the int8 tile dot's rate on
// the 135M and 1B shapes (measured on a 2-core Xeon VM, 228-1000 prompt rows), so there the prompt
// takes it. Everywhere else the int8 tile dot is the faster one.
#if defined(__AMX_BF16__) && defined(__AVX512BF16__)
constexpr bool kTileGemm = false;
#else
constexpr bool kTileGemm = true;
#endif

bool tile_gemm() { return kTileGemm; }

// fp32 -> bf16, round to nearest even (as at::Tensor::to(kBFloat16) rounds).
void to_bf16(const float* x, at::BFloat16* out, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i, reinterpret_cast<const __m512i&>(v));
  }
#endif
  for (; i < n; ++i) out[i] = at::BFloat16(x[i]);
}

at::Tensor qlinear(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& scales, int64_t fmt,
                   int64_t k, bool quantize_x) {
  // No autograd kernel: the ops below run beneath it (weights are frozen buffers).
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const QWeights weight = weights(w, scales, fmt, k);
  TORCH_CHECK(x.device().is_cpu() && x.size(-1) == k, "input must be a CPU tensor [..., ", k, "]");
  const int64_t n = weight.n;
  at::Tensor x2 = x.reshape({-1, k}).to(at::kFloat).contiguous();
  const int64_t m = x2.size(0);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = n;
  at::Tensor out = at::empty({m, n}, at::kFloat);

  // Many rows of a matrix of whole tiles go through the batched tile dot, their activations mixed
  // (two int8 levels for the outlier blocks: Acts), near the bf16 path's rounding.
  const bool batched =
      m > kMaxDotRows && quantize_x && kTileGemm && gemm_tile_fn(fmt) != nullptr && weight.tiled_rows() == n;
  if (m > kMaxDotRows && !batched) {
    const bool bf16 = quantize_x && kBf16Gemm;
    const at::Tensor xa = bf16 ? x2.to(at::kBFloat16) : x2;
    const int64_t tile = std::max<int64_t>(64, kTileBytes / (k * 4));
    at::Tensor buf = at::empty({std::min(tile, n), k}, bf16 ? at::kBFloat16 : at::kFloat);
    const DequantFn fn = dequant_fn(fmt);
    for (int64_t t0 = 0; t0 < n; t0 += tile) {
      const int64_t rows = std::min(tile, n - t0);
      at::parallel_for(0, rows, grain(rows), [&](int64_t r0, int64_t r1) {
        std::vector<float> row(bf16 ? k : 0);
        for (int64_t r = r0; r < r1; ++r) {
          // bf16: one row at a time through L1 into the tile (no fp32 tile, no second pass over it)
          float* dst = bf16 ? row.data() : buf.data_ptr<float>() + r * k;
          fn(weight, t0 + r, dst);
          if (bf16) to_bf16(dst, buf.data_ptr<at::BFloat16>() + r * k, k);
        }
      });
      at::Tensor dst = out.narrow(1, t0, rows);
      if (bf16) {
        dst.copy_(at::mm(xa, buf.narrow(0, 0, rows).t()));
      } else {
        at::mm_out(dst, x2, buf.narrow(0, 0, rows).t());
      }
    }
    return out.view(out_shape).to(x.scalar_type());
  }

  const float* xp = x2.data_ptr<float>();
  ActBuffer act(m, k, !quantize_x || batched);
  at::parallel_for(0, m, std::max<int64_t>(kMaxDotRows, m / at::get_num_threads()), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      if (batched) {
        quantize_row_mixed(xp + i * k, act, i, k);
      } else if (quantize_x) {
        quantize_row(xp + i * k, act, i, k);
      } else {
        quantize_row2(xp + i * k, act, i, k);
      }
    }
  });
  std::vector<Acts> rows;
  for (int64_t i = 0; i < m; ++i) rows.push_back(act.row(i));
  // Threads split the weight rows (at tile boundaries): each is read once for every activation row.
  const int64_t parts = std::min<int64_t>(at::get_num_threads(), (n + kTileRows - 1) / kTileRows);
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const auto [r0, r1] = rows_of_part(n, p, parts);
      dot_rows(weight, rows.data(), m, !quantize_x, r0, r1, out.data_ptr<float>(), n);
    }
  });
  return out.view(out_shape).to(x.scalar_type());
}

// Rewrites Q4_0 / Q4_1 / Q8_0 rows in place into their repacked layout (quant_blocks.h): whole
// 16-row tiles, then the remaining rows one by one (Q8_0's stay as they are); returns the repacked
// format's code. Same bytes: no second copy of the weights is ever held (a tile's worth at a time).
int64_t repack(const at::Tensor& w, int64_t fmt) {
  TORCH_CHECK(fmt == Q4_0 || fmt == Q4_1 || fmt == Q8_0, "only Q4_0, Q4_1 and Q8_0 weights are repacked, not format ",
              fmt);
  TORCH_CHECK(w.device().is_cpu() && w.scalar_type() == at::kByte && w.dim() == 2 && w.is_contiguous() &&
                  w.size(1) > 0 && w.size(1) % block_bytes(fmt) == 0,
              "weight must be a contiguous CPU uint8 tensor [out_features, blocks * ", block_bytes(fmt), "]");
  const int64_t n = w.size(0), row_bytes = w.size(1), nb = row_bytes / block_bytes(fmt);
  const int64_t tiles = n / kTileRows, units = fmt == Q8_0 ? tiles : tiles + n % kTileRows;
  uint8_t* wp = w.data_ptr<uint8_t>();
  at::parallel_for(0, units, 1, [&](int64_t u0, int64_t u1) {
    std::vector<uint8_t> copy(kTileRows * row_bytes);
    for (int64_t u = u0; u < u1; ++u) {
      if (u < tiles) {
        uint8_t* tile = wp + u * kTileRows * row_bytes;
        std::memcpy(copy.data(), tile, kTileRows * row_bytes);
        if (fmt == Q8_0) {
          repack_tile_q8(copy.data(), row_bytes, tile, nb);
        } else {
          repack_tile(copy.data(), row_bytes, tile, nb, fmt == Q4_1);
        }
      } else {
        uint8_t* row = wp + (tiles * kTileRows + u - tiles) * row_bytes;
        std::memcpy(copy.data(), row, row_bytes);
        repack_row(copy.data(), row, nb, fmt == Q4_1);
      }
    }
  });
  return fmt == Q4_0 ? Q4_0R : fmt == Q4_1 ? Q4_1R : Q8_0R;
}

// Rows `ids` of a quantized [vocab, dim] table, as fp32 [..., dim] (embedding lookup).
at::Tensor embedding(const at::Tensor& ids, const at::Tensor& w, const c10::optional<at::Tensor>& scales, int64_t fmt,
                     int64_t k) {
  const QWeights weight = weights(w, scales, fmt, k);
  at::Tensor flat = ids.reshape({-1}).to(at::kLong).contiguous();
  const int64_t n = flat.numel(), vocab = weight.n;
  std::vector<int64_t> shape(ids.sizes().begin(), ids.sizes().end());
  shape.push_back(k);
  at::Tensor out = at::empty({n, k}, at::kFloat);
  const int64_t* idp = flat.data_ptr<int64_t>();
  const DequantFn fn = dequant_fn(fmt);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = idp[i];
    TORCH_CHECK(r >= 0 && r < vocab, "token id ", r, " is outside the vocabulary of ", vocab);
    fn(weight, r, out.data_ptr<float>() + i * k);
  }
  return out.view(shape);
}

}  // namespace

TORCH_LIBRARY(tandem, m) {
  m.def("qlinear(Tensor x, Tensor w, Tensor? scales, int fmt, int in_features, bool quantize_x=True) -> Tensor");
  m.def("bf16_gemm() -> bool", &bf16_gemm);  // no tensor to dispatch on: one kernel for all
  m.def("tile_gemm() -> bool", &tile_gemm);  // whether many rows of a repacked matrix take the int8 tile dot
  m.def("embedding(Tensor ids, Tensor w, Tensor? scales, int fmt, int in_features) -> Tensor");
  m.def("repack(Tensor(a!) w, int fmt) -> int");
}

TORCH_LIBRARY_IMPL(tandem, CPU, m) {
  m.impl("qlinear", qlinear);
  m.impl("embedding", embedding);
  m.impl("repack", repack);
}
