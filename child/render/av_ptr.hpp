// SPDX-License-Identifier: MIT
// RAII owners for the FFmpeg handles the renderer uses, and AvError, the
// exception every failed libav* call turns into. Nothing here leaves render/.
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavfilter/avfilter.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
}

#include <memory>
#include <stdexcept>
#include <string>

namespace pv {

/// Text of an AVERROR code ("Invalid data found when processing input").
inline std::string av_error_text(int code) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(code, buf, sizeof buf);
    return buf;
}

/// A failed libav* call: `what` names the step, code() is the AVERROR.
class AvError : public std::runtime_error {
public:
    AvError(const std::string& what, int code)
        : std::runtime_error(what + ": " + av_error_text(code)), m_code(code) {}
    int code() const { return m_code; }

private:
    int m_code;
};

/// Throws AvError when rc < 0; returns rc otherwise.
inline int av_check(int rc, const std::string& what) {
    if (rc < 0)
        throw AvError(what, rc);
    return rc;
}

/// Deleter for the av_*_free(T**) family.
template <auto Free>
struct AvFree {
    template <class T>
    void operator()(T* p) const noexcept {
        Free(&p);
    }
};

/// Deleter for the single-pointer family (sws_freeContext).
template <auto Free>
struct AvFreePlain {
    template <class T>
    void operator()(T* p) const noexcept {
        Free(p);
    }
};

using CodecCtxPtr = std::unique_ptr<AVCodecContext, AvFree<avcodec_free_context>>;
using FramePtr = std::unique_ptr<AVFrame, AvFree<av_frame_free>>;
using PacketPtr = std::unique_ptr<AVPacket, AvFree<av_packet_free>>;
using InputCtxPtr = std::unique_ptr<AVFormatContext, AvFree<avformat_close_input>>;
using OutputCtxPtr = std::unique_ptr<AVFormatContext, AvFreePlain<avformat_free_context>>;
using FilterGraphPtr = std::unique_ptr<AVFilterGraph, AvFree<avfilter_graph_free>>;
using SwsPtr = std::unique_ptr<SwsContext, AvFreePlain<sws_freeContext>>;
using SwrPtr = std::unique_ptr<SwrContext, AvFree<swr_free>>;

/// Allocates an empty frame; throws std::bad_alloc when out of memory.
inline FramePtr make_frame() {
    FramePtr f{av_frame_alloc()};
    if (!f)
        throw std::bad_alloc();
    return f;
}

inline PacketPtr make_packet() {
    PacketPtr p{av_packet_alloc()};
    if (!p)
        throw std::bad_alloc();
    return p;
}

/// Allocates a frame with its own buffers in `fmt` at w x h.
inline FramePtr make_video_frame(int w, int h, AVPixelFormat fmt) {
    FramePtr f = make_frame();
    f->width = w;
    f->height = h;
    f->format = fmt;
    av_check(av_frame_get_buffer(f.get(), 0), "av_frame_get_buffer");
    return f;
}

}  // namespace pv
