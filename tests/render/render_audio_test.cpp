// SPDX-License-Identifier: MIT
// Sound: the music bed's level around the end of the narration, scene lengths
// set by narration (synthesised, files, global), and espeak word timings.
#include "narration.hpp"
#include "render_fixtures.hpp"
#include "subtitles.hpp"

#include <doctest/doctest.h>

#include <cmath>

using pvtest::image_job;
using pvtest::media;
using pvtest::render_error;
using pvtest::TempDir;

namespace {

// Amplitude of the `hz` component of the left channel over [from, to) seconds.
double tone_amplitude(const std::vector<float>& s, double hz, double from, double to) {
    long a = static_cast<long>(from * 48000);
    long b = static_cast<long>(to * 48000);
    double re = 0, im = 0;
    for (long i = a; i < b; ++i) {
        double ph = 2 * M_PI * hz * static_cast<double>(i) / 48000;
        re += s[static_cast<size_t>(i) * 2] * std::cos(ph);
        im += s[static_cast<size_t>(i) * 2] * std::sin(ph);
    }
    return 2 * std::hypot(re, im) / static_cast<double>(b - a);
}

double db(double v) {
    return 20 * std::log10(v);
}

constexpr double kFrame = 1.0 / 24;

}  // namespace

TEST_CASE("the music bed keeps its level when the narration ends (no amix renormalising)") {
    TempDir dir;
    // -6 dBFS sines: narration 1 kHz for 2 s, music 440 Hz for 8 s.
    std::string voice = dir.file("voice.wav");
    std::string music = dir.file("music.wav");
    pvtest::run(
        "ffmpeg -v error -y -f lavfi -i "
        "'aevalsrc=0.5*sin(2*PI*1000*t)|0.5*sin(2*PI*1000*t):s=44100:d=2' " +
        voice);
    pvtest::run(
        "ffmpeg -v error -y -f lavfi -i "
        "'aevalsrc=0.5*sin(2*PI*440*t)|0.5*sin(2*PI*440*t):s=44100:d=8' " +
        music);
    pv::RenderJob job = image_job(dir, {media("images/Aqua.jpg")}, 270, 480, 6.0);
    job.files[0].narration = voice;
    job.files[0].music = music;
    job.request.music_volume = 0.3;
    pv::render(job);

    std::vector<float> s = pvtest::audio_samples(job.output_path);
    REQUIRE(s.size() >= 6 * 48000 * 2 - 2048);
    double during = tone_amplitude(s, 440, 0.5, 1.5);
    double after = tone_amplitude(s, 440, 2.5, 3.5);
    double late = tone_amplitude(s, 440, 4.5, 5.5);
    // 0.5 * 0.3 = 0.15, i.e. -16.5 dBFS.
    CHECK(db(during) == doctest::Approx(-16.5).epsilon(0.03));
    CHECK(std::abs(db(after) - db(during)) < 0.5);
    CHECK(std::abs(db(late) - db(after)) < 0.5);
    CHECK(tone_amplitude(s, 1000, 0.5, 1.5) == doctest::Approx(0.5).epsilon(0.06));
    float peak = 0;
    for (float v : s) peak = std::max(peak, std::abs(v));
    CHECK(db(peak) <= -0.1 + 0.05);  // AAC may overshoot the limiter a hair
}

TEST_CASE("the length limits apply to scenes that narration made longer") {
    TempDir dir;
    pv::RenderJob job =
        image_job(dir, {media("images/LadyBird.jpg"), media("images/Storm.jpg")}, 270, 480, 2.0);
    job.request.scenes[0].narration_text =
        "This narration is far longer than the two seconds the scene asked for, on purpose.";
    SUBCASE("the whole video") {
        job.max_total_seconds = 5;
        pv::RenderError e = render_error(job);
        CHECK(e.error_type() == "invalid_request");
        CHECK(std::string(e.what()).rfind("scenes: with the narration the video lasts ", 0) == 0);
        CHECK(std::string(e.what()).find("more than the 5 s allowed (MAX_TOTAL_DURATION)") !=
              std::string::npos);
    }
    SUBCASE("one scene") {
        job.max_scene_seconds = 3;
        pv::RenderError e = render_error(job);
        CHECK(e.error_type() == "invalid_request");
        CHECK(std::string(e.what()).rfind("scenes[0]: with its narration the scene lasts ", 0) ==
              0);
        CHECK(std::string(e.what()).find("more than the 3 s allowed (MAX_SCENE_DURATION)") !=
              std::string::npos);
    }
    CHECK_FALSE(std::filesystem::exists(job.output_path));
}

TEST_CASE("a narration_text scene lasts its speech plus 1.5 s") {
    TempDir dir;
    pv::RenderJob job = image_job(dir, {media("images/LadyBird.jpg")}, 270, 480, 3.0);
    job.request.scenes[0].duration.reset();
    job.request.scenes[0].narration_text = "Hello world, this is a short test of the narration.";
    std::vector<std::string> stages;
    job.on_progress = [&](double, const std::string& stage) {
        if (stages.empty() || stages.back() != stage)
            stages.push_back(stage);
    };
    pv::RenderResult result = pv::render(job);

    REQUIRE(result.narration_seconds.size() == 1);
    CHECK(result.narration_seconds[0] > 1.5);
    const double expected = result.narration_seconds[0] + 1.5;
    CHECK(result.frames == static_cast<long>(std::ceil(expected * 24 - 1e-6)));
    pvtest::FileInfo info = pvtest::probe(job.output_path);
    CHECK(std::abs(info.video.duration - expected) <= kFrame);
    CHECK(std::abs(info.audio.duration - info.video.duration) <= kFrame);
    // The voice is audible, and the last 1.5 s minus a margin are quiet.
    std::vector<float> s = pvtest::audio_samples(job.output_path);
    double loud = 0, tail = 0;
    const long speech_end = static_cast<long>(result.narration_seconds[0] * 48000);
    for (long i = 0; i < speech_end; ++i) loud = std::max(loud, double(std::abs(s[i * 2])));
    for (long i = speech_end + 4800; i < static_cast<long>(s.size() / 2); ++i) {
        tail = std::max(tail, double(std::abs(s[i * 2])));
    }
    CHECK(loud > 0.1);
    CHECK(tail < 0.01);
    REQUIRE(stages.size() >= 2);
    CHECK(stages.front() == "narration");
    CHECK(stages.back() == "render");
}

TEST_CASE("espeak word events give one timed word per written word") {
    pv::Speech speech = pv::synthesize("Don't stop: one two three, four five six seven.", "en");
    REQUIRE(speech.words.size() == 9);
    CHECK(speech.words[0].word == "Don't");
    CHECK(speech.words[1].word == "stop:");
    for (std::size_t i = 1; i < speech.words.size(); ++i) {
        CHECK(speech.words[i].start > speech.words[i - 1].start);
        CHECK(speech.words[i - 1].end == speech.words[i].start);
    }
    CHECK(speech.words.back().end <= speech.audio.seconds() + 1e-9);

    auto lines = pv::make_captions(speech.words, 10.0);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0].text == "DON'T STOP: ONE TWO");
    CHECK(lines[1].text == "THREE, FOUR FIVE SIX");  // 4 words per line
    CHECK(lines[2].text == "SEVEN.");
    CHECK(lines[2].end == doctest::Approx(10.0 + speech.words.back().end));
    CHECK(lines[0].start == doctest::Approx(10.0 + speech.words[0].start));
    CHECK(lines[0].end == doctest::Approx(lines[1].start));
}

TEST_CASE("captions upper-case non-Latin letters") {
    CHECK(pv::to_upper_utf8("héllo wörld ñ") == "HÉLLO WÖRLD Ñ");
    CHECK(pv::to_upper_utf8("привет мир") == "ПРИВЕТ МИР");
    CHECK(pv::to_upper_utf8("αβγ 100% \\o/") == "ΑΒΓ 100% \\O/");
}

TEST_CASE("a global narration sets even scene lengths that cover it, no whole-second rounding") {
    TempDir dir;
    pv::RenderJob job = image_job(
        dir, {media("images/Aqua.jpg"), media("images/Storm.jpg"), media("images/LadyBird.jpg")},
        270, 480, 2.0);
    job.request.narration_text =
        "This reel has three pictures. The narration runs across all of them, and the scenes "
        "share its length evenly.";
    job.request.scenes[1].subtitle = true;
    pv::RenderResult result = pv::render(job);

    const double narration = result.global_narration_seconds;
    REQUIRE(narration > 3.0);
    REQUIRE(result.scene_seconds.size() == 3);
    CHECK(result.scene_seconds[0] == result.scene_seconds[1]);
    CHECK(result.scene_seconds[1] == result.scene_seconds[2]);
    // Not whole seconds: the scenes follow the narration to the frame.
    const double sum = result.scene_seconds[0] * 3 - 2 * 1.0;
    CHECK(sum >= narration);
    CHECK(sum <= narration + 0.2 + 3 * kFrame);
    pvtest::FileInfo info = pvtest::probe(job.output_path);
    CHECK(std::abs(info.video.duration - sum) <= kFrame);
    CHECK(std::abs(info.audio.duration - info.video.duration) <= kFrame);
    CHECK(result.frames == info.video.packets);
}

TEST_CASE("a narration file longer than the scene's duration stretches the scene") {
    TempDir dir;
    std::string voice = dir.file("voice.mp3");
    // 4.2 s of MP3 without a Xing header; the length must come from samples.
    pvtest::run(
        "ffmpeg -v error -y -f lavfi -i 'aevalsrc=0.5*sin(2*PI*300*t):s=44100:d=4.2' "
        "-c:a libmp3lame -b:a 64k -write_xing 0 " +
        voice);
    pv::RenderJob job =
        image_job(dir, {media("images/Aqua.jpg"), media("images/Storm.jpg")}, 270, 480, 3.0);
    job.files[0].narration = voice;
    pv::RenderResult result = pv::render(job);
    // Scene 0: the decoded narration (4.2 s plus the MP3 codec padding) plus
    // the 1 s crossfade; scene 1: 72 frames; one 24-frame join.
    REQUIRE(result.narration_seconds[0] >= 4.2);
    CHECK(result.narration_seconds[0] < 4.3);
    const long scene0 = static_cast<long>(std::ceil((result.narration_seconds[0] + 1) * 24 - 1e-6));
    CHECK(result.frames == scene0 + 72 - 24);
    std::vector<float> s = pvtest::audio_samples(job.output_path);
    CHECK(tone_amplitude(s, 300, 3.5, 4.1) > 0.3);  // still speaking after 3 s
}
