// SPDX-License-Identifier: MIT
// Text on the picture: the overlay is drawn exactly as written (no escaping,
// no %{...} expansion), the default font needs no fontconfig, and captions
// appear while the narration speaks.
#include "render_fixtures.hpp"

#include "font_fallback.hpp"
#include "text_overlay.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

using pvtest::image_job;
using pvtest::media;
using pvtest::Rgb;
using pvtest::TempDir;

namespace {

const char* const kTricky = "Don't stop: 100% %{pts} \\o/";

// Intersection over union of the bright (text) pixels of two pictures over
// rows [y0, y1).
double text_iou(const Rgb& a, const Rgb& b, int y0, int y1) {
    long both = 0, either = 0;
    for (int y = y0; y < y1; ++y) {
        for (int x = 0; x < a.width; ++x) {
            bool ta = a.at(x, y)[0] > 160 && a.at(x, y)[1] > 160;
            bool tb = b.at(x, y)[0] > 160 && b.at(x, y)[1] > 160;
            both += ta && tb;
            either += ta || tb;
        }
    }
    return either ? static_cast<double>(both) / static_cast<double>(either) : 0.0;
}

long bright_pixels(const Rgb& a, int y0, int y1) {
    long n = 0;
    for (int y = y0; y < y1; ++y) {
        for (int x = 0; x < a.width; ++x) n += a.at(x, y)[0] > 200 && a.at(x, y)[2] > 200;
    }
    return n;
}

// The same string drawn by the ffmpeg CLI from a text file (no escaping
// involved) on a plain background, as a lossless PNG, in `font` (default: the
// renderer's default font).
Rgb reference(const TempDir& dir, const std::string& text, const std::string& name, int y,
              const std::string& font = "") {
    std::string txt = dir.file(name + ".txt");
    std::ofstream(txt, std::ios::binary) << text;
    std::string png = dir.file(name + ".png");
    pvtest::run(
        "ffmpeg -v error -y -f lavfi -i color=c=0x404040:s=540x960 -vf "
        "\"drawtext=fontfile=" +
        (font.empty() ? pv::resolve_default_font() : font) + ":textfile=" + txt +
        ":expansion=none:fontsize=24:fontcolor=white:x=(w-text_w)/2:y=" + std::to_string(y) +
        "\" -frames:v 1 " + png);
    return pvtest::video_frame(png, 0);
}

// Renders `text` centred at 48 px (24 px at 540 wide) over a plain grey
// photo for `seconds`, nearly losslessly; returns the job (output_path).
pv::RenderJob render_on_grey(const TempDir& dir, const std::string& text, double seconds) {
    std::string grey = dir.file("grey.jpg");
    pvtest::run("ffmpeg -v error -y -f lavfi -i color=c=0x808080:s=1080x1920 -frames:v 1 " + grey);
    pv::RenderJob job = image_job(dir, {grey}, 540, 960, seconds);
    job.crf = 12;
    job.request.scenes[0].text = pv::TextOverlay{text, pv::TextPosition::Center, 48, "white"};
    pv::render(job);
    return job;
}

}  // namespace

TEST_CASE("drawtext special characters are drawn literally and do not change over time") {
    TempDir dir;
    pv::RenderJob job = render_on_grey(dir, kTricky, 2.0);

    Rgb first = pvtest::video_frame(job.output_path, 0);
    Rgb last = pvtest::video_frame(job.output_path, 47);
    // 48 px at 1080 wide is 24 px here; one line of 30 px, centred.
    const int y = (960 - 30) / 2;
    const int y0 = y - 10, y1 = y + 40;
    CHECK(bright_pixels(first, y0, y1) > 300);
    CHECK(text_iou(first, last, y0, y1) > 0.9);

    Rgb exact = reference(dir, kTricky, "exact", y);
    Rgb mangled = reference(dir, "Dont stop 100 0.000000 o/", "mangled", y);
    double iou_exact = text_iou(first, exact, y0, y1);
    double iou_mangled = text_iou(first, mangled, y0, y1);
    CAPTURE(iou_exact);
    CAPTURE(iou_mangled);
    CHECK(iou_exact > 0.6);
    CHECK(iou_exact > iou_mangled + 0.2);
}

TEST_CASE("overlay lines wrap at spaces, and between Chinese or Japanese characters") {
    // 0.62 em per narrow character, 1 em per wide one; 10 px font, 100 px: 10 em.
    CHECK(pv::text_width_em("日本abc") == doctest::Approx(2 + 3 * 0.62));
    CHECK(pv::wrap_text("one two three four", 10, 100) ==
          std::vector<std::string>{"one two three", "four"});
    CHECK(pv::wrap_text("日本語のテキストです", 10, 45) ==
          std::vector<std::string>{"日本語の", "テキスト", "です"});
    CHECK(pv::wrap_text("Hello 世界abc", 10, 100) == std::vector<std::string>{"Hello 世界abc"});
    CHECK(pv::wrap_text("first line\nsecond", 10, 100) ==
          std::vector<std::string>{"first line", "second"});
}

TEST_CASE("a line the default font cannot draw is drawn in an installed font that can") {
    const std::string main_font = pv::resolve_default_font();
    CHECK(pv::font_for_text(main_font, "Привет, Ελλάδα — ça va?") == main_font);
    const std::string cjk = "日本語 テスト 한국어";
    const std::string other = pv::font_for_text(main_font, cjk);
    CAPTURE(other);
    REQUIRE(other != main_font);

    TempDir dir;
    pv::RenderJob job = render_on_grey(dir, cjk, 1.0);
    Rgb frame = pvtest::video_frame(job.output_path, 0);
    const int y = (960 - 30) / 2;
    const int y0 = y - 10, y1 = y + 40;
    // The glyphs, as that font draws them, not the main font's empty boxes.
    double iou_glyphs = text_iou(frame, reference(dir, cjk, "glyphs", y, other), y0, y1);
    double iou_boxes = text_iou(frame, reference(dir, cjk, "boxes", y, main_font), y0, y1);
    CAPTURE(iou_glyphs);
    CAPTURE(iou_boxes);
    CHECK(iou_glyphs > 0.6);
    CHECK(iou_glyphs > iou_boxes + 0.2);
}

TEST_CASE("a text overlay changes the pixels of its box, at each position") {
    TempDir dir;
    pv::RenderJob plain = image_job(dir, {media("images/Storm.jpg")}, 270, 480, 0.5);
    plain.output_path = dir.file("plain.mp4");
    pv::render(plain);
    Rgb base = pvtest::video_frame(plain.output_path, 0);

    struct Case {
        pv::TextPosition position;
        int y0, y1;
    };
    for (Case c : {Case{pv::TextPosition::Top, 40, 70}, Case{pv::TextPosition::Center, 225, 255},
                   Case{pv::TextPosition::Bottom, 400, 432}}) {
        pv::RenderJob job = image_job(dir, {media("images/Storm.jpg")}, 270, 480, 0.5);
        job.request.scenes[0].text =
            pv::TextOverlay{"Привет, мир! Ünïcödé", c.position, 72, "#FFFF00"};
        pv::render(job);
        Rgb text = pvtest::video_frame(job.output_path, 0);
        CAPTURE(static_cast<int>(c.position));
        CHECK(pvtest::mean_abs_diff(base, text, 0, c.y0, 270, c.y1 - c.y0) > 8);
        // Elsewhere the picture is unchanged (only coding noise).
        int other = c.y0 > 200 ? 10 : 300;
        CHECK(pvtest::mean_abs_diff(base, text, 0, other, 270, 30) < 3);
    }
}

TEST_CASE("text renders with the default font when fontconfig has no fonts") {
    TempDir dir;
    std::string conf = dir.file("fonts.conf");
    std::ofstream(conf) << "<?xml version=\"1.0\"?><fontconfig></fontconfig>\n";
    setenv("FONTCONFIG_FILE", conf.c_str(), 1);
    pv::RenderJob job = image_job(dir, {media("images/Aqua.jpg")}, 270, 480, 0.5);
    job.request.scenes[0].text = pv::TextOverlay{"Sans?", pv::TextPosition::Center, 96, "white"};
    CHECK_NOTHROW(pv::render(job));
    unsetenv("FONTCONFIG_FILE");
    Rgb frame = pvtest::video_frame(job.output_path, 0);
    CHECK(bright_pixels(frame, 220, 270) > 50);
}

TEST_CASE("a missing default font is reported, not rendered around") {
    setenv("PROTOVIDEO_FONT", "/nonexistent/font.ttf", 1);
    CHECK_THROWS_WITH_AS(pv::resolve_default_font(), doctest::Contains("PROTOVIDEO_FONT"),
                         std::runtime_error);
    unsetenv("PROTOVIDEO_FONT");
    std::string font = pv::resolve_default_font();
    CHECK(font.front() == '/');
    CHECK(font.find("DejaVuSans-Bold.ttf") != std::string::npos);
}

TEST_CASE("subtitles show upper-case captions at 60% of the height while speaking") {
    TempDir dir;
    const char* text = "One two three four five six seven eight.";
    pv::RenderJob plain = image_job(dir, {media("images/Storm.jpg")}, 270, 480, 1.0);
    plain.output_path = dir.file("plain.mp4");
    plain.request.scenes[0].narration_text = text;
    pv::render(plain);

    pv::RenderJob job = image_job(dir, {media("images/Storm.jpg")}, 270, 480, 1.0);
    job.request.scenes[0].narration_text = text;
    job.request.scenes[0].subtitle = true;
    pv::RenderResult result = pv::render(job);
    REQUIRE(result.frames > 48);

    // Captions start at the first word; frame 12 is 0.5 s in.
    Rgb a = pvtest::video_frame(plain.output_path, 12);
    Rgb b = pvtest::video_frame(job.output_path, 12);
    const int top = static_cast<int>(0.6 * 480);
    CHECK(pvtest::mean_abs_diff(a, b, 0, top, 270, 20) > 5);
    CHECK(pvtest::mean_abs_diff(a, b, 0, top - 40, 270, 30) < 3);  // nothing above the line
    // After the speech (the 1.5 s tail, past the last line) the band is clean.
    long last = result.frames - 2;
    Rgb c = pvtest::video_frame(plain.output_path, last);
    Rgb d = pvtest::video_frame(job.output_path, last);
    CHECK(pvtest::mean_abs_diff(c, d, 0, top, 270, 20) < 3);
}
