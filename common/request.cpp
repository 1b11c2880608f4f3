// SPDX-License-Identifier: MIT
// Request parsing and validation: every rule that can be checked without
// touching an asset is checked here, so a bad request fails before any work.
#include "request.hpp"

#include <fmt/format.h>
extern "C" {
#include <libavutil/avutil.h>
#include <libavutil/log.h>
#include <libavutil/parseutils.h>
}

#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "text_excerpt.hpp"

namespace pv {

namespace {

using nlohmann::json;

constexpr std::size_t kMaxSourceChars = 4096;
constexpr std::size_t kMaxPromptChars = 4000;
constexpr std::size_t kMaxFilenameChars = 200;
constexpr int kMinFontsize = 8;
constexpr double kMaxZoom = 4.0;
constexpr double kMaxCrossfade = 5.0;
constexpr double kMaxMusicVolume = 2.0;

std::string type_name(const json& v) {
    switch (v.type()) {
        case json::value_t::null:
            return "null";
        case json::value_t::boolean:
            return "a boolean";
        case json::value_t::string:
            return "a string";
        case json::value_t::array:
            return "an array";
        case json::value_t::object:
            return "an object";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned:
            return "an integer";
        case json::value_t::number_float:
            return "a number";
        default:
            return "an unsupported value";
    }
}

/// A JSON object being read, with the path used in error messages.
class Fields {
public:
    Fields(const json& obj, std::string path) : m_obj(obj), m_path(std::move(path)) {}

    std::string path_of(std::string_view key) const {
        return m_path.empty() ? std::string(key) : m_path + "." + std::string(key);
    }

    /// The member, or nullptr when it is absent or null (clients written for
    /// the original service send null for unused fields).
    const json* find(std::string_view key) const {
        auto it = m_obj.find(key);
        if (it == m_obj.end() || it->is_null())
            return nullptr;
        return &*it;
    }

    std::optional<std::string> string(std::string_view key, std::size_t max_chars) const {
        const json* v = find(key);
        if (!v)
            return std::nullopt;
        if (!v->is_string())
            fail(key, "must be a string, got " + type_name(*v));
        const auto& s = v->get_ref<const std::string&>();
        if (s.size() > max_chars) {
            fail(key, fmt::format("must be at most {} characters, got {}", max_chars, s.size()));
        }
        return s;
    }

    std::optional<double> number(std::string_view key) const {
        const json* v = find(key);
        if (!v)
            return std::nullopt;
        if (!v->is_number())
            fail(key, "must be a number, got " + type_name(*v));
        double d = v->get<double>();
        if (!std::isfinite(d))
            fail(key, "must be a finite number");
        return d;
    }

    std::optional<double> number_in(std::string_view key, double lo, double hi,
                                    std::string_view unit = "") const {
        auto d = number(key);
        if (d && (*d < lo || *d > hi)) {
            fail(key, fmt::format("must be between {} and {}{}, got {}", lo, hi, unit, *d));
        }
        return d;
    }

    std::optional<int> integer_in(std::string_view key, int lo, int hi) const {
        const json* v = find(key);
        if (!v)
            return std::nullopt;
        if (!v->is_number())
            fail(key, "must be an integer, got " + type_name(*v));
        double d = v->get<double>();
        if (!std::isfinite(d) || d != std::floor(d)) {
            fail(key, fmt::format("must be an integer, got {}", d));
        }
        if (d < lo || d > hi)
            fail(key, fmt::format("must be between {} and {}, got {}", lo, hi, d));
        return static_cast<int>(d);
    }

    std::optional<bool> boolean(std::string_view key) const {
        const json* v = find(key);
        if (!v)
            return std::nullopt;
        if (!v->is_boolean())
            fail(key, "must be true or false, got " + type_name(*v));
        return v->get<bool>();
    }

    [[noreturn]] void fail(std::string_view key, const std::string& problem) const {
        throw InvalidRequest(path_of(key), problem);
    }

private:
    const json& m_obj;
    std::string m_path;
};

bool has_control_chars(std::string_view s) {
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

/// The value as quoted in a message: valid UTF-8 and at most about 80 bytes.
std::string excerpt(std::string_view s) {
    constexpr std::size_t kMax = 80;
    return "\"" + utf8_prefix(s, kMax) + (s.size() > kMax ? "...\"" : "\"");
}

/// Checks the form of an asset reference: an http(s) URL, or an absolute path,
/// plain or as a file URL (a relative path has no directory it could be relative
/// to). Whether a path is inside ASSET_ROOTS is the fetcher's decision.
std::string source(const Fields& f, std::string_view key) {
    auto s = f.string(key, kMaxSourceChars);
    if (!s)
        return {};
    if (s->empty())
        f.fail(key, "must not be empty");
    if (has_control_chars(*s))
        f.fail(key, "must not contain control characters");
    auto colon = s->find("://");
    if (colon != std::string::npos) {
        std::string scheme = s->substr(0, colon);
        for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (scheme != "http" && scheme != "https" && scheme != "file") {
            f.fail(key, "unsupported URL scheme '" + utf8_prefix(scheme, 20) +
                            "' (use http, https, file or a path)");
        }
        if (s->size() == colon + 3)
            f.fail(key, "URL has nothing after the scheme");
        std::string_view rest = std::string_view(*s).substr(colon + 3);
        if (rest.substr(0, 9) == "localhost")
            rest.remove_prefix(9);
        if (scheme == "file" && (rest.empty() || rest.front() != '/')) {
            f.fail(key, "file URL must name an absolute path on this host (file:///path), "
                        "got " + excerpt(*s));
        }
    } else if (s->front() != '/') {
        f.fail(key, "must be an absolute path or an http, https or file URL, got " + excerpt(*s));
    }
    return *s;
}

TextPosition parse_position(const Fields& f, std::string_view key) {
    auto s = f.string(key, 16);
    if (!s || *s == "center")
        return TextPosition::Center;
    if (*s == "top")
        return TextPosition::Top;
    if (*s == "bottom")
        return TextPosition::Bottom;
    f.fail(key, "must be center, top or bottom, got \"" + *s + "\"");
}

/// The context av_parse_color logs through. Its log_level_offset moves the
/// parser's complaints beyond AV_LOG_TRACE, so neither FFmpeg's default logger
/// nor the renderer's bridge prints them; the caller words the error itself.
struct QuietLogContext {
    const AVClass* av_class;
    int log_level_offset;
};

const AVClass kQuietClass = {
    .class_name = "colour check",
    .item_name = av_default_item_name,
    .option = nullptr,
    .version = LIBAVUTIL_VERSION_INT,
    .log_level_offset_offset = offsetof(QuietLogContext, log_level_offset),
};

/// True for what drawtext's fontcolor accepts: av_opt_set parses that option
/// with this same function (names, [#|0x]RRGGBB[AA], "@alpha", "random").
bool is_ffmpeg_color(const std::string& s) {
    // AV_LOG_ERROR + 200 is beyond AV_LOG_TRACE and still within the low byte
    // that FFmpeg's default logger compares with its level.
    QuietLogContext quiet{&kQuietClass, 200};
    std::uint8_t rgba[4];
    return av_parse_color(rgba, s.c_str(), -1, &quiet) >= 0;
}

std::optional<TextOverlay> parse_text(const Fields& scene, const RequestLimits& limits) {
    const json* v = scene.find("text");
    if (!v)
        return std::nullopt;
    if (!v->is_object())
        scene.fail("text", "must be an object, got " + type_name(*v));
    Fields f(*v, scene.path_of("text"));

    TextOverlay text;
    auto content = f.string("content", limits.max_text_chars);
    if (!content)
        f.fail("content", "is required");
    if (content->empty())
        f.fail("content", "must not be empty");
    text.content = *content;
    text.position = parse_position(f, "position");
    text.fontsize = f.integer_in("fontsize", kMinFontsize, limits.max_fontsize).value_or(36);
    if (auto color = f.string("color", 32)) {
        if (has_control_chars(*color))
            f.fail("color", "must not contain control characters");
        if (!is_ffmpeg_color(*color)) {
            f.fail("color",
                   "must be a colour name, #RRGGBB or 0xRRGGBB (optionally with @alpha), got " +
                       excerpt(*color));
        }
        text.color = *color;
    }
    return text;
}

Scene parse_scene(const json& v, const std::string& path, const RequestLimits& limits,
                  bool global_narration) {
    if (!v.is_object())
        throw InvalidRequest(path, "must be an object, got " + type_name(v));
    Fields f(v, path);
    Scene scene;

    auto type = f.string("type", 16);
    if (!type)
        f.fail("type", "is required (image or video)");
    if (*type == "image") {
        scene.type = SceneType::Image;
    } else if (*type == "video") {
        scene.type = SceneType::Video;
    } else {
        f.fail("type", "must be image or video, got \"" + utf8_prefix(*type, 16) + "\"");
    }

    scene.image = source(f, "image");
    if (auto prompt = f.string("promptImage", kMaxPromptChars)) {
        if (prompt->empty())
            f.fail("promptImage", "must not be empty");
        scene.prompt_image = *prompt;
    }
    scene.video = source(f, "video");
    scene.narration = source(f, "narration");
    if (auto text = f.string("narration_text", limits.max_narration_chars)) {
        scene.narration_text = *text;
    }
    scene.music = source(f, "music");

    if (scene.type == SceneType::Image) {
        if (!scene.video.empty())
            f.fail("video", "is not used by an image scene");
        if (!scene.image.empty() && !scene.prompt_image.empty()) {
            f.fail("promptImage", "cannot be combined with image; give one of them");
        }
        if (scene.image.empty() && scene.prompt_image.empty()) {
            f.fail("image", "is required for an image scene (or give promptImage)");
        }
    } else {
        if (!scene.image.empty())
            f.fail("image", "is not used by a video scene");
        if (!scene.prompt_image.empty())
            f.fail("promptImage", "is not used by a video scene");
        if (scene.video.empty())
            f.fail("video", "is required for a video scene");
    }

    if (!scene.narration.empty() && !scene.narration_text.empty()) {
        f.fail("narration_text", "cannot be combined with narration; give one of them");
    }
    if (global_narration && (!scene.narration.empty() || !scene.narration_text.empty())) {
        f.fail(scene.narration.empty() ? "narration_text" : "narration",
               "cannot be used together with the top-level narration_text");
    }

    scene.duration =
        f.number_in("duration", limits.min_scene_duration, limits.max_scene_duration, " seconds");
    bool narrated = global_narration || !scene.narration.empty() || !scene.narration_text.empty();
    if (!scene.duration && scene.type == SceneType::Image && !narrated) {
        f.fail("duration", "is required for an image scene without narration");
    }

    scene.text = parse_text(f, limits);
    scene.subtitle = f.boolean("subtitle").value_or(false);
    return scene;
}

void check_output_filename(const Fields& f, const std::string& name) {
    if (name.empty())
        f.fail("output_filename", "must not be empty");
    if (has_control_chars(name) || name.find('/') != std::string::npos ||
        name.find('\\') != std::string::npos) {
        f.fail("output_filename",
               "must be a plain file name without '/', '\\' or control "
               "characters");
    }
    if (name.front() == '.')
        f.fail("output_filename", "must not start with '.'");
}

int even_side(const Fields& f, std::string_view key, int fallback, const RequestLimits& limits) {
    auto side = f.integer_in(key, limits.min_side, limits.max_side);
    if (!side)
        return fallback;
    if (*side % 2 != 0)
        f.fail(key, fmt::format("must be an even number, got {}", *side));
    return *side;
}

bool is_voice_name(std::string_view s) {
    if (s.empty())
        return false;
    for (char c : s) {
        bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '+' ||
                  c == '/';
        if (!ok)
            return false;
    }
    return true;
}

void parse_options(const Fields& f, Request& req, const RequestLimits& limits) {
    req.width = even_side(f, "width", req.width, limits);
    req.height = even_side(f, "height", req.height, limits);
    req.fps = f.integer_in("fps", 1, limits.max_fps).value_or(req.fps);
    req.zoom = f.number_in("zoom", 1.0, kMaxZoom).value_or(req.zoom);
    req.darken = f.number_in("darken", 0.0, 1.0).value_or(req.darken);
    req.crossfade =
        f.number_in("crossfade", 0.0, kMaxCrossfade, " seconds").value_or(req.crossfade);
    req.music_volume = f.number_in("music_volume", 0.0, kMaxMusicVolume).value_or(req.music_volume);
    if (auto voice = f.string("voice", 40)) {
        if (!is_voice_name(*voice)) {
            f.fail("voice", "must be an espeak-ng voice name (letters, digits, - _ + /)");
        }
        req.voice = *voice;
    }
}

/// Checks what can be checked of the timeline before narration is known:
/// crossfades must be shorter than the scenes they join, and the explicit
/// durations must fit the total budget.
void check_timeline(const Request& req, const RequestLimits& limits) {
    double total = 0;
    for (std::size_t i = 0; i < req.scenes.size(); ++i) {
        const auto& d = req.scenes[i].duration;
        if (!d)
            continue;
        total += *d;
        if (req.scenes.size() > 1 && req.crossfade >= *d) {
            throw InvalidRequest("crossfade",
                                 fmt::format("must be shorter than every scene, but scenes[{}] "
                                             "lasts {} seconds and crossfade is {}",
                                             i, *d, req.crossfade));
        }
    }
    double joins = req.crossfade * static_cast<double>(req.scenes.size() - 1);
    double length = total - joins;
    if (length > limits.max_total_duration) {
        throw InvalidRequest("scenes",
                             fmt::format("total duration must be at most {} seconds, got {}",
                                         limits.max_total_duration, length));
    }
}

}  // namespace

namespace {

double env_number(const char* name, double fallback, double lo, double hi) {
    const char* raw = std::getenv(name);
    if (!raw || !*raw)
        return fallback;
    char* end = nullptr;
    double v = std::strtod(raw, &end);
    if (*end != '\0' || !std::isfinite(v) || v < lo || v > hi) {
        throw std::runtime_error(
            fmt::format("environment variable {} must be a number between "
                        "{} and {}, got \"{}\"",
                        name, lo, hi, raw));
    }
    return v;
}

}  // namespace

RequestLimits limits_from_env() {
    RequestLimits l;
    l.max_scenes = static_cast<int>(env_number("MAX_SCENES", l.max_scenes, 1, 10000));
    l.min_scene_duration = env_number("MIN_SCENE_DURATION", l.min_scene_duration, 0.04, 3600);
    l.max_scene_duration =
        env_number("MAX_SCENE_DURATION", l.max_scene_duration, l.min_scene_duration, 86400);
    l.max_total_duration = env_number("MAX_TOTAL_DURATION", l.max_total_duration, 1, 86400);
    l.max_side = static_cast<int>(env_number("MAX_OUTPUT_SIDE", l.max_side, l.min_side, 16384));
    l.max_fps = static_cast<int>(env_number("MAX_FPS", l.max_fps, 1, 240));
    l.max_fontsize = static_cast<int>(env_number("MAX_FONTSIZE", l.max_fontsize, 8, 2000));
    l.max_text_chars = static_cast<std::size_t>(
        env_number("MAX_TEXT_CHARS", static_cast<double>(l.max_text_chars), 1, 1e6));
    l.max_narration_chars = static_cast<std::size_t>(
        env_number("MAX_NARRATION_CHARS", static_cast<double>(l.max_narration_chars), 1, 1e7));
    return l;
}

Request parse_request(const nlohmann::json& body, const RequestLimits& limits) {
    if (!body.is_object()) {
        throw InvalidRequest("request", "must be a JSON object, got " + type_name(body));
    }
    Fields top(body, "");
    Request req;

    if (auto name = top.string("output_filename", kMaxFilenameChars)) {
        check_output_filename(top, *name);
        req.output_filename = *name;
    }
    if (auto text = top.string("narration_text", limits.max_narration_chars)) {
        req.narration_text = *text;
    }
    parse_options(top, req, limits);

    const json* scenes = top.find("scenes");
    if (!scenes)
        top.fail("scenes", "is required (a list of scenes)");
    if (!scenes->is_array())
        top.fail("scenes", "must be an array, got " + type_name(*scenes));
    if (scenes->empty())
        top.fail("scenes", "must contain at least one scene");
    if (scenes->size() > static_cast<std::size_t>(limits.max_scenes)) {
        top.fail("scenes", fmt::format("must contain at most {} scene{}, got {}", limits.max_scenes,
                                       limits.max_scenes == 1 ? "" : "s", scenes->size()));
    }
    bool global_narration = !req.narration_text.empty();
    for (std::size_t i = 0; i < scenes->size(); ++i) {
        req.scenes.push_back(
            parse_scene((*scenes)[i], fmt::format("scenes[{}]", i), limits, global_narration));
    }
    check_timeline(req, limits);
    return req;
}

}  // namespace pv
