// SPDX-License-Identifier: MIT
// The ProtoVideo request model and its validation, shared by the renderer and the
// operator tool so that both refuse the same requests with the same message.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace pv {

/// Thrown by parse_request: `field` is the JSON path ("scenes[2].duration").
class InvalidRequest : public std::runtime_error {
public:
    InvalidRequest(std::string field, const std::string& problem)
        : std::runtime_error(field + ": " + problem), m_field(std::move(field)) {}
    const std::string& field() const { return m_field; }

private:
    std::string m_field;
};

enum class TextPosition { Center, Top, Bottom };

struct TextOverlay {
    std::string content;
    TextPosition position = TextPosition::Center;
    int fontsize = 36;
    std::string color = "white";  // CSS-like name or #RRGGBB
};

enum class SceneType { Image, Video };

struct Scene {
    SceneType type = SceneType::Image;
    std::string image;         // URL or path (image scenes)
    std::string prompt_image;  // text prompt for the images API
    std::string video;         // URL or path (video scenes)
    std::string narration;     // audio URL or path
    std::string narration_text;
    std::string music;  // audio URL or path
    /// Seconds, fractional allowed. Required for an image scene unless the scene
    /// has narration or narration_text, or the request has a global
    /// narration_text; then the narration decides the length. Optional for a
    /// video scene (the clip's own length).
    std::optional<double> duration;
    std::optional<TextOverlay> text;
    bool subtitle = false;
};

/// Limits applied by validation. Defaults are documented in the README; the
/// renderer reads overrides from the environment (see limits_from_env).
struct RequestLimits {
    int max_scenes = 50;
    double min_scene_duration = 0.5;
    double max_scene_duration = 120;
    double max_total_duration = 600;
    int min_side = 64;
    int max_side = 4096;
    int max_fps = 60;
    int max_fontsize = 400;
    std::size_t max_text_chars = 2000;
    std::size_t max_narration_chars = 10000;
};

/// Reads MAX_SCENES, MIN_SCENE_DURATION, MAX_SCENE_DURATION, MAX_TOTAL_DURATION,
/// MAX_OUTPUT_SIDE, MAX_FPS, MAX_FONTSIZE, MAX_TEXT_CHARS and MAX_NARRATION_CHARS;
/// unset or empty means the default. Throws std::runtime_error naming a
/// variable whose value is not a number in range.
RequestLimits limits_from_env();

struct Request {
    std::string output_filename;
    std::string narration_text;  // global narration
    std::vector<Scene> scenes;

    // Our optional additions (documented in the README).
    int width = 1080;
    int height = 1920;
    int fps = 24;
    double zoom = 1.5;          // final zoom factor of the Ken Burns effect
    double darken = 0.5;        // brightness multiplier for image scenes
    double crossfade = 1.0;     // seconds per join
    double music_volume = 0.3;  // music gain under the narration
    std::string voice = "en";   // espeak-ng voice name
};

/// Parses and validates; throws InvalidRequest naming the field at fault, e.g.
/// "scenes[2].duration: must be between 0.5 and 120 seconds, got 1000".
/// Unknown fields are ignored and null counts as absent, as in the original
/// service. image/promptImage, narration/narration_text are each exclusive, and
/// per-scene narration cannot be combined with the global narration_text.
/// The total checked here covers explicit durations only; lengths that come
/// from narration are checked by the renderer once the audio is known.
Request parse_request(const nlohmann::json& body, const RequestLimits& limits = {});

}  // namespace pv
