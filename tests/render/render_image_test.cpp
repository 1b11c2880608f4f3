// SPDX-License-Identifier: MIT
// Image scenes: EXIF orientation (rotations and mirrors), odd and huge sizes,
// and the asset errors for broken files.
#include "render_fixtures.hpp"

#include "resample.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

using pvtest::image_job;
using pvtest::media;
using pvtest::render_error;
using pvtest::TempDir;

namespace {

// Where stored pixel (sx, sy) of a ws x hs picture appears once EXIF
// orientation `o` is applied (the TIFF/EXIF definition of the tag).
std::pair<int, int> upright_position(int o, int sx, int sy, int ws, int hs) {
    switch (o) {
        case 2:
            return {ws - 1 - sx, sy};
        case 3:
            return {ws - 1 - sx, hs - 1 - sy};
        case 4:
            return {sx, hs - 1 - sy};
        case 5:
            return {sy, sx};
        case 6:
            return {hs - 1 - sy, sx};
        case 7:
            return {hs - 1 - sy, ws - 1 - sx};
        case 8:
            return {sy, ws - 1 - sx};
        default:
            return {sx, sy};
    }
}

bool is_red(const std::uint8_t* p) {
    return p[0] > 80 && p[1] < 50 && p[2] < 50;
}
bool is_green(const std::uint8_t* p) {
    return p[1] > 80 && p[0] < 50 && p[2] < 50;
}

}  // namespace

TEST_CASE("EXIF orientation 1-8 is applied: rotations and mirrors") {
    TempDir dir;
    for (int o = 1; o <= 8; ++o) {
        CAPTURE(o);
        // Stored landscape for the orientations that turn it upright, so the
        // upright picture is always 1080x1920 and fills the frame exactly.
        const bool swaps = o >= 5;
        const int ws = swaps ? 1920 : 1080;
        const int hs = swaps ? 1080 : 1920;
        std::string path = dir.file("o" + std::to_string(o) + ".jpg");
        pvtest::run("ffmpeg -v error -y -f lavfi -i color=gray:s=" + std::to_string(ws) + "x" +
                    std::to_string(hs) +
                    " -vf drawbox=x=0:y=0:w=160:h=160:color=red:t=fill,drawbox=x=" +
                    std::to_string(ws - 160) +
                    ":y=0:w=160:h=160:color=lime:t=fill -frames:v 1 -q:v 2 " + path);
        if (o != 1)
            pvtest::add_exif_orientation(path, o);

        pv::RenderJob job = image_job(dir, {path}, 270, 480, 0.25);
        job.poster_path.clear();
        pv::render(job);
        pvtest::Rgb frame = pvtest::video_frame(job.output_path, 0);
        REQUIRE(frame.width == 270);

        auto [rx, ry] = upright_position(o, 80, 80, ws, hs);
        auto [gx, gy] = upright_position(o, ws - 80, 80, ws, hs);
        // Upright 1080x1920 maps onto 270x480 at a quarter.
        CHECK(is_red(frame.at(rx / 4, ry / 4)));
        CHECK(is_green(frame.at(gx / 4, gy / 4)));
    }
}

TEST_CASE("orientation 6 photo with a marker at stored (0,0) ends up top-right") {
    TempDir dir;
    std::string path = dir.file("rotated.jpg");
    pvtest::run(
        "ffmpeg -v error -y -f lavfi -i color=gray:s=1920x1080 -vf "
        "drawbox=x=0:y=0:w=120:h=120:color=red:t=fill -frames:v 1 -q:v 2 " +
        path);
    pvtest::add_exif_orientation(path, 6);
    pv::RenderJob job = image_job(dir, {path}, 270, 480, 0.25);
    pv::render(job);
    pvtest::Rgb frame = pvtest::video_frame(job.output_path, 0);
    CHECK(is_red(frame.at(265, 5)));
    CHECK_FALSE(is_red(frame.at(5, 5)));
    // No bars: the bottom corners are the grey photo, not black.
    CHECK(frame.at(5, 475)[0] > 40);
    CHECK(frame.at(265, 475)[0] > 40);
}

TEST_CASE("odd-sized images still give exactly 1080x1920 yuv420p") {
    TempDir dir;
    std::string a = dir.file("odd_1081x1921.jpg");
    std::string b = dir.file("odd_853x480.jpg");
    pvtest::run("ffmpeg -v error -y -f lavfi -i testsrc=s=1081x1921 -frames:v 1 " + a);
    pvtest::run("ffmpeg -v error -y -f lavfi -i testsrc=s=853x480 -frames:v 1 " + b);
    pv::RenderJob job = image_job(dir, {a, b, media("images/FreshFlower.jpg")}, 1080, 1920, 0.5);
    job.request.crossfade = 0.25;
    pv::RenderResult result = pv::render(job);
    pvtest::FileInfo info = pvtest::probe(job.output_path);
    CHECK(info.video.width == 1080);
    CHECK(info.video.height == 1920);
    CHECK(info.video.pix_fmt == "yuv420p");
    CHECK(info.video.packets == 3 * 12 - 2 * 6);
    CHECK(result.frames == 24);
}

TEST_CASE("a huge image is refused from its header with an asset error") {
    TempDir dir;
    std::string huge = dir.file("huge.jpg");
    pvtest::write_jpeg_claiming_size(huge, 30000, 30000);
    pv::RenderJob job = image_job(dir, {media("images/Aqua.jpg"), huge}, 270, 480, 1.0);
    job.request.scenes[1].image = "https://cdn.example.com/photos/huge.jpg?sig=1";
    pv::RenderError e = render_error(job);
    CHECK(e.error_type() == "asset");
    CHECK(std::string(e.what()) == "scenes[1].image (huge.jpg): image too large: 30000x30000");
    CHECK_FALSE(std::filesystem::exists(job.output_path));
    CHECK_FALSE(std::filesystem::exists(job.poster_path));
}

TEST_CASE("a truncated JPEG fails as an asset error naming the file") {
    TempDir dir;
    std::string cut = dir.file("Storm.jpg");
    {
        std::ifstream in(media("images/Storm.jpg"), std::ios::binary);
        std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream out(cut, std::ios::binary);
        out.write(data.data(), static_cast<std::streamsize>(data.size() / 2));
    }
    pv::RenderJob job = image_job(dir, {media("images/Aqua.jpg"), cut}, 270, 480, 1.0);
    bool rendering = false;
    job.on_progress = [&](double, const std::string& stage) { rendering |= stage == "render"; };
    pv::RenderError e = render_error(job);
    CHECK(e.error_type() == "asset");
    CHECK(std::string(e.what()).rfind("scenes[1].image (Storm.jpg): truncated JPEG", 0) == 0);
    // Found before the first frame, not when the second scene comes up.
    CHECK_FALSE(rendering);
    CHECK_FALSE(std::filesystem::exists(job.output_path));
}

TEST_CASE("an HTML page saved as .jpg fails as an asset error") {
    TempDir dir;
    std::string html = dir.file("photo.jpg");
    std::ofstream(html) << "<!DOCTYPE html><html><body>Access denied</body></html>\n";
    pv::RenderJob job = image_job(dir, {html}, 270, 480, 1.0);
    pv::RenderError e = render_error(job);
    CHECK(e.error_type() == "asset");
    CHECK(std::string(e.what()).rfind("scenes[0].image (photo.jpg): not an image", 0) == 0);
}

TEST_CASE("a very large JPEG (5640x3172) renders") {
    TempDir dir;
    pv::RenderJob job = image_job(dir, {media("images/Elephants_5640x3172.jpg")}, 270, 480, 0.5);
    pv::RenderResult result = pv::render(job);
    CHECK(result.frames == 12);
}

namespace {

// The zoom's definition: each output pixel weights its four neighbours at
// once, (top * (256 - wy) + bottom * wy + 2^15) >> 16, with 8-bit weights.
std::vector<std::uint8_t> reference_resample(const pv::PlaneView& src, int w, int h, double x0,
                                             double y0, double sx, double sy) {
    auto taps = [](int n, int src_n, double start, double step) {
        std::vector<std::pair<int, int>> t(static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i) {
            double s = std::clamp(start + (i + 0.5) * step - 0.5, 0.0, src_n - 1.0);
            int i0 = std::min(static_cast<int>(s), std::max(0, src_n - 2));
            t[i] = {i0, static_cast<int>(std::lround((s - i0) * 256))};
        }
        return t;
    };
    auto tx = taps(w, src.width, x0, sx);
    auto ty = taps(h, src.height, y0, sy);
    const int nc = src.width > 1 ? 1 : 0;
    const int nr = src.height > 1 ? src.stride : 0;
    std::vector<std::uint8_t> out(static_cast<std::size_t>(w) * h);
    for (int y = 0; y < h; ++y) {
        const std::uint8_t* r0 = src.data + static_cast<std::ptrdiff_t>(ty[y].first) * src.stride;
        const std::uint8_t* r1 = r0 + nr;
        const int wy = ty[y].second;
        for (int x = 0; x < w; ++x) {
            auto [i, wx] = tx[x];
            int top = r0[i] * (256 - wx) + r0[i + nc] * wx;
            int bottom = r1[i] * (256 - wx) + r1[i + nc] * wx;
            out[static_cast<std::size_t>(y) * w + x] =
                static_cast<std::uint8_t>((top * (256 - wy) + bottom * wy + (1 << 15)) >> 16);
        }
    }
    return out;
}

}  // namespace

TEST_CASE("the zoom resampler (SIMD where the CPU has it) equals the bilinear definition") {
    std::mt19937 rng(7);
    pv::ResampleScratch scratch;
    for (int n = 0; n < 2000; ++n) {
        const int sw = 1 + static_cast<int>(rng() % 300);
        const int sh = 1 + static_cast<int>(rng() % 200);
        // Tight strides too: the SIMD path must not read past a row's stride.
        const int stride = rng() % 4 == 0 ? sw : (sw + 63) / 64 * 64;
        std::vector<std::uint8_t> plane(static_cast<std::size_t>(stride) * sh);
        for (auto& b : plane) b = static_cast<std::uint8_t>(rng());
        pv::PlaneView src{plane.data(), stride, sw, sh};
        const int w = 1 + static_cast<int>(rng() % 200);
        const int h = 1 + static_cast<int>(rng() % 100);
        // Zooms from 1 to 4 into the plane, and arbitrary steps (up- and downscaling).
        const double zoom = 1.0 + (rng() % 3000) / 1000.0;
        double sx = sw / zoom / w;
        double sy = sh / zoom / h;
        if (rng() % 3 == 0) {
            sx = (rng() % 5000) / 1000.0;
            sy = (rng() % 5000) / 1000.0;
        }
        const double x0 = (rng() % 1000) / 2000.0 * sw;
        const double y0 = (rng() % 1000) / 2000.0 * sh;
        std::vector<std::uint8_t> out(static_cast<std::size_t>(w) * h);
        pv::resample_plane(src, out.data(), w, w, h, x0, y0, sx, sy, scratch);
        CAPTURE(n);
        REQUIRE(out == reference_resample(src, w, h, x0, y0, sx, sy));
    }
}
