// SPDX-License-Identifier: MIT
#include "render_fixtures.hpp"

#include "audio_mix.hpp"
#include "av_ptr.hpp"

extern "C" {
#include <libavutil/pixdesc.h>
}

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace pvtest {

TempDir::TempDir() {
    const char* base = std::getenv("TMPDIR");
    // mkdtemp replaces the six trailing X characters.
    std::string templ =
        std::string(base && *base ? base : "/tmp") + "/pvrender-test-" + std::string(6, 'X');
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data()))
        throw std::runtime_error("mkdtemp failed");
    m_path = buf.data();
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
}

std::string media(const std::string& relative) {
    const char* base = std::getenv("PV_MEDIA_DIR");
    return std::string(base && *base ? base : "/work/shared/media") + "/" + relative;
}

void run(const std::string& command) {
    int rc = std::system(command.c_str());
    INFO("command: " << command);
    REQUIRE(rc == 0);
}

pv::RenderJob image_job(const TempDir& dir, const std::vector<std::string>& images, int w, int h,
                        double seconds) {
    pv::RenderJob job;
    job.request.output_filename = "out.mp4";
    job.request.width = w;
    job.request.height = h;
    for (const std::string& image : images) {
        pv::Scene scene;
        scene.type = pv::SceneType::Image;
        scene.image = image;
        scene.duration = seconds;
        job.request.scenes.push_back(scene);
        pv::SceneFiles files;
        files.image = image;
        job.files.push_back(files);
    }
    job.work_dir = dir.path();
    job.output_path = dir.file("out.mp4");
    job.poster_path = dir.file("poster.jpg");
    job.font_path = pv::resolve_default_font();
    job.x264_preset = "ultrafast";
    return job;
}

static std::vector<std::uint8_t> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

static void write_all(const std::string& path, const std::vector<std::uint8_t>& d) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(d.data()), static_cast<std::streamsize>(d.size()));
    REQUIRE(out.good());
}

void add_exif_orientation(const std::string& path, int orientation) {
    std::vector<std::uint8_t> d = read_all(path);
    REQUIRE(d.size() > 4);
    // "Exif\0\0", then a big-endian TIFF header and one IFD with one SHORT entry.
    std::vector<std::uint8_t> tiff = {'M',  'M',
                                      0,    42,
                                      0,    0,
                                      0,    8,  // header, IFD at 8
                                      0,    1,  // one entry
                                      0x01, 0x12,
                                      0,    3,
                                      0,    0,
                                      0,    1,  // Orientation, SHORT, 1
                                      0,    static_cast<std::uint8_t>(orientation),
                                      0,    0,
                                      0,    0,
                                      0,    0};  // no next IFD
    std::vector<std::uint8_t> app1 = {0xFF, 0xE1, 0, 0, 'E', 'x', 'i', 'f', 0, 0};
    app1.insert(app1.end(), tiff.begin(), tiff.end());
    std::size_t len = app1.size() - 2;
    app1[2] = static_cast<std::uint8_t>(len >> 8);
    app1[3] = static_cast<std::uint8_t>(len & 0xFF);
    d.insert(d.begin() + 2, app1.begin(), app1.end());
    write_all(path, d);
}

void write_jpeg_claiming_size(const std::string& path, int w, int h) {
    run("ffmpeg -v error -y -f lavfi -i color=gray:s=64x64 -frames:v 1 " + path);
    std::vector<std::uint8_t> d = read_all(path);
    bool patched = false;
    for (std::size_t i = 2; i + 9 < d.size(); ++i) {
        if (d[i] == 0xFF && d[i + 1] == 0xC0) {  // baseline SOF
            d[i + 5] = static_cast<std::uint8_t>(h >> 8);
            d[i + 6] = static_cast<std::uint8_t>(h & 0xFF);
            d[i + 7] = static_cast<std::uint8_t>(w >> 8);
            d[i + 8] = static_cast<std::uint8_t>(w & 0xFF);
            patched = true;
            break;
        }
    }
    REQUIRE(patched);
    write_all(path, d);
}

std::vector<std::string> top_level_atoms(const std::string& path) {
    std::vector<std::uint8_t> d = read_all(path);
    std::vector<std::string> atoms;
    std::size_t pos = 0;
    while (pos + 8 <= d.size()) {
        std::uint64_t size =
            (std::uint64_t(d[pos]) << 24) | (d[pos + 1] << 16) | (d[pos + 2] << 8) | d[pos + 3];
        atoms.emplace_back(reinterpret_cast<const char*>(&d[pos + 4]), 4);
        if (size == 1 && pos + 16 <= d.size()) {
            size = 0;
            for (int k = 0; k < 8; ++k) size = (size << 8) | d[pos + 8 + k];
        }
        if (size < 8)
            break;
        pos += size;
    }
    return atoms;
}

FileInfo probe(const std::string& path) {
    FileInfo info;
    AVFormatContext* raw = nullptr;
    REQUIRE(avformat_open_input(&raw, path.c_str(), nullptr, nullptr) == 0);
    pv::InputCtxPtr in{raw};
    REQUIRE(avformat_find_stream_info(in.get(), nullptr) >= 0);
    info.duration = in->duration / double(AV_TIME_BASE);
    for (unsigned i = 0; i < in->nb_streams; ++i) {
        AVCodecParameters* par = in->streams[i]->codecpar;
        StreamInfo& s = par->codec_type == AVMEDIA_TYPE_VIDEO ? info.video : info.audio;
        s.present = true;
        s.codec = avcodec_get_name(par->codec_id);
        const char* profile = avcodec_profile_name(par->codec_id, par->profile);
        s.profile = profile ? profile : "";
        s.width = par->width;
        s.height = par->height;
        if (par->codec_type == AVMEDIA_TYPE_VIDEO) {
            const char* fmt = av_get_pix_fmt_name(static_cast<AVPixelFormat>(par->format));
            s.pix_fmt = fmt ? fmt : "";
            s.fps = av_q2d(in->streams[i]->avg_frame_rate);
        }
        s.sample_rate = par->sample_rate;
        s.channels = par->ch_layout.nb_channels;
    }
    // Packet counts and stream ends from the packets themselves.
    pv::PacketPtr pkt = pv::make_packet();
    std::int64_t end[2] = {0, 0};
    while (av_read_frame(in.get(), pkt.get()) >= 0) {
        AVStream* st = in->streams[pkt->stream_index];
        bool video = st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO;
        StreamInfo& s = video ? info.video : info.audio;
        ++s.packets;
        std::int64_t e = pkt->pts + pkt->duration;
        if (e > end[video])
            end[video] = e;
        double secs = e * av_q2d(st->time_base);
        if (secs > s.duration)
            s.duration = secs;
        av_packet_unref(pkt.get());
    }
    auto atoms = top_level_atoms(path);
    auto moov = std::find(atoms.begin(), atoms.end(), "moov");
    auto mdat = std::find(atoms.begin(), atoms.end(), "mdat");
    info.moov_before_mdat = moov != atoms.end() && mdat != atoms.end() && moov < mdat;
    return info;
}

Rgb video_frame(const std::string& path, long index) {
    AVFormatContext* raw = nullptr;
    REQUIRE(avformat_open_input(&raw, path.c_str(), nullptr, nullptr) == 0);
    pv::InputCtxPtr in{raw};
    REQUIRE(avformat_find_stream_info(in.get(), nullptr) >= 0);
    const AVCodec* codec = nullptr;
    int stream = av_find_best_stream(in.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    REQUIRE(stream >= 0);
    pv::CodecCtxPtr dec{avcodec_alloc_context3(codec)};
    avcodec_parameters_to_context(dec.get(), in->streams[stream]->codecpar);
    REQUIRE(avcodec_open2(dec.get(), codec, nullptr) == 0);
    pv::PacketPtr pkt = pv::make_packet();
    pv::FramePtr frame = pv::make_frame();
    long seen = 0;
    bool flushing = false;
    while (true) {
        int rc = avcodec_receive_frame(dec.get(), frame.get());
        if (rc == 0) {
            if (seen++ == index)
                break;
            av_frame_unref(frame.get());
            continue;
        }
        REQUIRE(rc != AVERROR_EOF);
        if (flushing)
            FAIL("frame not found");
        if (av_read_frame(in.get(), pkt.get()) < 0) {
            avcodec_send_packet(dec.get(), nullptr);
            flushing = true;
            continue;
        }
        if (pkt->stream_index == stream)
            avcodec_send_packet(dec.get(), pkt.get());
        av_packet_unref(pkt.get());
    }
    Rgb rgb;
    rgb.width = frame->width;
    rgb.height = frame->height;
    // swscale's SIMD paths may write a little past the last row.
    rgb.data.resize(std::size_t(rgb.width) * rgb.height * 3 + std::size_t(rgb.width) * 3 + 256);
    pv::SwsPtr sws{sws_getContext(frame->width, frame->height,
                                  static_cast<AVPixelFormat>(frame->format), rgb.width, rgb.height,
                                  AV_PIX_FMT_RGB24, SWS_POINT, nullptr, nullptr, nullptr)};
    sws_setColorspaceDetails(sws.get(), sws_getCoefficients(SWS_CS_ITU709), 0,
                             sws_getCoefficients(SWS_CS_ITU709), 1, 0, 1 << 16, 1 << 16);
    std::uint8_t* dst[4] = {rgb.data.data(), nullptr, nullptr, nullptr};
    int stride[4] = {rgb.width * 3, 0, 0, 0};
    sws_scale(sws.get(), frame->data, frame->linesize, 0, frame->height, dst, stride);
    return rgb;
}

double mean_abs_diff(const Rgb& a, const Rgb& b, int x, int y, int w, int h) {
    double sum = 0;
    for (int yy = y; yy < y + h; ++yy) {
        for (int xx = x; xx < x + w; ++xx) {
            for (int c = 0; c < 3; ++c) sum += std::abs(a.at(xx, yy)[c] - b.at(xx, yy)[c]);
        }
    }
    return sum / (double(w) * h * 3);
}

std::vector<float> audio_samples(const std::string& path) {
    return pv::decode_audio(path).samples;
}

pv::RenderError render_error(const pv::RenderJob& job) {
    try {
        pv::render(job);
    } catch (const pv::RenderError& e) {
        return e;
    }
    FAIL("render did not fail");
    return pv::RenderError("", "");
}

long rss_kb() {
    std::ifstream in("/proc/self/status");
    std::string key;
    while (in >> key) {
        if (key == "VmRSS:") {
            long kb = 0;
            in >> kb;
            return kb;
        }
        std::string rest;
        std::getline(in, rest);
    }
    return 0;
}

}  // namespace pvtest
