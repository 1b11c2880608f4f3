// SPDX-License-Identifier: MIT
#include "scaler.hpp"

extern "C" {
#include <libavutil/pixdesc.h>
}

namespace pv {
namespace {

bool is_full_range(const AVFrame& f) {
    switch (f.format) {
        case AV_PIX_FMT_YUVJ420P:
        case AV_PIX_FMT_YUVJ422P:
        case AV_PIX_FMT_YUVJ444P:
        case AV_PIX_FMT_YUVJ440P:
        case AV_PIX_FMT_YUVJ411P:
            return true;
        default:
            return f.color_range == AVCOL_RANGE_JPEG;
    }
}

bool is_rgb(int fmt) {
    const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(fmt));
    return d && (d->flags & AV_PIX_FMT_FLAG_RGB);
}

int sws_colorspace(AVColorSpace cs) {
    switch (cs) {
        case AVCOL_SPC_BT709:
            return SWS_CS_ITU709;
        case AVCOL_SPC_BT2020_NCL:
        case AVCOL_SPC_BT2020_CL:
            return SWS_CS_BT2020;
        case AVCOL_SPC_FCC:
            return SWS_CS_FCC;
        case AVCOL_SPC_SMPTE240M:
            return SWS_CS_SMPTE240M;
        default:
            return SWS_CS_ITU601;  // JPEG and unspecified SD sources
    }
}

}  // namespace

SwsPtr make_scaler(const AVFrame& src, int src_w, int src_h, int dst_w, int dst_h,
                   AVPixelFormat dst_fmt, int flags) {
    SwsPtr sws{sws_getContext(src_w, src_h, static_cast<AVPixelFormat>(src.format), dst_w, dst_h,
                              dst_fmt, flags | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr,
                              nullptr, nullptr)};
    if (!sws)
        throw AvError("sws_getContext", AVERROR(EINVAL));

    bool src_rgb = is_rgb(src.format);
    bool dst_rgb = is_rgb(dst_fmt);
    int src_range = src_rgb ? 1 : (is_full_range(src) ? 1 : 0);
    int dst_range = dst_rgb ? 1 : 0;
    const int* src_table =
        sws_getCoefficients(src_rgb ? SWS_CS_ITU709 : sws_colorspace(src.colorspace));
    const int* dst_table = sws_getCoefficients(SWS_CS_ITU709);
    // Limitation: swscale converts the range but not the matrix from YUV to
    // YUV, so a BT.601-tagged video clip keeps its BT.601 colours (slightly
    // shifted hues); photos go through RGB and are converted exactly.
    sws_setColorspaceDetails(sws.get(), src_table, src_range, dst_table, dst_range, 0, 1 << 16,
                             1 << 16);
    return sws;
}

}  // namespace pv
