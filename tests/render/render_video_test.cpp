// SPDX-License-Identifier: MIT
// Video scenes: constant output frame rate, letterboxing, trimming and holding
// the last frame, and a crossfade into an image scene.
#include "render_fixtures.hpp"

#include <doctest/doctest.h>

#include <fstream>

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
