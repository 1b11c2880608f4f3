// SPDX-License-Identifier: MIT
// pv::render: plans the timeline (scene lengths from narration, crossfades),
// mixes the whole soundtrack, then pulls every output frame through the scene
// sources and encodes it once. At most two scenes hold decoded pictures at a
// time (during a crossfade).
#include "renderer.hpp"

#include "audio_mix.hpp"
#include "av_log_bridge.hpp"
#include "av_ptr.hpp"
#include "image_probe.hpp"
#include "image_source.hpp"
#include "muxer.hpp"
#include "narration.hpp"
#include "subtitles.hpp"
#include "text_overlay.hpp"
#include "video_source.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace pv {
namespace {

constexpr double kDefaultImageSeconds = 5.0;
constexpr double kNarrationTextTail = 1.5;    // silence after synthesised narration
constexpr double kGlobalNarrationTail = 0.2;  // after a global narration
constexpr int kSubtitleFontsize = 50;         // at 1080 wide
constexpr int kGlobalSubtitleFontsize = 60;

// ----- error labels ------------------------------------------------------

// The asset's file name as the user knows it: the last path element of the
// request's URL or path without its query, or the local file name.
std::string asset_name(const std::string& reference, const std::string& local) {
    std::string s = reference.empty() ? local : reference;
    s = s.substr(0, s.find_first_of("?#"));
    while (!s.empty() && s.back() == '/') s.pop_back();
    auto slash = s.find_last_of('/');
    s = slash == std::string::npos ? s : s.substr(slash + 1);
    return s.empty() ? local : s;
}

std::string scene_label(std::size_t i, const char* field, const std::string& reference,
                        const std::string& local) {
    return "scenes[" + std::to_string(i) + "]." + field + " (" + asset_name(reference, local) + ")";
}

// Runs `fn`; any failure that is not already a RenderError becomes an asset
// error naming `label`.
template <class Fn>
auto as_asset(const std::string& label, Fn&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const RenderError&) {
        throw;
    } catch (const std::bad_alloc&) {
        throw RenderError("internal", label + ": out of memory");
    } catch (const std::exception& e) {
        throw RenderError("asset", label + ": " + e.what());
    }
}

template <class Fn>
auto as_encoding(Fn&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const RenderError&) {
        throw;
    } catch (const std::bad_alloc&) {
        throw RenderError("internal", "encoder: out of memory");
    } catch (const std::exception& e) {
        throw RenderError("encoding", std::string("encoder: ") + e.what());
    }
}

// ----- progress ----------------------------------------------------------

class Progress {
public:
    explicit Progress(const RenderJob& job) : m_job(job) {}
    void report(double percent, const std::string& stage) {
        if (!m_job.on_progress)
            return;
        percent = std::clamp(percent, 0.0, 100.0);
        if (stage == m_stage && percent < m_last + 1.0 && percent < 100.0)
            return;
        m_stage = stage;
        m_last = percent;
        m_job.on_progress(percent, stage);
    }

private:
    const RenderJob& m_job;
    std::string m_stage;
    double m_last = -100;
};

// ----- the plan ----------------------------------------------------------

struct ScenePlan {
    long start = 0;                        // first output frame
    long frames = 0;                       // length in output frames
    std::optional<Speech> speech;          // from narration_text
    std::optional<AudioBuffer> narration;  // from a narration file
};

struct Plan {
    int width = 0;
    int height = 0;
    int fps = 0;
    long crossfade = 0;  // frames per join
    long total = 0;      // output frames
    std::vector<ScenePlan> scenes;
    std::optional<Speech> global_speech;
};

long seconds_to_frames(double s, int fps) {
    // Round up so a scene never ends before its narration; the epsilon keeps
    // exact values (3 s at 24 fps) from rounding up by a whole frame.
    return std::max(1L, static_cast<long>(std::ceil(s * fps - 1e-6)));
}

long frames_to_samples(long frames, int fps) {
    return static_cast<long>(std::llround(static_cast<double>(frames) * kSampleRate / fps));
}

// Speech and narration files, with "narration" stage progress.
void load_narration(const RenderJob& job, Plan& plan, Progress& progress) {
    const Request& req = job.request;
    std::size_t tts_total = req.narration_text.empty() ? 0 : 1;
    for (const Scene& s : req.scenes) tts_total += s.narration_text.empty() ? 0 : 1;
    std::size_t tts_done = 0;
    auto tts = [&](const std::string& text, const std::string& label) {
        auto report = [&](double f) {
            progress.report((tts_done + f) * 100.0 / std::max<std::size_t>(1, tts_total),
                            "narration");
        };
        Speech speech;
        try {
            speech = synthesize(text, req.voice, report);
        } catch (const std::exception& e) {
            throw RenderError("internal", label + ": " + e.what());
        }
        ++tts_done;
        return speech;
    };

    if (!req.narration_text.empty())
        plan.global_speech = tts(req.narration_text, "narration_text");
    for (std::size_t i = 0; i < req.scenes.size(); ++i) {
        const Scene& scene = req.scenes[i];
        const SceneFiles& files = job.files[i];
        if (!scene.narration_text.empty()) {
            plan.scenes[i].speech =
                tts(scene.narration_text, "scenes[" + std::to_string(i) + "].narration_text");
        } else if (!files.narration.empty()) {
            plan.scenes[i].narration =
                as_asset(scene_label(i, "narration", scene.narration, files.narration),
                         [&] { return decode_audio(files.narration); });
        }
    }
}

// Scene lengths. Rules, in order:
//  - a global narration sets every scene to the same length so that the
//    scenes minus the crossfades cover it plus 0.2 s (explicit durations are
//    replaced);
//  - a scene with narration_text lasts its speech plus 1.5 s;
//  - a scene with a narration file lasts its explicit duration, stretched
//    when the narration is longer (to the narration plus one crossfade, so
//    the voice is not faded out); without a duration it lasts the narration
//    plus one crossfade;
//  - otherwise the explicit duration, else the video clip's length, else 5 s.
void plan_durations(const RenderJob& job, Plan& plan) {
    const Request& req = job.request;
    const std::size_t n = req.scenes.size();
    const double fade = std::max(0.0, req.crossfade);
    std::vector<double> seconds(n);
    for (std::size_t i = 0; i < n; ++i) {
        const Scene& scene = req.scenes[i];
        const SceneFiles& files = job.files[i];
        ScenePlan& sp = plan.scenes[i];
        const double tail = i + 1 < n ? fade : 0.0;
        double d = 0;
        if (sp.speech) {
            d = sp.speech->audio.seconds() + kNarrationTextTail;
        } else if (sp.narration) {
            double need = sp.narration->seconds() + tail;
            d = scene.duration ? std::max(*scene.duration, need) : need;
        } else if (scene.duration) {
            d = *scene.duration;
        } else if (scene.type == SceneType::Video && !files.video.empty()) {
            d = as_asset(scene_label(i, "video", scene.video, files.video),
                         [&] { return VideoSource::measure_duration(files.video); });
        } else {
            d = kDefaultImageSeconds;
        }
        seconds[i] = std::max(d, 1.0 / plan.fps);
    }
    if (plan.global_speech) {
        double even = (plan.global_speech->audio.seconds() + kGlobalNarrationTail +
                       fade * static_cast<double>(n - 1)) /
                      static_cast<double>(n);
        for (std::size_t i = 0; i < n; ++i) {
            // A scene's own narration may still need more time.
            bool own = plan.scenes[i].speech || plan.scenes[i].narration;
            seconds[i] = own ? std::max(seconds[i], even) : even;
        }
    }

    long min_frames = std::numeric_limits<long>::max();
    for (std::size_t i = 0; i < n; ++i) {
        plan.scenes[i].frames = seconds_to_frames(seconds[i], plan.fps);
        min_frames = std::min(min_frames, plan.scenes[i].frames);
    }
    // A crossfade never takes more than half of the shortest scene, so at most
    // two scenes overlap at any instant.
    plan.crossfade =
        n > 1 ? std::min(static_cast<long>(std::lround(fade * plan.fps)), min_frames / 2) : 0;
    long start = 0;
    for (std::size_t i = 0; i < n; ++i) {
        plan.scenes[i].start = start;
        start += plan.scenes[i].frames - plan.crossfade;
    }
    plan.total = start + plan.crossfade;
}

// Narration decides some scene lengths, so the request's limits are checked
// again on the planned timeline.
void check_planned_lengths(const RenderJob& job, const Plan& plan) {
    for (std::size_t i = 0; i < plan.scenes.size(); ++i) {
        double seconds = static_cast<double>(plan.scenes[i].frames) / plan.fps;
        if (seconds > job.max_scene_seconds + 1e-9) {
            throw RenderError(
                "invalid_request",
                fmt::format("scenes[{}]: with its narration the scene lasts {:.1f} s, "
                            "more than the {:g} s allowed (MAX_SCENE_DURATION)",
                            i, seconds, job.max_scene_seconds));
        }
    }
    double total = static_cast<double>(plan.total) / plan.fps;
    if (total > job.max_total_seconds + 1e-9) {
        throw RenderError("invalid_request",
                          fmt::format("scenes: with the narration the video lasts {:.1f} s, more "
                                      "than the {:g} s allowed (MAX_TOTAL_DURATION)",
                                      total, job.max_total_seconds));
    }
}

// The soundtrack: narration at full level from each scene's start, music at
// music_volume over each scene with the crossfade ramps, the global narration
// from the start. Samples are added with fixed gains (no renormalisation).
AudioMix mix_audio(const RenderJob& job, const Plan& plan) {
    const Request& req = job.request;
    // Limitation: the whole soundtrack is held as float samples (about 23 MB
    // per minute of output) rather than mixed in a streaming pass.
    AudioMix mix(frames_to_samples(plan.total, plan.fps));
    const long fade = frames_to_samples(plan.crossfade, plan.fps);
    const std::size_t n = req.scenes.size();
    for (std::size_t i = 0; i < n; ++i) {
        const ScenePlan& sp = plan.scenes[i];
        const long at = frames_to_samples(sp.start, plan.fps);
        const long len = frames_to_samples(sp.frames, plan.fps);
        if (sp.speech)
            mix.add(sp.speech->audio, at, len, 1.0);
        if (sp.narration)
            mix.add(*sp.narration, at, len, 1.0);

        const SceneFiles& files = job.files[i];
        if (!files.music.empty()) {
            const double seconds = static_cast<double>(len) / kSampleRate;
            AudioBuffer music = as_asset(scene_label(i, "music", req.scenes[i].music, files.music),
                                         [&] { return decode_audio(files.music, seconds); });
            // Limitation: music shorter than its scene is not looped; silence follows it.
            mix.add(music, at, len, req.music_volume, i > 0 ? fade : 0, i + 1 < n ? fade : 0);
        }
    }
    if (plan.global_speech)
        mix.add(plan.global_speech->audio, 0, mix.frames(), 1.0);
    mix.limit();
    return mix;
}

// ----- text --------------------------------------------------------------

std::vector<TextItem> overlay_items(const TextOverlay& text, int w, int h) {
    const double scale = w / 1080.0;
    TextItem base;
    base.fontsize = std::max(6, static_cast<int>(std::lround(text.fontsize * scale)));
    base.color = text.color.empty() ? "white" : text.color;
    const int margin = static_cast<int>(std::lround(60 * scale));
    std::vector<std::string> lines = wrap_text(text.content, base.fontsize, w - 2 * margin);
    const int line_h = static_cast<int>(std::lround(base.fontsize * 1.25));
    const int block_h = line_h * static_cast<int>(lines.size());
    int top = 0;
    switch (text.position) {
        case TextPosition::Top:
            top = static_cast<int>(std::lround(0.1 * h));
            break;
        case TextPosition::Bottom:
            top = static_cast<int>(std::lround(0.9 * h)) - block_h;
            break;
        case TextPosition::Center:
            top = (h - block_h) / 2;
            break;
    }
    std::vector<TextItem> items;
    for (std::size_t k = 0; k < lines.size(); ++k) {
        TextItem item = base;
        item.text = lines[k];
        item.y = top + line_h * static_cast<int>(k);
        items.push_back(std::move(item));
    }
    return items;
}

// ----- frames ------------------------------------------------------------

// Blends `in` into `out` with weight w/256 for `in` (all three planes).
void blend(AVFrame& out, const AVFrame& in, int w) {
    av_check(av_frame_make_writable(&out), "blend");
    for (int p = 0; p < 3; ++p) {
        int rows = p == 0 ? out.height : out.height / 2;
        int cols = p == 0 ? out.width : out.width / 2;
        for (int y = 0; y < rows; ++y) {
            std::uint8_t* o = out.data[p] + static_cast<std::ptrdiff_t>(y) * out.linesize[p];
            const std::uint8_t* s = in.data[p] + static_cast<std::ptrdiff_t>(y) * in.linesize[p];
            for (int x = 0; x < cols; ++x)
                o[x] = static_cast<std::uint8_t>((o[x] * (256 - w) + s[x] * w + 128) >> 8);
        }
    }
}

// Pictures of one scene, with its text overlay and captions drawn on.
class SceneStream {
public:
    SceneStream(const RenderJob& job, const Plan& plan, std::size_t index, const std::string& font)
        : m_index(index) {
        const Scene& scene = job.request.scenes[index];
        const SceneFiles& files = job.files[index];
        if (scene.type == SceneType::Video) {
            m_label = scene_label(index, "video", scene.video, files.video);
            if (files.video.empty())
                throw RenderError("asset", m_label + ": no file");
            m_video = as_asset(m_label, [&] {
                return std::make_unique<VideoSource>(files.video, plan.width, plan.height,
                                                     plan.fps);
            });
        } else {
            const bool generated = scene.image.empty() && !scene.prompt_image.empty();
            m_label = generated ? scene_label(index, "promptImage", "", files.image)
                                : scene_label(index, "image", scene.image, files.image);
            if (files.image.empty())
                throw RenderError("asset", m_label + ": no file");
            ImageSceneParams params{plan.width, plan.height, job.request.zoom, job.request.darken,
                                    plan.scenes[index].frames};
            m_image = as_asset(m_label,
                               [&] { return std::make_unique<ImageSource>(files.image, params); });
        }

        std::vector<TextItem> items;
        if (scene.text && !scene.text->content.empty()) {
            items = overlay_items(*scene.text, plan.width, plan.height);
        }
        const ScenePlan& sp = plan.scenes[index];
        // Limitation: captions need espeak's word timings, so a scene whose
        // narration is an audio file gets no captions.
        if (scene.subtitle && sp.speech) {
            auto lines = make_captions(sp.speech->words, 0.0);
            auto caps = caption_items(lines, plan.width, plan.height, kSubtitleFontsize);
            items.insert(items.end(), caps.begin(), caps.end());
        }
        if (!items.empty()) {
            std::string where = "scenes[" + std::to_string(index) + "].text";
            try {
                m_text =
                    std::make_unique<TextPainter>(plan.width, plan.height, plan.fps, font, items);
            } catch (const std::exception& e) {
                throw RenderError("internal", where + ": " + e.what());
            }
        }
    }

    FramePtr next() {
        FramePtr f =
            as_asset(m_label, [&] { return m_image ? m_image->frame(m_k) : m_video->next(); });
        f->pts = m_k++;
        if (m_text) {
            try {
                f = m_text->apply(std::move(f));
            } catch (const std::exception& e) {
                throw RenderError("internal",
                                  "scenes[" + std::to_string(m_index) + "].text: " + e.what());
            }
        }
        return f;
    }

private:
    std::size_t m_index;
    std::string m_label;
    std::unique_ptr<ImageSource> m_image;
    std::unique_ptr<VideoSource> m_video;
    std::unique_ptr<TextPainter> m_text;
    long m_k = 0;
};

// Captions for a global narration, on the whole timeline, shown while a scene
// with subtitle=true is on screen.
std::unique_ptr<TextPainter> global_captions(const RenderJob& job, const Plan& plan,
                                             const std::string& font) {
    if (!plan.global_speech)
        return nullptr;
    std::vector<CaptionLine> shown;
    for (const CaptionLine& line : make_captions(plan.global_speech->words, 0.0)) {
        long frame = static_cast<long>(line.start * plan.fps);
        for (std::size_t i = 0; i < plan.scenes.size(); ++i) {
            const ScenePlan& sp = plan.scenes[i];
            if (job.request.scenes[i].subtitle && frame >= sp.start &&
                frame < sp.start + sp.frames) {
                shown.push_back(line);
                break;
            }
        }
    }
    if (shown.empty())
        return nullptr;
    auto items = caption_items(shown, plan.width, plan.height, kGlobalSubtitleFontsize);
    try {
        return std::make_unique<TextPainter>(plan.width, plan.height, plan.fps, font, items);
    } catch (const std::exception& e) {
        throw RenderError("internal", std::string("subtitles: ") + e.what());
    }
}

// PROTOVIDEO_RAW_FRAMES names a file that receives every frame sent to the
// encoder as raw yuv420p, so that a benchmark can time x264 alone on exactly
// the frames we encode (bench/render.sh). Unset: nothing is written.
class RawFrameDump {
public:
    RawFrameDump() {
        if (const char* path = std::getenv("PROTOVIDEO_RAW_FRAMES"); path && *path) {
            m_out.open(path, std::ios::binary | std::ios::trunc);
            if (!m_out)
                throw std::runtime_error(std::string("cannot create ") + path);
        }
    }
    void write(const AVFrame& f) {
        if (!m_out.is_open())
            return;
        for (int p = 0; p < 3; ++p) {
            const int rows = p == 0 ? f.height : f.height / 2;
            const int cols = p == 0 ? f.width : f.width / 2;
            for (int y = 0; y < rows; ++y) {
                m_out.write(reinterpret_cast<const char*>(f.data[p]) +
                                static_cast<std::ptrdiff_t>(y) * f.linesize[p],
                            cols);
            }
        }
        if (!m_out)
            throw std::runtime_error("cannot write PROTOVIDEO_RAW_FRAMES");
    }

private:
    std::ofstream m_out;
};

// Output frames composed on a thread of their own, in order, at most
// `capacity` ahead of the encoder: zooms, blends and text are drawn while
// libx264 encodes the frames before. A failure while composing reaches the
// encoder's side from next(), after the frames composed before it.
class FramePipeline {
public:
    using Compose = std::function<FramePtr(long)>;

    FramePipeline(long total, std::size_t capacity, Compose compose)
        : m_capacity(capacity),
          m_compose(std::move(compose)),
          m_thread([this, total] { run(total); }) {}

    FramePipeline(const FramePipeline&) = delete;
    FramePipeline& operator=(const FramePipeline&) = delete;

    ~FramePipeline() {
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_stopped = true;
        }
        m_cv.notify_all();
        m_thread.join();
    }

    /// The next frame; rethrows what stopped the composer.
    FramePtr next() {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_cv.wait(lock, [&] { return !m_ready.empty() || m_error || m_done; });
        if (m_ready.empty()) {
            if (m_error)
                std::rethrow_exception(m_error);
            throw std::logic_error("frame pipeline: no more frames");
        }
        FramePtr f = std::move(m_ready.front());
        m_ready.pop_front();
        lock.unlock();
        m_cv.notify_all();
        return f;
    }

private:
    void run(long total) {
        try {
            for (long f = 0; f < total; ++f) {
                FramePtr frame = m_compose(f);
                std::unique_lock<std::mutex> lock(m_mutex);
                m_cv.wait(lock, [&] { return m_stopped || m_ready.size() < m_capacity; });
                if (m_stopped)
                    break;
                m_ready.push_back(std::move(frame));
                lock.unlock();
                m_cv.notify_all();
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_error = std::current_exception();
        }
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_done = true;
        }
        m_cv.notify_all();
    }

    const std::size_t m_capacity;
    const Compose m_compose;
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<FramePtr> m_ready;
    std::exception_ptr m_error;
    bool m_done = false;
    bool m_stopped = false;
    std::thread m_thread;  // last: starts once everything above exists
};

// Frames composed ahead of the encoder: two keep it fed through short stalls
// (a scene's photo is decoded on its first frame) for 2 x 3 MB at 1080x1920.
constexpr std::size_t kFramesAhead = 2;

RenderResult render_impl(const RenderJob& job) {
    const Request& req = job.request;
    if (req.scenes.empty())
        throw RenderError("invalid_request", "scenes: no scenes");
    if (job.files.size() != req.scenes.size()) {
        throw RenderError("internal", "render job has " + std::to_string(job.files.size()) +
                                          " file sets for " + std::to_string(req.scenes.size()) +
                                          " scenes");
    }
    if (req.width < 2 || req.height < 2 || req.fps < 1) {
        throw RenderError("invalid_request", "width, height and fps must be positive");
    }
    Progress progress(job);
    Plan plan;
    // yuv420p needs even sides: validation refuses odd ones, and a caller that
    // skips validation gets them rounded down by one pixel.
    plan.width = req.width & ~1;
    plan.height = req.height & ~1;
    plan.fps = req.fps;
    plan.scenes.resize(req.scenes.size());
    const std::string font = job.font_path.empty() ? resolve_default_font() : job.font_path;

    load_narration(job, plan, progress);
    plan_durations(job, plan);
    check_planned_lengths(job, plan);
    // A truncated or mislabelled photo fails now, not when its scene is reached.
    for (std::size_t i = 0; i < req.scenes.size(); ++i) {
        const std::string& image = job.files[i].image;
        if (req.scenes[i].type == SceneType::Image && !image.empty()) {
            as_asset(scene_label(i, "image", req.scenes[i].image, image),
                     [&] { probe_image_header(image); });
        }
    }

    // Composition starts now, so the first photo is decoded while the music
    // is mixed and the encoder opened. Its errors surface from next(), after
    // those of the soundtrack and the encoder, in the order of a serial run.
    std::unique_ptr<TextPainter> captions;
    std::vector<std::unique_ptr<SceneStream>> streams(req.scenes.size());
    auto compose = [&](long f) {
        if (f == 0)
            captions = global_captions(job, plan, font);
        FramePtr frame;
        for (std::size_t i = 0; i < plan.scenes.size(); ++i) {
            const ScenePlan& sp = plan.scenes[i];
            if (f < sp.start || f >= sp.start + sp.frames)
                continue;
            if (!streams[i])
                streams[i] = std::make_unique<SceneStream>(job, plan, i, font);
            FramePtr mine = streams[i]->next();
            if (!frame) {
                frame = std::move(mine);
            } else {
                // The incoming scene's weight rises over the crossfade frames.
                long k = f - sp.start;
                int w = static_cast<int>((k + 1) * 256 / (plan.crossfade + 1));
                blend(*frame, *mine, w);
            }
            if (f == sp.start + sp.frames - 1)
                streams[i].reset();
        }
        frame->pts = f;
        if (captions)
            frame = captions->apply(std::move(frame));
        return frame;
    };
    FramePipeline pipeline(plan.total, kFramesAhead, compose);

    AudioMix mix = mix_audio(job, plan);
    EncoderSettings settings{plan.width, plan.height, plan.fps, job.x264_preset, job.crf};
    std::unique_ptr<Muxer> muxer =
        as_encoding([&] { return std::make_unique<Muxer>(job.output_path, settings); });

    RawFrameDump dump;
    FramePtr poster;
    long audio_sent = 0;
    progress.report(0, "render");
    for (long f = 0; f < plan.total; ++f) {
        FramePtr frame = pipeline.next();
        if (f == 0 && !job.poster_path.empty()) {
            poster = make_frame();
            av_check(av_frame_ref(poster.get(), frame.get()), "poster ref");
        }

        long audio_due = frames_to_samples(f + 1, plan.fps);
        as_encoding([&] {
            dump.write(*frame);
            muxer->write_video(*frame);
            muxer->write_audio(mix.data() + audio_sent * kChannels, audio_due - audio_sent);
        });
        audio_sent = audio_due;
        progress.report(static_cast<double>(f + 1) * 100.0 / plan.total, "render");
    }
    as_encoding([&] { muxer->finish(); });
    if (poster)
        as_encoding([&] { write_poster(*poster, job.poster_path); });

    RenderResult result;
    result.frames = muxer->video_frames();
    result.duration = std::max(static_cast<double>(result.frames) / plan.fps,
                               static_cast<double>(muxer->audio_samples()) / kSampleRate);
    result.width = plan.width;
    result.height = plan.height;
    result.fps = plan.fps;
    for (const ScenePlan& sp : plan.scenes) {
        result.scene_seconds.push_back(static_cast<double>(sp.frames) / plan.fps);
        result.narration_seconds.push_back(sp.speech      ? sp.speech->audio.seconds()
                                           : sp.narration ? sp.narration->seconds()
                                                          : 0.0);
    }
    if (plan.global_speech)
        result.global_narration_seconds = plan.global_speech->audio.seconds();
    return result;
}

void remove_quietly(const std::string& path) {
    if (path.empty())
        return;
    std::error_code ec;
    std::filesystem::remove(path, ec);
}

}  // namespace

RenderResult render(const RenderJob& job) {
    install_av_log_bridge();
    reset_av_log_budget();
    try {
        return render_impl(job);
    } catch (const RenderError&) {
        remove_quietly(job.output_path);
        remove_quietly(job.poster_path);
        throw;
    } catch (const std::bad_alloc&) {
        remove_quietly(job.output_path);
        remove_quietly(job.poster_path);
        throw RenderError("internal", "out of memory");
    } catch (const std::exception& e) {
        remove_quietly(job.output_path);
        remove_quietly(job.poster_path);
        throw RenderError("internal", e.what());
    }
}

std::string resolve_default_font() {
    if (const char* env = std::getenv("PROTOVIDEO_FONT"); env && *env) {
        std::filesystem::path p(env);
        if (p.is_absolute() && std::filesystem::is_regular_file(p))
            return p.string();
        throw std::runtime_error(std::string("PROTOVIDEO_FONT is not an absolute path to a "
                                             "font file: ") +
                                 env);
    }
    static const char* const kCandidates[] = {
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",          // fonts-dejavu-core
        "/usr/share/fonts/truetype/lato/Lato-Bold.ttf",                  // fonts-lato
        "/usr/share/fonts/opentype/inter/Inter-Bold.otf",                // fonts-inter
        "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",  // fonts-liberation
        "/usr/share/fonts/truetype/freefont/FreeSansBold.ttf",           // fonts-freefont-ttf
    };
    for (const char* path : kCandidates) {
        if (std::filesystem::is_regular_file(path))
            return path;
    }
    throw std::runtime_error(
        "no default font: install fonts-dejavu-core (DejaVuSans-Bold.ttf) or set "
        "PROTOVIDEO_FONT to a font file");
}

}  // namespace pv
