// SPDX-License-Identifier: MIT
// libFuzzer target for pv::parse_request: arbitrary bytes are parsed as JSON
// (without exceptions) and validated. Refusing a request with InvalidRequest is
// the expected outcome; any other exception, a sanitizer report, or a request
// accepted in breach of the documented limits is a bug.
#include "request.hpp"

#include "fuzz_util.hpp"

#include <cmath>
#include <cstdint>
#include <string_view>

namespace {

void expect(bool ok, const char* what) {
    if (!ok) pv::fuzz::broken("fuzz_request", what);
}

bool in(double v, double lo, double hi) { return std::isfinite(v) && v >= lo && v <= hi; }

/// Checks what the header promises about an accepted request.
void check_accepted(const pv::Request& req, const pv::RequestLimits& limits) {
    expect(!req.scenes.empty(), "no scenes");
    expect(req.scenes.size() <= static_cast<std::size_t>(limits.max_scenes), "too many scenes");
    expect(req.width % 2 == 0 && req.width >= limits.min_side && req.width <= limits.max_side,
           "width out of range or odd");
    expect(req.height % 2 == 0 && req.height >= limits.min_side && req.height <= limits.max_side,
           "height out of range or odd");
    expect(req.fps >= 1 && req.fps <= limits.max_fps, "fps out of range");
    expect(in(req.zoom, 1.0, 1e9), "zoom below 1 or not finite");
    expect(in(req.darken, 0.0, 1.0), "darken outside 0..1");
    expect(in(req.crossfade, 0.0, 1e9), "crossfade negative or not finite");
    expect(in(req.music_volume, 0.0, 1e9), "music_volume negative or not finite");
    expect(req.narration_text.size() <= limits.max_narration_chars, "narration_text too long");

    bool global_narration = !req.narration_text.empty();
    double total = 0;
    for (const auto& s : req.scenes) {
        if (s.type == pv::SceneType::Image) {
            expect(s.image.empty() != s.prompt_image.empty(), "image scene needs image xor prompt");
            expect(s.video.empty(), "image scene with video");
        } else {
            expect(!s.video.empty(), "video scene without video");
            expect(s.image.empty() && s.prompt_image.empty(), "video scene with image");
        }
        expect(s.narration.empty() || s.narration_text.empty(), "both narration kinds");
        expect(!global_narration || (s.narration.empty() && s.narration_text.empty()),
               "scene narration with global narration_text");
        expect(s.narration_text.size() <= limits.max_narration_chars, "scene narration too long");
        if (s.duration) {
            expect(in(*s.duration, limits.min_scene_duration, limits.max_scene_duration),
                   "scene duration out of range");
            if (req.scenes.size() > 1) expect(req.crossfade < *s.duration, "crossfade too long");
            total += *s.duration;
        } else {
            bool narrated = global_narration || !s.narration.empty() || !s.narration_text.empty();
            expect(narrated || s.type == pv::SceneType::Video, "image scene without duration");
        }
        if (s.text) {
            expect(!s.text->content.empty(), "empty text");
            expect(s.text->content.size() <= limits.max_text_chars, "text too long");
            expect(s.text->fontsize >= 1 && s.text->fontsize <= limits.max_fontsize,
                   "fontsize out of range");
            expect(!s.text->color.empty(), "empty colour");
        }
    }
    double joins = req.crossfade * static_cast<double>(req.scenes.size() - 1);
    expect(total - joins <= limits.max_total_duration + 1e-9, "total duration over budget");
}

void run(const nlohmann::json& body, const pv::RequestLimits& limits) {
    try {
        check_accepted(pv::parse_request(body, limits), limits);
    } catch (const pv::InvalidRequest& e) {
        // The message quotes parts of the request, which nlohmann only accepts
        // as valid UTF-8; a message cut inside a character cannot be stored in
        // a PostgreSQL text column nor dumped by nlohmann's default handler.
        if (pv::fuzz::enforced("request-message-utf8")) {
            expect(pv::fuzz::valid_utf8(e.what()), "InvalidRequest message is not valid UTF-8");
        }
        expect(!e.field().empty(), "InvalidRequest without a field");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto body = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return 0;

    // Default limits, then tight ones so that the limit branches are reached
    // with small inputs.
    run(body, pv::RequestLimits{});
    pv::RequestLimits tight;
    tight.max_scenes = 3;
    tight.max_scene_duration = 10;
    tight.max_total_duration = 12;
    // The default size (1080x1920) is not checked against max_side, so a tight
    // limit below 1920 would flag every request that leaves the size out.
    tight.max_side = 1920;
    tight.max_fps = 30;
    tight.max_fontsize = 64;
    tight.max_text_chars = 16;
    tight.max_narration_chars = 32;
    run(body, tight);
    return 0;
}
