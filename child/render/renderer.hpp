// SPDX-License-Identifier: MIT
// The render pipeline's entry point: one request whose assets are already on
// local disk in, one finished MP4 out. Raw FFmpeg types never cross this header.
#pragma once

#include "request.hpp"

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace pv {

/// A failure the renderer reports to the supervisor: error_type is one of
/// invalid_request, asset, encoding, io, internal; the message names the scene
/// and asset concerned ("scenes[1].image (Storm.jpg): ...").
class RenderError : public std::runtime_error {
public:
    RenderError(std::string error_type, const std::string& message, bool retryable = false)
        : std::runtime_error(message), m_type(std::move(error_type)), m_retryable(retryable) {}
    const std::string& error_type() const { return m_type; }
    bool retryable() const { return m_retryable; }

private:
    std::string m_type;
    bool m_retryable;
};

/// Local files for one scene, after downloading (empty = not used).
struct SceneFiles {
    std::string image;  // image or generated promptImage
    std::string video;
    std::string narration;  // audio file
    std::string music;      // audio file
};

struct RenderJob {
    Request request;                // validated
    std::vector<SceneFiles> files;  // one per request.scenes entry
    std::string work_dir;           // scratch space (narration WAVs, etc.)
    std::string output_path;        // final MP4 path to write (a temp name; caller renames)
    std::string poster_path;        // JPEG of the first frame ("" = none)
    std::string font_path;          // resolved at startup (absolute)
    std::string x264_preset = "veryfast";
    int crf = 23;
    /// Lengths the request's limits allow once narration has set the scene
    /// lengths (validation can only check the durations written in it).
    double max_scene_seconds = 120;
    double max_total_seconds = 600;
    /// Called with (percent 0..100, stage) as work advances.
    std::function<void(double, const std::string&)> on_progress;
};

struct RenderResult {
    double duration = 0;  // seconds, from the muxed streams
    long frames = 0;      // video frames encoded
    int width = 0;
    int height = 0;
    double fps = 0;
    /// Per scene: its length on the timeline in seconds (whole frames,
    /// crossfades included) and the length of its narration (0 = none).
    std::vector<double> scene_seconds;
    std::vector<double> narration_seconds;
    double global_narration_seconds = 0;  // 0 = no global narration
};

/// Renders the job. Throws RenderError for every expected failure.
RenderResult render(const RenderJob& job);

/// Finds the default font file (DejaVu Sans Bold or similar) from Debian font
/// packages; throws std::runtime_error naming what is missing.
std::string resolve_default_font();

}  // namespace pv
