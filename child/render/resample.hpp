// SPDX-License-Identifier: MIT
// Bilinear sub-pixel resampling of one 8-bit plane: the per-frame zoom of an
// image scene. With AVX2 it runs horizontal-first on SIMD shuffles; without,
// a portable vertical-first loop. Both give exactly the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace pv {

/// An 8-bit plane: `stride` bytes from one row to the next, and at least
/// `stride` bytes readable from the start of every row (FFmpeg's buffers).
struct PlaneView {
    const std::uint8_t* data = nullptr;
    int stride = 0;
    int width = 0;
    int height = 0;
};

/// Scratch rows and tap tables, kept between frames to avoid reallocations.
struct ResampleScratch {
    std::vector<int> x_index, x_weight, y_index, y_weight;
    std::vector<std::uint16_t> column_sums;  // portable: one vertically blended row
    std::vector<int> group_base;             // SIMD: first source column of 8 outputs
    std::vector<std::uint8_t> group_shuffle;
    std::vector<std::int16_t> group_weights;
    std::vector<std::int16_t> rows[2];  // SIMD: horizontally resampled source rows
    int cached[2] = {-1, -1};           // their source row numbers
};

/// Writes `dst_w` x `dst_h` pixels to `dst`; output pixel (x, y) samples the
/// source at (x0 + (x + 0.5) * step_x - 0.5, y0 + (y + 0.5) * step_y - 0.5),
/// clamped to the plane, with 8-bit weights (1/256 pixel).
void resample_plane(const PlaneView& src, std::uint8_t* dst, int dst_stride, int dst_w, int dst_h,
                    double x0, double y0, double step_x, double step_y, ResampleScratch& scratch);

}  // namespace pv
