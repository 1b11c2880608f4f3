// SPDX-License-Identifier: MIT
// Video scenes: constant output frame rate, letterboxing, trimming and holding
// the last frame, and a crossfade into an image scene.
#include "render_fixtures.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <string_view>
#include <vector>

using pvtest::media;
using pvtest::TempDir;

namespace {

pv::RenderJob video_job(const TempDir& dir, const std::string& clip, std::optional<double> d) {
    pv::RenderJob job = pvtest::image_job(dir, {}, 270, 480, 1.0);
    pv::Scene scene;
    scene.type = pv::SceneType::Video;
    scene.video = clip;
    scene.duration = d;
    job.request.scenes.push_back(scene);
    pv::SceneFiles files;
    files.video = clip;
    job.files.push_back(files);
    return job;
}

// Writes a 90-degree rotation into the first track header of an MP4, the
// way phones tag portrait videos.
void tag_rotation_90(const std::string& path, int height) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> d((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    in.close();
    std::string_view view(d.data(), d.size());
    std::size_t i = view.find("tkhd");
    REQUIRE(i != std::string_view::npos);
    const bool v1 = d[i + 4] == 1;
    std::size_t off = i + 4 + 4 + (v1 ? 16 : 8) + 4 + 4 + (v1 ? 8 : 4) + 8 + 8;
    const std::uint32_t m[9] = {
        0, 1u << 16, 0, 0xFFFF0000u, 0, 0, static_cast<std::uint32_t>(height) << 16, 0, 1u << 30};
    for (int k = 0; k < 9; ++k) {
        for (int b = 0; b < 4; ++b) d[off + k * 4 + b] = static_cast<char>(m[k] >> (24 - 8 * b));
    }
    std::ofstream(path, std::ios::binary).write(d.data(), static_cast<std::streamsize>(d.size()));
}

// Centre of the red pixels of a picture, in fractions of its size.
std::pair<double, double> red_centre(const pvtest::Rgb& f) {
    double sx = 0, sy = 0, n = 0;
    for (int y = 0; y < f.height; ++y) {
        for (int x = 0; x < f.width; ++x) {
            const std::uint8_t* p = f.at(x, y);
            if (p[0] > 150 && p[1] < 80 && p[2] < 80) {
                sx += x;
                sy += y;
                ++n;
            }
        }
    }
    REQUIRE(n > 0);
    return {sx / n / f.width, sy / n / f.height};
}

}  // namespace

TEST_CASE("a 30 fps clip becomes 24 fps; its length comes from its packets") {
    TempDir dir;
    std::string clip = dir.file("clip.mp4");
    pvtest::run(
        "ffmpeg -v error -y -f lavfi -i testsrc=s=320x240:r=30:d=2 -pix_fmt yuv420p "
        "-c:v libx264 -preset ultrafast " +
        clip);
    pv::RenderJob job = video_job(dir, clip, std::nullopt);
    pv::RenderResult result = pv::render(job);
    CHECK(result.frames == 48);
    pvtest::FileInfo info = pvtest::probe(job.output_path);
    CHECK(info.video.width == 270);
    CHECK(info.video.height == 480);
    CHECK(info.video.fps == doctest::Approx(24));
    CHECK(info.video.packets == 48);
    CHECK(std::abs(info.audio.duration - 2.0) <= 1.0 / 24);

    // Letterboxed: black above and below the 270x202 picture.
    pvtest::Rgb f = pvtest::video_frame(job.output_path, 10);
    CHECK(f.at(135, 20)[0] < 30);
    CHECK(f.at(135, 460)[0] < 30);
}

TEST_CASE("a clip shorter than its scene holds its last frame; a longer one is trimmed") {
    TempDir dir;
    std::string clip = dir.file("odd.mkv");
    pvtest::run("ffmpeg -v error -y -f lavfi -i testsrc=s=853x480:r=25:d=1 -c:v mpeg4 " + clip);
    pv::RenderJob held = video_job(dir, clip, 2.0);
    CHECK(pv::render(held).frames == 48);
    pvtest::Rgb a = pvtest::video_frame(held.output_path, 30);
    pvtest::Rgb b = pvtest::video_frame(held.output_path, 47);
    CHECK(pvtest::mean_abs_diff(a, b, 0, 0, 270, 480) < 2);

    pv::RenderJob trimmed = video_job(dir, clip, 0.5);
    trimmed.output_path = dir.file("trimmed.mp4");
    CHECK(pv::render(trimmed).frames == 12);
}

TEST_CASE("an image scene crossfades into a video scene") {
    TempDir dir;
    std::string clip = dir.file("clip.mp4");
    pvtest::run(
        "ffmpeg -v error -y -f lavfi -i testsrc=s=320x240:r=24:d=2 -pix_fmt yuv420p "
        "-c:v libx264 -preset ultrafast " +
        clip);
    pv::RenderJob job = video_job(dir, clip, std::nullopt);
    pv::Scene image;
    image.image = media("images/Aqua.jpg");
    image.duration = 2.0;
    job.request.scenes.insert(job.request.scenes.begin(), image);
    pv::SceneFiles files;
    files.image = image.image;
    job.files.insert(job.files.begin(), files);
    CHECK(pv::render(job).frames == 48 + 48 - 24);
}

TEST_CASE("a video file that is not a video fails as an asset error") {
    TempDir dir;
    std::string junk = dir.file("clip.mp4");
    std::ofstream(junk) << "<html>not found</html>";
    pv::RenderJob job = video_job(dir, junk, 1.0);
    job.request.scenes[0].video = "https://example.com/v/clip.mp4";
    try {
        pv::render(job);
        FAIL("no error");
    } catch (const pv::RenderError& e) {
        CHECK(e.error_type() == "asset");
        CHECK(std::string(e.what()).rfind("scenes[0].video (clip.mp4): ", 0) == 0);
    }
}

TEST_CASE("a phone video tagged as rotated is turned upright like the ffmpeg CLI does") {
    TempDir dir;
    std::string clip = dir.file("phone.mp4");
    pvtest::run(
        "ffmpeg -v error -y -f lavfi -i testsrc=s=320x240:r=24:d=1 -vf "
        "drawbox=x=0:y=0:w=40:h=40:color=red:t=fill -c:v libx264 -preset ultrafast "
        "-pix_fmt yuv420p " +
        clip);
    tag_rotation_90(clip, 240);
    std::string reference = dir.file("reference.png");
    pvtest::run("ffmpeg -v error -y -i " + clip + " -frames:v 1 " + reference);
    pvtest::Rgb ref = pvtest::video_frame(reference, 0);
    REQUIRE(ref.width == 240);  // the CLI autorotates to portrait
    REQUIRE(ref.height == 320);

    pv::RenderJob job = video_job(dir, clip, std::nullopt);
    pv::render(job);
    pvtest::Rgb f = pvtest::video_frame(job.output_path, 0);
    // Upright 240x320 fits 270x360: only 60 px bars above and below.
    CHECK(f.at(135, 100)[0] + f.at(135, 100)[1] + f.at(135, 100)[2] > 60);
    CHECK(f.at(135, 20)[0] < 30);
    auto [rx, ry] = red_centre(ref);
    auto [ox, oy] = red_centre(f);
    CHECK((rx > 0.5) == (ox > 0.5));
    CHECK((ry > 0.5) == (oy > 0.5));
    CHECK(ox == doctest::Approx(rx).epsilon(0.1));
}
