// SPDX-License-Identifier: MIT
#include "audio_mix.hpp"

#include "av_ptr.hpp"

extern "C" {
#include <libavutil/channel_layout.h>
}

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace pv {
namespace {

// Wraps swresample: any input to kSampleRate float, mono kept mono (and then
// doubled) so a mono voice plays at full level in both channels instead of
// the -3 dB swresample applies to a centre channel.
class Resampler {
public:
    Resampler(const AVChannelLayout& in_layout, AVSampleFormat in_fmt, int in_rate) {
        m_mono = in_layout.nb_channels == 1;
        AVChannelLayout out_layout{};
        av_channel_layout_default(&out_layout, m_mono ? 1 : kChannels);
        AVChannelLayout src_layout{};
        if (in_layout.order == AV_CHANNEL_ORDER_UNSPEC) {
            av_channel_layout_default(&src_layout, in_layout.nb_channels);
        } else {
            av_check(av_channel_layout_copy(&src_layout, &in_layout), "channel layout");
        }
        SwrContext* raw = nullptr;
        int rc = swr_alloc_set_opts2(&raw, &out_layout, AV_SAMPLE_FMT_FLT, kSampleRate, &src_layout,
                                     in_fmt, in_rate, 0, nullptr);
        av_channel_layout_uninit(&src_layout);
        m_swr.reset(raw);
        av_check(rc, "cannot set up resampler");
        av_check(swr_init(m_swr.get()), "cannot set up resampler");
        m_in_rate = in_rate;
    }

    /// Converts `n` input samples (nullptr data flushes) and appends to `out`.
    void convert(const std::uint8_t** data, int n, AudioBuffer& out) {
        int cap = swr_get_out_samples(m_swr.get(), n);
        if (cap <= 0)
            return;
        int ch = m_mono ? 1 : kChannels;
        m_tmp.resize(static_cast<size_t>(cap) * ch);
        auto* dst = reinterpret_cast<std::uint8_t*>(m_tmp.data());
        int got = av_check(swr_convert(m_swr.get(), &dst, cap, data, n), "cannot resample");
        if (m_mono) {
            for (int i = 0; i < got; ++i) {
                out.samples.push_back(m_tmp[i]);
                out.samples.push_back(m_tmp[i]);
            }
        } else {
            out.samples.insert(out.samples.end(), m_tmp.begin(), m_tmp.begin() + got * kChannels);
        }
    }

private:
    SwrPtr m_swr;
    bool m_mono = false;
    int m_in_rate = 0;
    std::vector<float> m_tmp;
};

}  // namespace

AudioBuffer decode_audio(const std::string& path, double max_seconds) {
    AVFormatContext* raw = nullptr;
    av_check(avformat_open_input(&raw, path.c_str(), nullptr, nullptr), "cannot open");
    InputCtxPtr in{raw};
    av_check(avformat_find_stream_info(in.get(), nullptr), "cannot read stream info");
    const AVCodec* codec = nullptr;
    int stream = av_find_best_stream(in.get(), AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (stream < 0 || !codec)
        throw std::runtime_error("cannot decode: no audio stream");
    for (unsigned i = 0; i < in->nb_streams; ++i) {
        if (static_cast<int>(i) != stream)
            in->streams[i]->discard = AVDISCARD_ALL;
    }
    CodecCtxPtr dec{avcodec_alloc_context3(codec)};
    if (!dec)
        throw std::bad_alloc();
    av_check(avcodec_parameters_to_context(dec.get(), in->streams[stream]->codecpar),
             "cannot decode");
    av_check(avcodec_open2(dec.get(), codec, nullptr), "cannot decode");

    AudioBuffer out;
    std::unique_ptr<Resampler> resampler;
    const long limit = std::isfinite(max_seconds)
                           ? static_cast<long>(std::ceil(max_seconds * kSampleRate))
                           : std::numeric_limits<long>::max();
    PacketPtr pkt = make_packet();
    FramePtr frame = make_frame();
    bool flushing = false;
    while (out.frames() < limit) {
        int rc = avcodec_receive_frame(dec.get(), frame.get());
        if (rc >= 0) {
            if (!resampler) {
                resampler = std::make_unique<Resampler>(frame->ch_layout,
                                                        static_cast<AVSampleFormat>(frame->format),
                                                        frame->sample_rate);
            }
            resampler->convert(const_cast<const std::uint8_t**>(frame->extended_data),
                               frame->nb_samples, out);
            av_frame_unref(frame.get());
            continue;
        }
        if (rc == AVERROR_EOF)
            break;
        if (rc != AVERROR(EAGAIN))
            av_check(rc, "cannot decode");
        rc = av_read_frame(in.get(), pkt.get());
        if (rc == AVERROR_EOF) {
            if (flushing)
                break;
            avcodec_send_packet(dec.get(), nullptr);
            flushing = true;
            continue;
        }
        av_check(rc, "cannot read");
        if (pkt->stream_index == stream) {
            rc = avcodec_send_packet(dec.get(), pkt.get());
            av_packet_unref(pkt.get());
            if (rc < 0 && rc != AVERROR(EAGAIN) && rc != AVERROR_INVALIDDATA) {
                av_check(rc, "cannot decode");
            }
        } else {
            av_packet_unref(pkt.get());
        }
    }
    if (resampler)
        resampler->convert(nullptr, 0, out);
    if (out.frames() == 0)
        throw std::runtime_error("cannot decode: no audio samples");
    if (out.frames() > limit)
        out.samples.resize(static_cast<size_t>(limit) * kChannels);
    return out;
}

AudioBuffer resample_mono_s16(const std::vector<std::int16_t>& samples, int rate) {
    AVChannelLayout mono{};
    av_channel_layout_default(&mono, 1);
    Resampler resampler(mono, AV_SAMPLE_FMT_S16, rate);
    AudioBuffer out;
    if (!samples.empty()) {
        const auto* data = reinterpret_cast<const std::uint8_t*>(samples.data());
        resampler.convert(&data, static_cast<int>(samples.size()), out);
    }
    resampler.convert(nullptr, 0, out);
    return out;
}

void AudioMix::add(const AudioBuffer& src, long at, long length, double gain, long fade_in,
                   long fade_out) {
    long n = std::min(length, src.frames());
    const long total = frames();
    for (long i = 0; i < n; ++i) {
        long pos = at + i;
        if (pos < 0)
            continue;
        if (pos >= total)
            break;
        double g = gain;
        if (fade_in > 0 && i < fade_in)
            g *= (i + 0.5) / fade_in;
        if (fade_out > 0 && length - i <= fade_out)
            g *= (length - i - 0.5) / fade_out;
        for (int c = 0; c < kChannels; ++c) {
            m_samples[static_cast<size_t>(pos * kChannels + c)] +=
                static_cast<float>(src.samples[static_cast<size_t>(i * kChannels + c)] * g);
        }
    }
}

void AudioMix::limit() {
    // -0.1 dBFS; a hard clip only acts on peaks that would overflow anyway.
    const float ceiling = static_cast<float>(std::pow(10.0, -0.1 / 20));
    for (float& s : m_samples) s = std::clamp(s, -ceiling, ceiling);
}

}  // namespace pv
