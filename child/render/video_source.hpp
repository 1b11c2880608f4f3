// SPDX-License-Identifier: MIT
// One video scene's pictures: the clip is decoded in order, resampled to the
// output frame rate by picking the frame shown at each output instant,
// letterboxed into the output size, and held on its last frame when it ends.
#pragma once

#include "av_ptr.hpp"
#include "orientation.hpp"

#include <string>

namespace pv {

class VideoSource {
public:
    /// Opens the clip. Throws AvError or std::runtime_error with a short reason.
    VideoSource(const std::string& path, int width, int height, int fps);

    /// The next output frame (yuv420p, width x height, limited range).
    FramePtr next();

    /// The clip's length in seconds from its demuxed packets (first pts to the
    /// end of the last packet), not from the container header.
    static double measure_duration(const std::string& path);

private:
    bool decode_one();  // puts the next decoded picture in m_pending
    FramePtr convert(const AVFrame& f);

    int m_width;
    int m_height;
    int m_fps;
    long m_out_index = 0;
    InputCtxPtr m_in;
    CodecCtxPtr m_dec;
    int m_stream = -1;
    AVRational m_tb{1, 1};
    int64_t m_first_pts = AV_NOPTS_VALUE;
    bool m_eof = false;
    bool m_flushing = false;
    FramePtr m_shown;    // last frame chosen for output (converted)
    FramePtr m_pending;  // decoded, not yet shown
    double m_pending_time = 0;
    Orientation m_orient;  // from the stream's display matrix
    SwsPtr m_sws;
    int m_sws_w = 0, m_sws_h = 0, m_sws_fmt = -1;
};

}  // namespace pv
