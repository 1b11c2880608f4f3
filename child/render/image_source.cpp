// SPDX-License-Identifier: MIT
#include "image_source.hpp"

#include "image_probe.hpp"
#include "orientation.hpp"
#include "resample.hpp"
#include "scaler.hpp"

extern "C" {
#include <libavutil/opt.h>
}

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace pv {
namespace {

const char* demuxer_for(ImageKind kind) {
    switch (kind) {
        case ImageKind::Jpeg:
            return "jpeg_pipe";
        case ImageKind::Png:
            return "png_pipe";
        case ImageKind::Gif:
            return "gif";
        case ImageKind::Webp:
            return "webp_pipe";
        case ImageKind::Bmp:
            return "bmp_pipe";
        case ImageKind::Tiff:
            return "tiff_pipe";
    }
    return "image2";
}

// Decodes the first picture of the file. The demuxer is chosen from the
// sniffed kind, so a '%' in the path is never read as a sequence pattern.
FramePtr decode_first_picture(const std::string& path, ImageKind kind, int lowres) {
    const AVInputFormat* ifmt = av_find_input_format(demuxer_for(kind));
    AVFormatContext* raw = nullptr;
    av_check(avformat_open_input(&raw, path.c_str(), ifmt, nullptr), "cannot open");
    InputCtxPtr in{raw};
    if (in->nb_streams < 1)
        throw std::runtime_error("cannot decode: no picture stream");
    AVStream* st = in->streams[0];

    const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
    if (!codec)
        throw std::runtime_error("cannot decode: no decoder for this format");
    CodecCtxPtr dec{avcodec_alloc_context3(codec)};
    if (!dec)
        throw std::bad_alloc();
    av_check(avcodec_parameters_to_context(dec.get(), st->codecpar), "cannot decode");
    // The decoder itself refuses pictures larger than this, whatever the format.
    av_opt_set_int(dec.get(), "max_pixels", kMaxImagePixels, 0);
    if (lowres > 0 && codec->max_lowres > 0) {
        dec->lowres = std::min<int>(lowres, codec->max_lowres);
    }
    dec->thread_count = 1;
    av_check(avcodec_open2(dec.get(), codec, nullptr), "cannot decode");

    PacketPtr pkt = make_packet();
    FramePtr frame = make_frame();
    bool flushing = false;
    while (true) {
        int rc = avcodec_receive_frame(dec.get(), frame.get());
        if (rc >= 0)
            return frame;
        if (rc == AVERROR_EOF)
            break;
        if (rc != AVERROR(EAGAIN))
            av_check(rc, "cannot decode");
        if (flushing)
            break;

        rc = av_read_frame(in.get(), pkt.get());
        if (rc == AVERROR_EOF) {
            av_check(avcodec_send_packet(dec.get(), nullptr), "cannot decode");
            flushing = true;
            continue;
        }
        av_check(rc, "cannot decode");
        if (pkt->stream_index == 0) {
            rc = avcodec_send_packet(dec.get(), pkt.get());
            av_packet_unref(pkt.get());
            av_check(rc, "cannot decode");
        } else {
            av_packet_unref(pkt.get());
        }
    }
    throw std::runtime_error("cannot decode: no picture in file");
}

Orientation orientation_of(const AVFrame& f) {
    const AVFrameSideData* sd = av_frame_get_side_data(&f, AV_FRAME_DATA_DISPLAYMATRIX);
    if (!sd || sd->size < 9 * sizeof(std::int32_t))
        return {};
    return orientation_from_matrix(reinterpret_cast<const std::int32_t*>(sd->data));
}

// Rotates/mirrors a packed RGB24 picture into a new one.
FramePtr reorient_rgb(const AVFrame& src, Orientation o) {
    FramePtr dst = make_video_frame(o.swap ? src.height : src.width,
                                    o.swap ? src.width : src.height, AV_PIX_FMT_RGB24);
    remap_plane(src.data[0], src.linesize[0], src.width, src.height, dst->data[0], dst->linesize[0],
                o, 3);
    return dst;
}

int even_at_least_2(double v) {
    return std::max(2, static_cast<int>(std::lround(v / 2)) * 2);
}

// Multiplies brightness on limited-range YUV: scales luma above black and
// chroma around neutral, which equals scaling R, G and B.
void darken_yuv420(AVFrame& f, double factor) {
    if (std::abs(factor - 1.0) < 1e-3)
        return;
    std::uint8_t luma[256];
    std::uint8_t chroma[256];
    for (int i = 0; i < 256; ++i) {
        luma[i] =
            static_cast<std::uint8_t>(std::clamp(std::lround(16 + (i - 16) * factor), 0L, 255L));
        chroma[i] =
            static_cast<std::uint8_t>(std::clamp(std::lround(128 + (i - 128) * factor), 0L, 255L));
    }
    for (int p = 0; p < 3; ++p) {
        const std::uint8_t* lut = p == 0 ? luma : chroma;
        const int rows = p == 0 ? f.height : f.height / 2;
        const int cols = p == 0 ? f.width : f.width / 2;
        for (int y = 0; y < rows; ++y) {
            std::uint8_t* row = f.data[p] + static_cast<std::ptrdiff_t>(y) * f.linesize[p];
            for (int x = 0; x < cols; ++x) row[x] = lut[row[x]];
        }
    }
}

}  // namespace

ImageSource::ImageSource(const std::string& path, const ImageSceneParams& params)
    : m_params(params) {
    ImageHeader header = probe_image_header(path);
    const int big_w = even_at_least_2(params.width * std::max(1.0, params.zoom));
    const int big_h = even_at_least_2(params.height * std::max(1.0, params.zoom));

    // Decode big JPEGs at a reduced scale when even the smaller side, at half
    // size, still covers the zoom buffer in either orientation.
    int lowres = 0;
    if (header.width > 0 && header.height > 0) {
        int need = std::max(big_w, big_h);
        while (lowres < 3 && (std::min(header.width, header.height) >> (lowres + 1)) >= need) {
            ++lowres;
        }
    }
    FramePtr decoded = decode_first_picture(path, header.kind, lowres);
    if (decoded->width > kMaxImageSide || decoded->height > kMaxImageSide) {
        throw std::runtime_error("image too large: " + std::to_string(decoded->width) + "x" +
                                 std::to_string(decoded->height));
    }
    Orientation orient = orientation_of(*decoded);
    m_src_w = orient.swap ? decoded->height : decoded->width;
    m_src_h = orient.swap ? decoded->width : decoded->height;

    // Centre crop of the upright picture with the frame's aspect ratio ("cover").
    double aspect = static_cast<double>(big_w) / big_h;
    int crop_w = std::min(m_src_w, static_cast<int>(std::lround(m_src_h * aspect)));
    int crop_h = std::min(m_src_h, static_cast<int>(std::lround(m_src_w / aspect)));
    crop_w = std::max(1, crop_w);
    crop_h = std::max(1, crop_h);
    // The same centred rectangle in stored coordinates.
    int stored_crop_w = orient.swap ? crop_h : crop_w;
    int stored_crop_h = orient.swap ? crop_w : crop_h;
    int left = (decoded->width - stored_crop_w) / 2;
    int top = (decoded->height - stored_crop_h) / 2;
    decoded->crop_left = static_cast<size_t>(left);
    decoded->crop_top = static_cast<size_t>(top);
    decoded->crop_right = static_cast<size_t>(decoded->width - stored_crop_w - left);
    decoded->crop_bottom = static_cast<size_t>(decoded->height - stored_crop_h - top);
    av_check(av_frame_apply_cropping(decoded.get(), AV_FRAME_CROP_UNALIGNED), "cannot crop");

    // Scale in stored orientation to RGB, turn upright, then convert to YUV.
    int scaled_w = orient.swap ? big_h : big_w;
    int scaled_h = orient.swap ? big_w : big_h;
    FramePtr rgb = make_video_frame(scaled_w, scaled_h, AV_PIX_FMT_RGB24);
    {
        SwsPtr sws = make_scaler(*decoded, decoded->width, decoded->height, scaled_w, scaled_h,
                                 AV_PIX_FMT_RGB24);
        av_check(sws_scale(sws.get(), decoded->data, decoded->linesize, 0, decoded->height,
                           rgb->data, rgb->linesize),
                 "cannot scale");
    }
    decoded.reset();
    if (orient.swap || orient.flip_x || orient.flip_y)
        rgb = reorient_rgb(*rgb, orient);

    m_big = make_video_frame(big_w, big_h, AV_PIX_FMT_YUV420P);
    SwsPtr to_yuv = make_scaler(*rgb, big_w, big_h, big_w, big_h, AV_PIX_FMT_YUV420P);
    av_check(
        sws_scale(to_yuv.get(), rgb->data, rgb->linesize, 0, big_h, m_big->data, m_big->linesize),
        "cannot convert");
    rgb.reset();
    darken_yuv420(*m_big, params.darken);
}

FramePtr ImageSource::frame(long k) {
    const int w = m_params.width;
    const int h = m_params.height;
    FramePtr out = make_video_frame(w, h, AV_PIX_FMT_YUV420P);
    out->color_range = AVCOL_RANGE_MPEG;
    out->colorspace = kOutputColorspace;

    // Zoom grows linearly from 1.0 on the first frame to `zoom` on the last;
    // the visible window is the zoom buffer divided by the current zoom.
    double zoom = std::max(1.0, m_params.zoom);
    double t = m_params.frames > 1 ? static_cast<double>(k) / (m_params.frames - 1) : 0.0;
    t = std::clamp(t, 0.0, 1.0);
    double z = 1.0 + (zoom - 1.0) * t;
    double win_w = m_big->width / z;
    double win_h = m_big->height / z;
    double x0 = (m_big->width - win_w) / 2;
    double y0 = (m_big->height - win_h) / 2;

    // Chroma planes are half size on both sides, so is the window.
    for (int p = 0; p < 3; ++p) {
        const int shift = p == 0 ? 0 : 1;
        PlaneView src{m_big->data[p], m_big->linesize[p], m_big->width >> shift,
                      m_big->height >> shift};
        resample_plane(src, out->data[p], out->linesize[p], w >> shift, h >> shift,
                       x0 / (1 << shift), y0 / (1 << shift), win_w / w, win_h / h, m_scratch);
    }
    return out;
}

}  // namespace pv
