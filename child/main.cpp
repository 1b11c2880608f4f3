// SPDX-License-Identifier: MIT
// protovideo-render: one task attempt. Reads the request, fetches every asset,
// renders with pv::render, publishes the MP4 and its poster, and reports
// progress, result or error as JSON lines on the event fd (common/PROTOCOL.md).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>

#include "asset_policy.hpp"
#include "curl_handle.hpp"
#include "error_type.hpp"
#include "events.hpp"
#include "fetch.hpp"
#include "image_api.hpp"
#include "log.hpp"
#include "output.hpp"
#include "render/renderer.hpp"
#include "request.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitInvalidRequest = 2;
constexpr std::size_t kMaxRequestBytes = 16 * 1024 * 1024;

// Shares of the overall progress given to each stage.
constexpr double kDownloadEnd = 15;
constexpr double kRenderEnd = 97;

struct Options {
    std::string request = "-";
    std::string output;
    std::string work_dir;
    std::string task_id;
    int event_fd = -1;
    std::string log_format = "auto";
    std::string log_level = "info";
};

/// A failure that ends the run with a given exit code and error event.
struct Failure {
    std::string error_type;
    std::string message;
    bool retryable = false;
    int exit_code = kExitFailed;
};

/// The scratch directory: the one given, or a fresh one removed at exit.
/// Limitation: a child killed by a signal leaves its own mkdtemp directory
/// behind; under the supervisor the work directory is removed by the parent.
class WorkDir {
public:
    explicit WorkDir(const std::string& given) {
        if (!given.empty()) {
            std::filesystem::create_directories(given);
            m_path = given;
            return;
        }
        std::string base = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
        std::string tmpl = base + "/protovideo-XXXXXX";
        if (!::mkdtemp(tmpl.data())) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
        }
        m_path = tmpl;
        m_owned = true;
    }
    ~WorkDir() {
        if (!m_owned)
            return;
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    WorkDir(const WorkDir&) = delete;
    WorkDir& operator=(const WorkDir&) = delete;
    const std::string& path() const { return m_path; }

private:
    std::string m_path;
    bool m_owned = false;
};

/// Maps stage-local progress onto one 0..100 scale and limits the event rate.
class Progress {
public:
    explicit Progress(pv::EventWriter& events) : m_events(events) {}

    void report(double percent, const std::string& stage) {
        auto now = std::chrono::steady_clock::now();
        bool changed_stage = stage != m_stage;
        bool moved = percent - m_last >= 1.0;
        bool stale = now - m_when >= std::chrono::seconds(2) && percent != m_last;
        if (!changed_stage && !moved && !stale)
            return;
        m_events.progress(percent, stage);
        m_last = percent;
        m_stage = stage;
        m_when = now;
    }
    void in_range(double lo, double hi, double fraction, const std::string& stage) {
        report(lo + (hi - lo) * std::clamp(fraction, 0.0, 1.0), stage);
    }

private:
    pv::EventWriter& m_events;
    std::string m_stage;
    double m_last = -1;
    std::chrono::steady_clock::time_point m_when{};
};

std::string read_request_text(const std::string& source) {
    std::string text;
    if (source == "-") {
        text.assign(std::istreambuf_iterator<char>(std::cin), {});
    } else {
        std::ifstream in(source, std::ios::binary);
        if (!in) {
            throw Failure{std::string(pv::error_type::kIo),
                          "cannot read the request file " + source, false, kExitFailed};
        }
        text.assign(std::istreambuf_iterator<char>(in), {});
    }
    if (text.size() > kMaxRequestBytes) {
        throw Failure{std::string(pv::error_type::kInvalidRequest),
                      fmt::format("request: larger than {} bytes", kMaxRequestBytes), false,
                      kExitInvalidRequest};
    }
    return text;
}

pv::RequestLimits read_limits() {
    try {
        return pv::limits_from_env();
    } catch (const std::runtime_error& e) {
        throw Failure{std::string(pv::error_type::kInternal), e.what()};
    }
}

pv::Request load_request(const Options& opt, const pv::RequestLimits& limits) {
    std::string text = read_request_text(opt.request);
    nlohmann::json body;
    try {
        body = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        std::string why = text.empty() ? "request: empty (no request file content, no stdin)"
                                       : fmt::format("request: not valid JSON at byte {}", e.byte);
        throw Failure{std::string(pv::error_type::kInvalidRequest), why, false,
                      kExitInvalidRequest};
    } catch (const nlohmann::json::exception&) {
        // A number beyond double, say.
        throw Failure{std::string(pv::error_type::kInvalidRequest), "request: not valid JSON",
                      false, kExitInvalidRequest};
    }
    try {
        return pv::parse_request(body, limits);
    } catch (const pv::InvalidRequest& e) {
        throw Failure{std::string(pv::error_type::kInvalidRequest), e.what(), false,
                      kExitInvalidRequest};
    }
}

/// Where the finished video goes, decided before any work is done.
struct Destination {
    enum class Kind { File, S3 } kind = Kind::File;
    std::string path;  // File: the final .mp4 path
    std::optional<pv::S3Config> s3;
    std::string name;  // S3: object name without extension
};

std::string stem(const std::string& file_name) {
    std::string base = std::filesystem::path(file_name).filename().string();
    auto dot = base.rfind('.');
    return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

Destination choose_destination(const Options& opt, const pv::Request& req) {
    Destination d;
    std::string name = !opt.task_id.empty()           ? opt.task_id
                       : !req.output_filename.empty() ? stem(req.output_filename)
                                                      : "";
    if (!opt.output.empty()) {
        d.path = std::filesystem::absolute(opt.output).string();
        // Checked now, not after the render that would have nowhere to go.
        std::string dir = std::filesystem::path(d.path).parent_path().string();
        if (!std::filesystem::is_directory(dir)) {
            throw Failure{std::string(pv::error_type::kIo),
                          "--output: the directory " + dir + " does not exist"};
        }
        return d;
    }
    if (auto s3 = pv::S3Config::from_env()) {
        if (name.empty()) {
            throw Failure{std::string(pv::error_type::kInternal),
                          "S3 upload needs --task-id or an output_filename to name the object"};
        }
        d.kind = Destination::Kind::S3;
        d.s3 = std::move(s3);
        d.name = name;
        return d;
    }
    const char* dir = std::getenv("OUTPUT_DIR");
    if (!dir || !*dir) {
        throw Failure{std::string(pv::error_type::kInternal),
                      "no output destination: pass --output, or set OUTPUT_DIR or the S3_* "
                      "variables"};
    }
    if (!std::filesystem::is_directory(dir)) {
        throw Failure{std::string(pv::error_type::kIo),
                      std::string("OUTPUT_DIR is not a directory: ") + dir};
    }
    if (name.empty()) {
        throw Failure{std::string(pv::error_type::kInternal),
                      "OUTPUT_DIR needs --task-id or an output_filename to name the file"};
    }
    d.path = std::string(dir) + "/" + name + ".mp4";
    return d;
}

/// Fetches the assets and generates promptImage pictures; returns the files
/// for each scene.
std::vector<pv::SceneFiles> gather_assets(const pv::Request& req, const std::string& work_dir,
                                          Progress& progress) {
    auto policy = pv::AssetPolicy::from_env();
    auto options = pv::FetchOptions::from_env();
    std::vector<pv::SceneFiles> files(req.scenes.size());

    progress.report(0, "download");
    auto assets = pv::collect_assets(req);
    auto fetched = pv::fetch_assets(assets, work_dir, policy, options, [&](double f) {
        progress.in_range(0, kDownloadEnd * 0.8, f, "download");
    });
    for (std::size_t i = 0; i < assets.size(); ++i) {
        auto& scene = files[assets[i].scene];
        switch (assets[i].slot) {
            case pv::AssetRequest::Slot::Image:
                scene.image = fetched[i].path;
                break;
            case pv::AssetRequest::Slot::Video:
                scene.video = fetched[i].path;
                break;
            case pv::AssetRequest::Slot::Narration:
                scene.narration = fetched[i].path;
                break;
            case pv::AssetRequest::Slot::Music:
                scene.music = fetched[i].path;
                break;
        }
    }

    // Limitation: promptImage pictures are generated one after another, after
    // the downloads, so several prompts add up their API latencies.
    std::optional<pv::ImageApiConfig> api;
    std::size_t prompts = 0;
    for (const auto& s : req.scenes) prompts += s.prompt_image.empty() ? 0 : 1;
    if (prompts > 0)
        api = pv::ImageApiConfig::from_env();
    std::size_t done = 0;
    for (std::size_t i = 0; i < req.scenes.size(); ++i) {
        if (req.scenes[i].prompt_image.empty())
            continue;
        std::string field = fmt::format("scenes[{}].promptImage", i);
        auto image = pv::generate_image(api, field, req.scenes[i].prompt_image,
                                        fmt::format("{}/prompt-{}", work_dir, i), options);
        files[i].image = image.path;
        ++done;
        progress.in_range(kDownloadEnd * 0.8, kDownloadEnd,
                          static_cast<double>(done) / static_cast<double>(prompts),
                          "generate_image");
    }
    return files;
}

nlohmann::json run(const Options& opt, Progress& progress) {
    const pv::RequestLimits limits = read_limits();
    pv::Request req = load_request(opt, limits);

    std::string font;
    try {
        font = pv::resolve_default_font();
    } catch (const std::exception& e) {
        throw Failure{std::string(pv::error_type::kInternal), e.what()};
    }
    Destination dest = choose_destination(opt, req);
    WorkDir work(opt.work_dir);
    pv::log::info("task started", {{"task_id", opt.task_id},
                                   {"scenes", req.scenes.size()},
                                   {"work_dir", work.path()},
                                   {"font", font}});

    pv::RenderJob job;
    job.files = gather_assets(req, work.path(), progress);
    job.request = std::move(req);
    job.work_dir = work.path();
    job.output_path = work.path() + "/render.tmp.mp4";
    job.poster_path = work.path() + "/poster.tmp.jpg";
    job.font_path = font;
    job.max_scene_seconds = limits.max_scene_duration;
    job.max_total_seconds = limits.max_total_duration;
    job.on_progress = [&](double percent, const std::string& stage) {
        progress.in_range(kDownloadEnd, kRenderEnd, percent / 100.0, stage);
    };
    auto started = std::chrono::steady_clock::now();
    pv::RenderResult rendered = pv::render(job);
    auto render_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - started)
                         .count();

    progress.report(kRenderEnd, "finalize");
    pv::MediaProbe probe = pv::check_rendered(job.output_path);
    pv::Published pub = dest.kind == Destination::Kind::S3
                            ? pv::publish_s3(job.output_path, job.poster_path, *dest.s3, dest.name)
                            : pv::publish_local(job.output_path, job.poster_path, dest.path);

    nlohmann::json result = {
        {"output", pub.output},
        {"duration", rendered.duration > 0 ? rendered.duration : probe.duration},
        {"size", pub.size},
        {"width", rendered.width > 0 ? rendered.width : probe.width},
        {"height", rendered.height > 0 ? rendered.height : probe.height},
        {"frames", rendered.frames},
        {"fps", rendered.fps},
    };
    result["thumbnail"] =
        pub.thumbnail.empty() ? nlohmann::json(nullptr) : nlohmann::json(pub.thumbnail);
    pv::log::info("task rendered", {{"task_id", opt.task_id},
                                    {"output", pub.output},
                                    {"size", pub.size},
                                    {"render_ms", render_ms}});
    return result;
}

int event_fd_from_env() {
    const char* raw = std::getenv("PV_EVENT_FD");
    if (!raw || !*raw)
        return -1;
    char* end = nullptr;
    long fd = std::strtol(raw, &end, 10);
    return *end == '\0' && fd >= 0 && fd < 65536 ? static_cast<int>(fd) : -1;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    opt.event_fd = event_fd_from_env();
    if (const char* id = std::getenv("PV_TASK_ID"))
        opt.task_id = id;

    CLI::App app{"protovideo-render: renders one ProtoVideo request to an MP4"};
    app.add_option("--request", opt.request, "request JSON file, or - for stdin");
    app.add_option("--output", opt.output, "write the MP4 here (standalone use)");
    app.add_option("--work-dir", opt.work_dir, "scratch directory (default: a temporary one)");
    app.add_option("--task-id", opt.task_id, "task id; names the output in OUTPUT_DIR or S3");
    app.add_option("--event-fd", opt.event_fd, "fd for JSON-line events (default $PV_EVENT_FD)");
    app.add_option("--log-format", opt.log_format, "auto, json or text");
    app.add_option("--log-level", opt.log_level, "trace, debug, info, warn, error");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? kExitOk : kExitInvalidRequest;
    }

    try {
        pv::log::setup(pv::log::parse_format(opt.log_format),
                       spdlog::level::from_str(opt.log_level), /*to_stderr=*/true);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "protovideo-render: %s\n", e.what());
        return kExitInvalidRequest;
    }
    if (opt.event_fd >= 0 && ::fcntl(opt.event_fd, F_GETFD) < 0) {
        pv::log::warn("event fd is not open, events are not sent", {{"fd", opt.event_fd}});
        opt.event_fd = -1;
    }
    if (opt.event_fd >= 0)
        ::fcntl(opt.event_fd, F_SETFD, FD_CLOEXEC);
    pv::EventWriter events(opt.event_fd);
    Progress progress(events);

    Failure failure;
    try {
        pv::CurlGlobal curl;
        nlohmann::json result = run(opt, progress);
        events.result(result);
        if (opt.event_fd < 0)
            std::cout << result.dump() << std::endl;
        return kExitOk;
    } catch (const Failure& f) {
        failure = f;
    } catch (const pv::RenderError& e) {
        failure = {e.error_type(), e.what(), e.retryable()};
    } catch (const std::system_error& e) {
        failure = {std::string(pv::error_type::kIo), e.what()};
    } catch (const std::exception& e) {
        failure = {std::string(pv::error_type::kInternal), e.what()};
    }
    pv::log::error("task failed", {{"task_id", opt.task_id},
                                   {"error_type", failure.error_type},
                                   {"error_message", failure.message},
                                   {"retryable", failure.retryable}});
    events.error(failure.error_type, failure.message, failure.retryable);
    return failure.exit_code;
}
