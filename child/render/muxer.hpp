// SPDX-License-Identifier: MIT
// The single encode of a reel: H.264 High yuv420p (libx264) and AAC-LC 48 kHz
// stereo (FFmpeg's native encoder) muxed into MP4 with the index first
// (+faststart); plus the poster JPEG of the first frame.
#pragma once

#include "av_ptr.hpp"

#include <string>
#include <vector>

namespace pv {

struct EncoderSettings {
    int width = 1080;
    int height = 1920;
    int fps = 24;
    std::string x264_preset = "veryfast";
    int crf = 23;
    int audio_bitrate = 160000;
};

class Muxer {
public:
    /// Opens `path` for writing and sets up both encoders. Throws AvError.
    Muxer(const std::string& path, const EncoderSettings& settings);
    ~Muxer();
    Muxer(const Muxer&) = delete;
    Muxer& operator=(const Muxer&) = delete;

    /// Encodes the next video frame (yuv420p at the output size); pts is the
    /// frame count.
    void write_video(AVFrame& frame);

    /// Queues interleaved stereo float samples; full AAC frames are encoded.
    void write_audio(const float* samples, long frames);

    /// Flushes both encoders and writes the index (moved to the front).
    void finish();

    long video_frames() const { return m_video_frames; }
    long audio_samples() const { return m_audio_samples; }

private:
    void encode(AVCodecContext* enc, AVStream* st, AVFrame* frame);
    void encode_audio_block(int frames);

    EncoderSettings m_settings;
    OutputCtxPtr m_out;
    CodecCtxPtr m_venc;
    CodecCtxPtr m_aenc;
    AVStream* m_vst = nullptr;  // owned by m_out
    AVStream* m_ast = nullptr;
    PacketPtr m_pkt;
    FramePtr m_aframe;
    std::vector<float> m_pending;  // interleaved samples waiting for a full frame
    long m_video_frames = 0;
    long m_audio_samples = 0;
    bool m_header_written = false;
    bool m_finished = false;
};

/// Writes `frame` (yuv420p) as a baseline JPEG at `path`. Throws AvError or
/// std::runtime_error.
void write_poster(const AVFrame& frame, const std::string& path);

}  // namespace pv
