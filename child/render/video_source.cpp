// SPDX-License-Identifier: MIT
#include "video_source.hpp"

#include "scaler.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace pv {
namespace {

InputCtxPtr open_input(const std::string& path) {
    AVFormatContext* raw = nullptr;
    av_check(avformat_open_input(&raw, path.c_str(), nullptr, nullptr), "cannot open");
    InputCtxPtr in{raw};
    av_check(avformat_find_stream_info(in.get(), nullptr), "cannot read stream info");
    return in;
}

void fill_black(AVFrame& f) {
    for (int p = 0; p < 3; ++p) {
        int rows = p == 0 ? f.height : f.height / 2;
        int cols = p == 0 ? f.width : f.width / 2;
        for (int y = 0; y < rows; ++y) {
            std::memset(f.data[p] + static_cast<std::ptrdiff_t>(y) * f.linesize[p],
                        p == 0 ? 16 : 128, static_cast<size_t>(cols));
        }
    }
}

}  // namespace

VideoSource::VideoSource(const std::string& path, int width, int height, int fps)
    : m_width(width), m_height(height), m_fps(fps) {
    m_in = open_input(path);
    const AVCodec* codec = nullptr;
    m_stream = av_find_best_stream(m_in.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (m_stream < 0 || !codec)
        throw std::runtime_error("cannot decode: no video stream");
    AVStream* st = m_in->streams[m_stream];
    m_tb = st->time_base;
    m_dec.reset(avcodec_alloc_context3(codec));
    if (!m_dec)
        throw std::bad_alloc();
    av_check(avcodec_parameters_to_context(m_dec.get(), st->codecpar), "cannot decode");
    m_dec->thread_count = 2;
    av_check(avcodec_open2(m_dec.get(), codec, nullptr), "cannot decode");
    // Phone videos are stored sideways with a display matrix saying so.
    size_t sd_size = 0;
    const std::uint8_t* sd = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &sd_size);
    if (sd && sd_size >= 9 * sizeof(std::int32_t)) {
        m_orient = orientation_from_matrix(reinterpret_cast<const std::int32_t*>(sd));
    }
    // Limitation: a clip's own soundtrack is not used; only narration and
    // music are heard.
    for (unsigned i = 0; i < m_in->nb_streams; ++i) {
        if (static_cast<int>(i) != m_stream)
            m_in->streams[i]->discard = AVDISCARD_ALL;
    }
}

bool VideoSource::decode_one() {
    PacketPtr pkt = make_packet();
    FramePtr frame = make_frame();
    while (true) {
        int rc = avcodec_receive_frame(m_dec.get(), frame.get());
        if (rc >= 0) {
            int64_t pts = frame->best_effort_timestamp;
            if (pts == AV_NOPTS_VALUE)
                pts = frame->pts;
            if (pts == AV_NOPTS_VALUE)
                pts = 0;
            if (m_first_pts == AV_NOPTS_VALUE)
                m_first_pts = pts;
            m_pending_time = static_cast<double>(pts - m_first_pts) * av_q2d(m_tb);
            m_pending = std::move(frame);
            return true;
        }
        if (rc == AVERROR_EOF) {
            m_eof = true;
            return false;
        }
        if (rc != AVERROR(EAGAIN))
            av_check(rc, "cannot decode");

        rc = av_read_frame(m_in.get(), pkt.get());
        if (rc == AVERROR_EOF) {
            if (!m_flushing)
                avcodec_send_packet(m_dec.get(), nullptr);
            m_flushing = true;
            continue;
        }
        av_check(rc, "cannot read");
        if (pkt->stream_index == m_stream) {
            rc = avcodec_send_packet(m_dec.get(), pkt.get());
            av_packet_unref(pkt.get());
            // A damaged packet in the middle of a clip is skipped, like players do.
            if (rc < 0 && rc != AVERROR(EAGAIN) && rc != AVERROR_INVALIDDATA) {
                av_check(rc, "cannot decode");
            }
        } else {
            av_packet_unref(pkt.get());
        }
    }
}

FramePtr VideoSource::convert(const AVFrame& f) {
    FramePtr out = make_video_frame(m_width, m_height, AV_PIX_FMT_YUV420P);
    out->color_range = AVCOL_RANGE_MPEG;
    out->colorspace = kOutputColorspace;
    fill_black(*out);

    // Fit the upright picture inside the frame ("contain"), honouring a
    // non-square pixel aspect.
    double sar = f.sample_aspect_ratio.num > 0 ? av_q2d(f.sample_aspect_ratio) : 1.0;
    double stored_w = f.width * sar;
    double upright_w = m_orient.swap ? f.height : stored_w;
    double upright_h = m_orient.swap ? stored_w : f.height;
    double scale = std::min(m_width / upright_w, m_height / upright_h);
    int w = std::clamp(static_cast<int>(std::lround(upright_w * scale / 2)) * 2, 2, m_width);
    int h = std::clamp(static_cast<int>(std::lround(upright_h * scale / 2)) * 2, 2, m_height);
    int x = ((m_width - w) / 2) & ~1;
    int y = ((m_height - h) / 2) & ~1;
    // swscale works in stored orientation; the remap below turns it upright.
    int scaled_w = m_orient.swap ? h : w;
    int scaled_h = m_orient.swap ? w : h;

    if (!m_sws || m_sws_w != f.width || m_sws_h != f.height || m_sws_fmt != f.format) {
        m_sws = make_scaler(f, f.width, f.height, scaled_w, scaled_h, AV_PIX_FMT_YUV420P);
        m_sws_w = f.width;
        m_sws_h = f.height;
        m_sws_fmt = f.format;
    }
    std::uint8_t* dst[4] = {
        out->data[0] + static_cast<std::ptrdiff_t>(y) * out->linesize[0] + x,
        out->data[1] + static_cast<std::ptrdiff_t>(y / 2) * out->linesize[1] + x / 2,
        out->data[2] + static_cast<std::ptrdiff_t>(y / 2) * out->linesize[2] + x / 2, nullptr};
    if (m_orient.identity()) {
        av_check(sws_scale(m_sws.get(), f.data, f.linesize, 0, f.height, dst, out->linesize),
                 "cannot scale");
        return out;
    }
    FramePtr stored = make_video_frame(scaled_w, scaled_h, AV_PIX_FMT_YUV420P);
    av_check(
        sws_scale(m_sws.get(), f.data, f.linesize, 0, f.height, stored->data, stored->linesize),
        "cannot scale");
    for (int p = 0; p < 3; ++p) {
        int pw = p == 0 ? scaled_w : scaled_w / 2;
        int ph = p == 0 ? scaled_h : scaled_h / 2;
        remap_plane(stored->data[p], stored->linesize[p], pw, ph, dst[p], out->linesize[p],
                    m_orient, 1);
    }
    return out;
}

FramePtr VideoSource::next() {
    // The frame shown at output instant t is the last one starting at or
    // before t (half a frame of tolerance absorbs timestamp rounding).
    double t = static_cast<double>(m_out_index) / m_fps + 0.5 / m_fps;
    ++m_out_index;
    if (!m_pending && !m_eof)
        decode_one();
    FramePtr chosen;
    while (m_pending && (m_pending_time <= t || (!m_shown && !chosen))) {
        chosen = std::move(m_pending);
        if (!m_eof)
            decode_one();
    }
    if (chosen)
        m_shown = convert(*chosen);
    if (!m_shown)
        throw std::runtime_error("cannot decode: no video frame in file");
    FramePtr copy = make_frame();
    av_check(av_frame_ref(copy.get(), m_shown.get()), "av_frame_ref");
    return copy;
}

double VideoSource::measure_duration(const std::string& path) {
    InputCtxPtr in = open_input(path);
    int stream = av_find_best_stream(in.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    if (stream < 0)
        throw std::runtime_error("cannot decode: no video stream");
    AVRational tb = in->streams[stream]->time_base;
    PacketPtr pkt = make_packet();
    int64_t first = AV_NOPTS_VALUE;
    int64_t end = AV_NOPTS_VALUE;
    while (av_read_frame(in.get(), pkt.get()) >= 0) {
        if (pkt->stream_index == stream && pkt->pts != AV_NOPTS_VALUE) {
            if (first == AV_NOPTS_VALUE || pkt->pts < first)
                first = pkt->pts;
            int64_t e = pkt->pts + std::max<int64_t>(pkt->duration, 0);
            if (end == AV_NOPTS_VALUE || e > end)
                end = e;
        }
        av_packet_unref(pkt.get());
    }
    if (first == AV_NOPTS_VALUE)
        throw std::runtime_error("cannot decode: no video frames");
    return static_cast<double>(end - first) * av_q2d(tb);
}

}  // namespace pv
