// SPDX-License-Identifier: MIT
// The output contract: size, pixel format, profile, frame rate, exact frame
// count, both streams, index first, and the crossfade arithmetic.
#include "render_fixtures.hpp"

#include <doctest/doctest.h>

#include <filesystem>

using pvtest::image_job;
using pvtest::media;
using pvtest::probe;
using pvtest::TempDir;

TEST_CASE("two 3 s image scenes with a 1 s crossfade last 5 s, 120 frames") {
    TempDir dir;
    pv::RenderJob job =
        image_job(dir, {media("images/Aqua.jpg"), media("images/Storm.jpg")}, 270, 480, 3.0);
    std::vector<double> progress;
    job.on_progress = [&](double p, const std::string& stage) {
        if (stage == "render")
            progress.push_back(p);
    };
    pv::RenderResult result = pv::render(job);
    CHECK(result.frames == 120);
    CHECK(result.duration == doctest::Approx(5.0).epsilon(1e-9));

    pvtest::FileInfo info = probe(job.output_path);
    REQUIRE(info.video.present);
    REQUIRE(info.audio.present);
    CHECK(info.video.width == 270);
    CHECK(info.video.height == 480);
    CHECK(info.video.packets == 120);
    CHECK(info.video.duration == doctest::Approx(5.0).epsilon(0.001));
    CHECK(std::abs(info.audio.duration - info.video.duration) <= 1.0 / 24);
    CHECK(std::filesystem::file_size(job.poster_path) > 500);
    REQUIRE(!progress.empty());
    CHECK(progress.back() == doctest::Approx(100.0));
    CHECK(progress.size() <= 102);
}

TEST_CASE("full size output is 1080x1920 yuv420p High, 24 fps, AAC 48 kHz stereo, faststart") {
    TempDir dir;
    pv::RenderJob job = image_job(dir, {media("images/LadyBird.jpg")}, 1080, 1920, 2.0);
    job.files[0].music = media("audio/elf-land.ogg");
    job.request.scenes[0].music = "https://example.com/music/elf-land.ogg?sig=abc";
    pv::render(job);

    pvtest::FileInfo info = probe(job.output_path);
    CHECK(info.video.codec == "h264");
    CHECK(info.video.profile == "High");
    CHECK(info.video.width == 1080);
    CHECK(info.video.height == 1920);
    CHECK(info.video.pix_fmt == "yuv420p");
    CHECK(info.video.fps == doctest::Approx(24.0));
    CHECK(info.video.packets == 48);
    CHECK(info.audio.codec == "aac");
    CHECK(info.audio.profile == "LC");
    CHECK(info.audio.sample_rate == 48000);
    CHECK(info.audio.channels == 2);
    CHECK(std::abs(info.audio.duration - 2.0) <= 1.0 / 24);
    CHECK(info.moov_before_mdat);
}

TEST_CASE("an output that cannot be written is an encoding error and leaves nothing behind") {
    TempDir dir;
    pv::RenderJob job = image_job(dir, {media("images/Aqua.jpg")}, 270, 480, 0.5);
    job.output_path = dir.file("missing/out.mp4");
    try {
        pv::render(job);
        FAIL("no error");
    } catch (const pv::RenderError& e) {
        CHECK(e.error_type() == "encoding");
        CHECK(std::string(e.what()).find("missing/out.mp4") != std::string::npos);
    }
    CHECK_FALSE(std::filesystem::exists(job.poster_path));
}

TEST_CASE("request size and frame rate override the defaults") {
    TempDir dir;
    pv::RenderJob job = image_job(dir, {media("images/GreenMeadow.jpg")}, 360, 640, 1.0);
    job.request.fps = 30;
    pv::RenderResult result = pv::render(job);
    CHECK(result.frames == 30);
    pvtest::FileInfo info = probe(job.output_path);
    CHECK(info.video.width == 360);
    CHECK(info.video.height == 640);
    CHECK(info.video.fps == doctest::Approx(30.0));
    CHECK(std::abs(info.audio.duration - 1.0) <= 1.0 / 30);
}
