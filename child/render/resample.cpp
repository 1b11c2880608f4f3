// SPDX-License-Identifier: MIT
#include "resample.hpp"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(PV_RESAMPLE_PORTABLE)
#include <immintrin.h>
#define PV_RESAMPLE_AVX2 1
#endif

#include <algorithm>
#include <cmath>

namespace pv {
namespace {

// Per-axis bilinear taps: for each output index, the first source index and
// the weight (0..256) of the second one.
void make_taps(std::vector<int>& index, std::vector<int>& weight, int out_n, int src_n,
               double start, double step) {
    index.resize(static_cast<std::size_t>(out_n));
    weight.resize(static_cast<std::size_t>(out_n));
    for (int i = 0; i < out_n; ++i) {
        double s = start + (i + 0.5) * step - 0.5;
        s = std::clamp(s, 0.0, static_cast<double>(src_n - 1));
        int i0 = std::min(static_cast<int>(s), src_n - 2 < 0 ? 0 : src_n - 2);
        index[i] = i0;
        weight[i] = static_cast<int>(std::lround((s - i0) * 256));
    }
}

// Every output pixel is
//   (a * (256 - wx) * (256 - wy) + b * wx * (256 - wy) + c * (256 - wx) * wy
//    + d * wx * wy + 2^15) >> 16
// for its four neighbours a b / c d; both versions compute exactly this.

// Portable: each output row first blends its two source rows over the columns
// it reads (16-bit sums, a loop the compiler vectorises), then interpolates
// along the row.
void resample_portable(const PlaneView& src, std::uint8_t* dst, int dst_stride, int dst_w,
                       int dst_h, ResampleScratch& s) {
    const int next_col = src.width > 1 ? 1 : 0;
    const std::ptrdiff_t next_row = src.height > 1 ? src.stride : 0;
    // Source columns a row reads (taps never decrease).
    const int first = s.x_index.front();
    const int span = s.x_index.back() + next_col + 1 - first;
    s.column_sums.resize(static_cast<std::size_t>(span));
    std::uint16_t* v = s.column_sums.data();
    for (int y = 0; y < dst_h; ++y) {
        const std::uint8_t* r0 =
            src.data + static_cast<std::ptrdiff_t>(s.y_index[y]) * src.stride + first;
        const std::uint8_t* r1 = r0 + next_row;
        const int wy = s.y_weight[y];
        const int wy0 = 256 - wy;
        for (int j = 0; j < span; ++j) v[j] = static_cast<std::uint16_t>(r0[j] * wy0 + r1[j] * wy);
        std::uint8_t* out = dst + static_cast<std::ptrdiff_t>(y) * dst_stride;
        for (int x = 0; x < dst_w; ++x) {
            const int i = s.x_index[x] - first;
            const int wx = s.x_weight[x];
            const int sum = v[i] * (256 - wx) + v[i + next_col] * wx;
            out[x] = static_cast<std::uint8_t>((sum + (1 << 15)) >> 16);
        }
    }
}

#ifdef PV_RESAMPLE_AVX2

bool have_avx2() {
    static const bool yes = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    }();
    return yes;
}

// Horizontal-first with SIMD. A source row is resampled along x into signed
// 16-bit values h - 32768, where h = a * (256 - wx) + b * wx (0..65280):
// eight outputs at a time from one 16-byte load, a byte shuffle that puts
// each pair a, b side by side, and a multiply-add with the weight pairs.
// Output rows then blend two such rows, again by multiply-add; the offset
// of -32768 on both adds up to -2^23, added back before rounding.

// Splits the x taps into groups of eight outputs whose two neighbours lie
// within 16 bytes of the group's first; the rest is done one by one.
void plan_groups(const PlaneView& src, int dst_w, ResampleScratch& s) {
    const int next_col = src.width > 1 ? 1 : 0;
    s.group_base.clear();
    s.group_shuffle.clear();
    s.group_weights.clear();
    for (int x = 0; x + 8 <= dst_w; x += 8) {
        const int base = s.x_index[x];
        // Reads 16 bytes from base: the row's stride must cover them.
        if (s.x_index[x + 7] + next_col - base > 15 || base + 16 > src.stride)
            break;
        s.group_base.push_back(base);
        for (int k = 0; k < 8; ++k) {
            const int off = s.x_index[x + k] - base;
            const int w = s.x_weight[x + k];
            s.group_shuffle.push_back(static_cast<std::uint8_t>(off));
            s.group_shuffle.push_back(static_cast<std::uint8_t>(off + next_col));
            s.group_weights.push_back(static_cast<std::int16_t>(256 - w));
            s.group_weights.push_back(static_cast<std::int16_t>(w));
        }
    }
}

__attribute__((target("avx2"))) void resample_row_x(const std::uint8_t* row,
                                                    const ResampleScratch& s, int next_col,
                                                    int dst_w, std::int16_t* out) {
    const __m128i zero = _mm_setzero_si128();
    const __m128i offset = _mm_set1_epi32(1 << 15);
    const int groups = static_cast<int>(s.group_base.size());
    const std::uint8_t* shuffle = s.group_shuffle.data();
    const std::int16_t* weights = s.group_weights.data();
    for (int g = 0; g < groups; ++g) {
        const __m128i px = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + s.group_base[g]));
        const __m128i pairs = _mm_shuffle_epi8(
            px, _mm_loadu_si128(reinterpret_cast<const __m128i*>(shuffle + 16 * g)));
        const __m128i w0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(weights + 16 * g));
        const __m128i w1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(weights + 16 * g + 8));
        const __m128i lo =
            _mm_sub_epi32(_mm_madd_epi16(_mm_unpacklo_epi8(pairs, zero), w0), offset);
        const __m128i hi =
            _mm_sub_epi32(_mm_madd_epi16(_mm_unpackhi_epi8(pairs, zero), w1), offset);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 8 * g), _mm_packs_epi32(lo, hi));
    }
    for (int x = 8 * groups; x < dst_w; ++x) {
        const int i = s.x_index[x];
        const int w = s.x_weight[x];
        out[x] = static_cast<std::int16_t>(row[i] * (256 - w) + row[i + next_col] * w - (1 << 15));
    }
}

__attribute__((target("avx2"))) void blend_rows_y(const std::int16_t* h0, const std::int16_t* h1,
                                                  int wy, std::uint8_t* out, int n) {
    const __m256i w = _mm256_set1_epi32(
        static_cast<int>((static_cast<unsigned>(wy) << 16) | static_cast<unsigned>(256 - wy)));
    const __m256i bias = _mm256_set1_epi32((1 << 23) + (1 << 15));
    int x = 0;
    for (; x + 16 <= n; x += 16) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h0 + x));
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h1 + x));
        // Within each 128-bit lane: pixels 0-3 | 8-11 and 4-7 | 12-15.
        __m256i lo = _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), w);
        __m256i hi = _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), w);
        lo = _mm256_srai_epi32(_mm256_add_epi32(lo, bias), 16);
        hi = _mm256_srai_epi32(_mm256_add_epi32(hi, bias), 16);
        const __m256i words = _mm256_packus_epi32(lo, hi);  // 0-7 | 8-15
        const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(words, words), 0x08);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + x), _mm256_castsi256_si128(bytes));
    }
    for (; x < n; ++x) {
        const int sum = (h0[x] + (1 << 15)) * (256 - wy) + (h1[x] + (1 << 15)) * wy;
        out[x] = static_cast<std::uint8_t>((sum + (1 << 15)) >> 16);
    }
}

// Source row `k` resampled along x, from the two-row cache; `keep` is the
// row the caller still holds, never evicted.
const std::int16_t* row_x(const PlaneView& src, int k, int keep, int dst_w, ResampleScratch& s) {
    for (int i = 0; i < 2; ++i) {
        if (s.cached[i] == k)
            return s.rows[i].data();
    }
    // Rows are asked for in increasing order: the lower one goes first.
    const int slot = s.cached[0] == keep   ? 1
                     : s.cached[1] == keep ? 0
                                           : (s.cached[0] <= s.cached[1] ? 0 : 1);
    s.rows[slot].resize(static_cast<std::size_t>(dst_w));
    resample_row_x(src.data + static_cast<std::ptrdiff_t>(k) * src.stride, s, src.width > 1 ? 1 : 0,
                   dst_w, s.rows[slot].data());
    s.cached[slot] = k;
    return s.rows[slot].data();
}

void resample_avx2(const PlaneView& src, std::uint8_t* dst, int dst_stride, int dst_w, int dst_h,
                   ResampleScratch& s) {
    plan_groups(src, dst_w, s);
    s.cached[0] = s.cached[1] = -1;
    const int next_row = src.height > 1 ? 1 : 0;
    for (int y = 0; y < dst_h; ++y) {
        const int k = s.y_index[y];
        const int wy = s.y_weight[y];
        const std::int16_t* h0 = row_x(src, k, -1, dst_w, s);
        const std::int16_t* h1 = wy == 0 ? h0 : row_x(src, k + next_row, k, dst_w, s);
        blend_rows_y(h0, h1, wy, dst + static_cast<std::ptrdiff_t>(y) * dst_stride, dst_w);
    }
}

#endif

}  // namespace

void resample_plane(const PlaneView& src, std::uint8_t* dst, int dst_stride, int dst_w, int dst_h,
                    double x0, double y0, double step_x, double step_y, ResampleScratch& scratch) {
    if (dst_w <= 0 || dst_h <= 0 || src.width <= 0 || src.height <= 0)
        return;
    make_taps(scratch.x_index, scratch.x_weight, dst_w, src.width, x0, step_x);
    make_taps(scratch.y_index, scratch.y_weight, dst_h, src.height, y0, step_y);
#ifdef PV_RESAMPLE_AVX2
    if (have_avx2()) {
        resample_avx2(src, dst, dst_stride, dst_w, dst_h, scratch);
        return;
    }
#endif
    resample_portable(src, dst, dst_stride, dst_w, dst_h, scratch);
}

}  // namespace pv
