// SPDX-License-Identifier: MIT
// swscale set-up shared by the image and video sources: picks the right input
// range and matrix so full-range JPEG pixels come out as limited-range BT.709.
#pragma once

#include "av_ptr.hpp"

namespace pv {

/// Output colour space of every rendered frame (tagged on the H.264 stream).
inline constexpr AVColorSpace kOutputColorspace = AVCOL_SPC_BT709;

/// A scaler from frames like `src` (format, size, range, matrix) to dst_w x
/// dst_h in dst_fmt. RGB destinations are full range; YUV destinations are
/// limited-range BT.709. Throws AvError when swscale refuses the formats.
SwsPtr make_scaler(const AVFrame& src, int src_w, int src_h, int dst_w, int dst_h,
                   AVPixelFormat dst_fmt, int flags = SWS_BICUBIC);

}  // namespace pv
