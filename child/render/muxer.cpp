// SPDX-License-Identifier: MIT
#include "muxer.hpp"

#include "scaler.hpp"

extern "C" {
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
}

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace pv {
namespace {

constexpr int kAudioRate = 48000;
constexpr unsigned kMaxEncoderThreads = 4;

CodecCtxPtr alloc_encoder(const char* name, const AVCodec** codec) {
    *codec = avcodec_find_encoder_by_name(name);
    if (!*codec)
        throw AvError(std::string("encoder ") + name + " not available", AVERROR_ENCODER_NOT_FOUND);
    CodecCtxPtr ctx{avcodec_alloc_context3(*codec)};
    if (!ctx)
        throw std::bad_alloc();
    return ctx;
}

}  // namespace

Muxer::Muxer(const std::string& path, const EncoderSettings& s) : m_settings(s) {
    AVFormatContext* raw = nullptr;
    av_check(avformat_alloc_output_context2(&raw, nullptr, "mp4", path.c_str()),
             "cannot create MP4 muxer");
    m_out.reset(raw);
    m_pkt = make_packet();

    // Video: libx264, High profile, yuv420p, constant frame rate.
    const AVCodec* vcodec = nullptr;
    m_venc = alloc_encoder("libx264", &vcodec);
    m_venc->width = s.width;
    m_venc->height = s.height;
    m_venc->pix_fmt = AV_PIX_FMT_YUV420P;
    m_venc->time_base = AVRational{1, s.fps};
    m_venc->framerate = AVRational{s.fps, 1};
    m_venc->sample_aspect_ratio = AVRational{1, 1};
    m_venc->gop_size = s.fps * 2;
    m_venc->color_range = AVCOL_RANGE_MPEG;
    m_venc->colorspace = kOutputColorspace;
    m_venc->color_primaries = AVCOL_PRI_BT709;
    m_venc->color_trc = AVCOL_TRC_BT709;
    m_venc->thread_count =
        static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, kMaxEncoderThreads));
    if (m_out->oformat->flags & AVFMT_GLOBALHEADER)
        m_venc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    av_check(av_opt_set(m_venc->priv_data, "preset", s.x264_preset.c_str(), 0), "x264 preset");
    av_check(av_opt_set(m_venc->priv_data, "profile", "high", 0), "x264 profile");
    av_check(av_opt_set_double(m_venc->priv_data, "crf", s.crf, 0), "x264 crf");
    // The 8x8 transform is what makes the stream High profile; the fastest
    // presets turn it off and would produce Constrained Baseline.
    // sync-lookahead=0 keeps x264 from buffering extra full-size frames (tens
    // of MB at 1080x1920); the thread cap bounds memory on many-core hosts,
    // where x264 would otherwise start 1.5 frame threads per core.
    av_check(av_opt_set(m_venc->priv_data, "x264-params", "8x8dct=1:sync-lookahead=0", 0),
             "x264 params");
    av_check(avcodec_open2(m_venc.get(), vcodec, nullptr), "cannot open libx264");

    m_vst = avformat_new_stream(m_out.get(), nullptr);
    if (!m_vst)
        throw std::bad_alloc();
    m_vst->time_base = m_venc->time_base;
    m_vst->avg_frame_rate = m_venc->framerate;
    av_check(avcodec_parameters_from_context(m_vst->codecpar, m_venc.get()), "video params");

    // Audio: native AAC-LC, 48 kHz stereo planar float.
    const AVCodec* acodec = nullptr;
    m_aenc = alloc_encoder("aac", &acodec);
    m_aenc->sample_fmt = AV_SAMPLE_FMT_FLTP;
    m_aenc->sample_rate = kAudioRate;
    av_channel_layout_default(&m_aenc->ch_layout, 2);
    m_aenc->bit_rate = s.audio_bitrate;
    m_aenc->profile = FF_PROFILE_AAC_LOW;
    m_aenc->time_base = AVRational{1, kAudioRate};
    if (m_out->oformat->flags & AVFMT_GLOBALHEADER)
        m_aenc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    av_check(avcodec_open2(m_aenc.get(), acodec, nullptr), "cannot open aac");

    m_ast = avformat_new_stream(m_out.get(), nullptr);
    if (!m_ast)
        throw std::bad_alloc();
    m_ast->time_base = m_aenc->time_base;
    av_check(avcodec_parameters_from_context(m_ast->codecpar, m_aenc.get()), "audio params");

    m_aframe = make_frame();
    m_aframe->format = AV_SAMPLE_FMT_FLTP;
    m_aframe->sample_rate = kAudioRate;
    av_check(av_channel_layout_copy(&m_aframe->ch_layout, &m_aenc->ch_layout), "layout");
    m_aframe->nb_samples = m_aenc->frame_size;
    av_check(av_frame_get_buffer(m_aframe.get(), 0), "audio frame");

    av_check(avio_open(&m_out->pb, path.c_str(), AVIO_FLAG_WRITE), "cannot create " + path);
    AVDictionary* opts = nullptr;
    av_dict_set(&opts, "movflags", "+faststart", 0);
    int rc = avformat_write_header(m_out.get(), &opts);
    av_dict_free(&opts);
    av_check(rc, "cannot write MP4 header");
    m_header_written = true;
}

Muxer::~Muxer() {
    // An unfinished file is left for the caller to delete; only close it here.
    if (m_out && m_out->pb)
        avio_closep(&m_out->pb);
}

void Muxer::encode(AVCodecContext* enc, AVStream* st, AVFrame* frame) {
    av_check(avcodec_send_frame(enc, frame), "encode");
    while (true) {
        int rc = avcodec_receive_packet(enc, m_pkt.get());
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return;
        av_check(rc, "encode");
        av_packet_rescale_ts(m_pkt.get(), enc->time_base, st->time_base);
        m_pkt->stream_index = st->index;
        av_check(av_interleaved_write_frame(m_out.get(), m_pkt.get()), "write packet");
    }
}

void Muxer::write_video(AVFrame& frame) {
    frame.pts = m_video_frames++;
    frame.pict_type = AV_PICTURE_TYPE_NONE;
    encode(m_venc.get(), m_vst, &frame);
}

void Muxer::encode_audio_block(int frames) {
    av_check(av_frame_make_writable(m_aframe.get()), "audio frame");
    m_aframe->nb_samples = frames;
    auto* left = reinterpret_cast<float*>(m_aframe->data[0]);
    auto* right = reinterpret_cast<float*>(m_aframe->data[1]);
    for (int i = 0; i < frames; ++i) {
        left[i] = m_pending[static_cast<size_t>(i) * 2];
        right[i] = m_pending[static_cast<size_t>(i) * 2 + 1];
    }
    m_pending.erase(m_pending.begin(), m_pending.begin() + static_cast<long>(frames) * 2);
    m_aframe->pts = m_audio_samples;
    m_audio_samples += frames;
    encode(m_aenc.get(), m_ast, m_aframe.get());
}

void Muxer::write_audio(const float* samples, long frames) {
    m_pending.insert(m_pending.end(), samples, samples + frames * 2);
    const int block = m_aenc->frame_size;
    while (static_cast<long>(m_pending.size()) >= static_cast<long>(block) * 2) {
        encode_audio_block(block);
    }
}

void Muxer::finish() {
    if (m_finished)
        return;
    if (!m_pending.empty())
        encode_audio_block(static_cast<int>(m_pending.size() / 2));
    encode(m_venc.get(), m_vst, nullptr);
    encode(m_aenc.get(), m_ast, nullptr);
    av_check(av_write_trailer(m_out.get()), "cannot finish MP4");
    av_check(avio_closep(&m_out->pb), "cannot close output");
    m_finished = true;
}

void write_poster(const AVFrame& frame, const std::string& path) {
    const AVCodec* codec = nullptr;
    CodecCtxPtr enc = alloc_encoder("mjpeg", &codec);
    enc->width = frame.width;
    enc->height = frame.height;
    enc->pix_fmt = AV_PIX_FMT_YUVJ420P;
    enc->color_range = AVCOL_RANGE_JPEG;
    enc->time_base = AVRational{1, 25};
    enc->flags |= AV_CODEC_FLAG_QSCALE;
    enc->global_quality = FF_QP2LAMBDA * 3;
    av_check(avcodec_open2(enc.get(), codec, nullptr), "cannot open mjpeg");

    // The poster is full range, as JPEG viewers expect.
    FramePtr jpeg = make_video_frame(frame.width, frame.height, AV_PIX_FMT_YUVJ420P);
    SwsPtr sws = make_scaler(frame, frame.width, frame.height, frame.width, frame.height,
                             AV_PIX_FMT_YUVJ420P, SWS_POINT);
    sws_setColorspaceDetails(sws.get(), sws_getCoefficients(SWS_CS_ITU709), 0,
                             sws_getCoefficients(SWS_CS_ITU601), 1, 0, 1 << 16, 1 << 16);
    av_check(sws_scale(sws.get(), frame.data, frame.linesize, 0, frame.height, jpeg->data,
                       jpeg->linesize),
             "poster scale");
    jpeg->pts = 0;
    jpeg->quality = enc->global_quality;

    av_check(avcodec_send_frame(enc.get(), jpeg.get()), "poster encode");
    av_check(avcodec_send_frame(enc.get(), nullptr), "poster encode");
    PacketPtr pkt = make_packet();
    av_check(avcodec_receive_packet(enc.get(), pkt.get()), "poster encode");

    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(pkt->data), pkt->size);
    out.close();
    if (!out)
        throw std::runtime_error("cannot write poster " + path);
}

}  // namespace pv
