// SPDX-License-Identifier: MIT
// Turning pictures upright from a display matrix (EXIF orientation of photos,
// the "rotate" tag of phone videos), mirrors included.
#pragma once

#include <cstdint>

namespace pv {

/// How stored pixels map to the upright picture: upright(x, y) reads
/// stored(sx, sy) with (u, v) = swap ? (y, x) : (x, y), sx = flip_x ? W-1-u : u
/// and sy = flip_y ? H-1-v : v.
struct Orientation {
    bool swap = false;
    bool flip_x = false;
    bool flip_y = false;
    bool identity() const { return !swap && !flip_x && !flip_y; }
};

/// Reads a 3x3 16.16 display matrix as libavcodec/libavformat export it.
/// Limitation: a matrix that is not a multiple of 90 degrees (never written for
/// EXIF, rare in videos) is treated as upright.
Orientation orientation_from_matrix(const std::int32_t* matrix);

/// Copies one plane of `bytes_per_pixel`-byte pixels (src_w x src_h) upright
/// into `dst`, which is src_h x src_w when o.swap, else src_w x src_h.
void remap_plane(const std::uint8_t* src, int src_stride, int src_w, int src_h, std::uint8_t* dst,
                 int dst_stride, Orientation o, int bytes_per_pixel);

}  // namespace pv
