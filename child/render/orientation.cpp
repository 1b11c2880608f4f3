// SPDX-License-Identifier: MIT
#include "orientation.hpp"

#include <cstring>

namespace pv {

Orientation orientation_from_matrix(const std::int32_t* m) {
    // Entries are 16.16 fixed point; only their signs matter for right angles.
    auto sign = [](std::int32_t v) { return v > (1 << 15) ? 1 : (v < -(1 << 15) ? -1 : 0); };
    int a = sign(m[0]), b = sign(m[1]), c = sign(m[3]), d = sign(m[4]);
    if (a != 0 && d != 0 && b == 0 && c == 0)
        return {false, a < 0, d < 0};
    if (a == 0 && d == 0 && b != 0 && c != 0)
        return {true, b < 0, c < 0};
    return {};
}

void remap_plane(const std::uint8_t* src, int src_stride, int src_w, int src_h, std::uint8_t* dst,
                 int dst_stride, Orientation o, int bpp) {
    const int out_w = o.swap ? src_h : src_w;
    const int out_h = o.swap ? src_w : src_h;
    for (int y = 0; y < out_h; ++y) {
        std::uint8_t* row = dst + static_cast<std::ptrdiff_t>(y) * dst_stride;
        for (int x = 0; x < out_w; ++x) {
            int u = o.swap ? y : x;
            int v = o.swap ? x : y;
            int sx = o.flip_x ? src_w - 1 - u : u;
            int sy = o.flip_y ? src_h - 1 - v : v;
            std::memcpy(row + x * bpp,
                        src + static_cast<std::ptrdiff_t>(sy) * src_stride + sx * bpp,
                        static_cast<std::size_t>(bpp));
        }
    }
}

}  // namespace pv
