// SPDX-License-Identifier: MIT
#include "fetch.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>

#include "curl_handle.hpp"
#include "error_type.hpp"
#include "log.hpp"
#include "render/renderer.hpp"
#include "sys_error.hpp"
#include "unique_fd.hpp"

namespace pv {

namespace {

using Clock = std::chrono::steady_clock;

long env_long(const char* name, long fallback, long lo, long hi) {
    const char* raw = std::getenv(name);
    if (!raw || !*raw)
        return fallback;
    char* end = nullptr;
    long long v = std::strtoll(raw, &end, 10);
    if (*end != '\0' || v < lo || v > hi) {
        throw std::runtime_error(
            fmt::format("environment variable {} must be an integer between {} and {}, got \"{}\"",
                        name, lo, hi, raw));
    }
    return static_cast<long>(v);
}

[[noreturn]] void fail_asset(const std::string& field, const std::string& message, bool retryable) {
    throw RenderError(std::string(error_type::kAsset), field + ": " + message, retryable);
}

/// Keeps messages readable when a URL is very long (presigned URLs can be).
std::string short_url(const std::string& url) {
    constexpr std::size_t kMax = 300;
    if (url.size() <= kMax)
        return url;
    return url.substr(0, kMax) + "...";
}

std::string human_bytes(std::uint64_t n) {
    if (n >= 1024 * 1024)
        return fmt::format("{} MB", n / (1024 * 1024));
    if (n >= 1024)
        return fmt::format("{} KB", n / 1024);
    return fmt::format("{} bytes", n);
}

/// One unique network source and the state of its current attempt.
struct Transfer {
    std::string url;
    std::string path;  // where the body is written
    const AssetPolicy* policy = nullptr;
    const FetchOptions* options = nullptr;
    CurlEasy easy;
    UniqueFd fd;
    std::uint64_t bytes = 0;
    int attempt = 0;  // attempts started
    bool active = false;
    bool done = false;
    bool too_big = false;
    std::string refused;  // set by the socket callback when an address is forbidden
    std::string write_error;
    double fraction = 0;
    Clock::time_point not_before{};
    char errbuf[CURL_ERROR_SIZE] = {};
};

size_t on_write(char* data, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    std::size_t n = size * count;
    if (t->bytes + n > t->options->max_bytes) {
        t->too_big = true;
        return 0;
    }
    std::size_t off = 0;
    while (off < n) {
        ssize_t w = ::write(t->fd.get(), data + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            t->write_error = std::strerror(errno);
            return 0;
        }
        off += static_cast<std::size_t>(w);
    }
    t->bytes += n;
    return n;
}

int on_xferinfo(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
    auto* t = static_cast<Transfer*>(user);
    if (dltotal > 0) {
        t->fraction =
            std::clamp(static_cast<double>(dlnow) / static_cast<double>(dltotal), 0.0, 1.0);
    }
    return 0;
}

/// Refuses to open a socket to a non-public address unless the address or the
/// URL's host (after any redirect) is allowed. Running at connect time covers
/// every address DNS returns, redirects, and names that re-resolve later.
curl_socket_t on_open_socket(void* user, curlsocktype, curl_sockaddr* addr) {
    auto* t = static_cast<Transfer*>(user);
    auto cls = forbidden_address_class(&addr->addr);
    if (!cls.empty()) {
        std::string ip = address_text(&addr->addr);
        char* effective = nullptr;
        curl_easy_getinfo(t->easy.get(), CURLINFO_EFFECTIVE_URL, &effective);
        std::string host;
        if (effective) {
            if (auto parts = split_url(effective))
                host = parts->host;
        }
        if (!t->policy->host_allowed(ip) && !t->policy->host_allowed(host)) {
            t->refused = fmt::format(
                "resolves to {}, a {} address; refused (list the host in FETCH_ALLOW_HOSTS to "
                "allow it)",
                ip, cls);
            return CURL_SOCKET_BAD;
        }
    }
    int fd = ::socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/// The outcome of one finished attempt.
struct Outcome {
    bool ok = false;
    bool retry = false;  // transient: try again locally, and retryable if it persists
    std::string problem;
};

Outcome classify(Transfer& t, CURLcode rc) {
    long status = 0;
    curl_easy_getinfo(t.easy.get(), CURLINFO_RESPONSE_CODE, &status);
    std::string url = short_url(t.url);
    std::string detail = t.errbuf[0] ? std::string(t.errbuf) : curl_easy_strerror(rc);
    if (!t.refused.empty())
        return {false, false, url + " " + t.refused};
    if (t.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        return {false, false,
                fmt::format("{} is larger than the {} limit (FETCH_MAX_BYTES)", url,
                            human_bytes(t.options->max_bytes))};
    }
    if (!t.write_error.empty()) {
        return {false, false, fmt::format("{}: cannot write the download: {}", url, t.write_error)};
    }
    switch (rc) {
        case CURLE_OK:
            if (status >= 200 && status < 300)
                return {true, false, ""};
            return {
                false, false,
                fmt::format("HTTP {} from {} (redirect without a usable Location?)", status, url)};
        case CURLE_HTTP_RETURNED_ERROR: {
            bool transient = status >= 500 || status == 408 || status == 429;
            return {false, transient, fmt::format("HTTP {} from {}", status, url)};
        }
        case CURLE_TOO_MANY_REDIRECTS:
            return {false, false,
                    fmt::format("{} redirected more than {} times", url, t.options->max_redirects)};
        case CURLE_UNSUPPORTED_PROTOCOL:
            return {
                false, false,
                fmt::format("{} redirected to a URL that is not http or https ({})", url, detail)};
        case CURLE_OPERATION_TIMEDOUT:
            return {false, true, fmt::format("download of {} timed out: {}", url, detail)};
        case CURLE_PARTIAL_FILE:
            return {false, true,
                    fmt::format("{} was truncated: the connection ended early ({})", url, detail)};
        case CURLE_COULDNT_CONNECT:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
            return {false, true, fmt::format("cannot download {}: {}", url, detail)};
        case CURLE_COULDNT_RESOLVE_HOST:
            return {false, false, fmt::format("cannot download {}: host not found", url)};
        default:
            return {false, false, fmt::format("cannot download {}: {}", url, detail)};
    }
}

/// Removes every transfer still in the multi handle before either is freed.
class MultiGuard {
public:
    MultiGuard(CURLM* multi, std::vector<std::unique_ptr<Transfer>>& transfers)
        : m_multi(multi), m_transfers(transfers) {}
    ~MultiGuard() {
        for (auto& t : m_transfers) {
            if (t->active)
                curl_multi_remove_handle(m_multi, t->easy.get());
            t->active = false;
        }
    }
    MultiGuard(const MultiGuard&) = delete;
    MultiGuard& operator=(const MultiGuard&) = delete;

private:
    CURLM* m_multi;
    std::vector<std::unique_ptr<Transfer>>& m_transfers;
};

void start_attempt(CURLM* multi, Transfer& t) {
    t.fd.reset(::open(t.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!t.fd)
        throw_sys("open " + t.path);
    t.bytes = 0;
    t.fraction = 0;
    t.too_big = false;
    t.refused.clear();
    t.write_error.clear();
    t.errbuf[0] = '\0';
    ++t.attempt;
    CURLMcode mc = curl_multi_add_handle(multi, t.easy.get());
    if (mc != CURLM_OK) {
        throw std::runtime_error(std::string("curl_multi_add_handle: ") + curl_multi_strerror(mc));
    }
    t.active = true;
}

void setup_transfer(Transfer& t) {
    t.easy = make_curl_easy();
    CURL* h = t.easy.get();
    apply_common_curl_options(h, *t.options);
    curl_easy_setopt(h, CURLOPT_URL, t.url.c_str());
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, t.options->max_redirects);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(t.options->max_bytes));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &t);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t.errbuf);
    curl_easy_setopt(h, CURLOPT_PRIVATE, &t);
}

// Limitation: Retry-After headers are not honoured; retries wait an exponential
// backoff (FETCH_RETRY_BACKOFF_MS, doubled per attempt, at most 30 s).
long backoff_ms(const FetchOptions& o, int attempt) {
    double ms = static_cast<double>(o.retry_backoff_ms) * std::pow(2.0, attempt - 1);
    return static_cast<long>(std::min(ms, 30000.0));
}

/// Runs all transfers to completion; returns the index and problem of the first
/// one that failed for good, or nullopt when all succeeded.
struct Failure {
    std::size_t index;
    Outcome outcome;
};

std::optional<Failure> run_transfers(std::vector<std::unique_ptr<Transfer>>& transfers,
                                     const FetchOptions& options,
                                     const std::function<void(double)>& on_progress,
                                     double done_before, double total) {
    CurlMulti multi{curl_multi_init()};
    if (!multi)
        throw std::runtime_error("curl_multi_init failed");
    MultiGuard guard(multi.get(), transfers);
    std::size_t remaining = transfers.size();
    auto last_report = Clock::now();

    while (remaining > 0) {
        auto now = Clock::now();
        int running_slots = 0;
        for (auto& t : transfers) running_slots += t->active ? 1 : 0;
        for (auto& t : transfers) {
            if (running_slots >= options.parallel)
                break;
            if (!t->active && !t->done && t->not_before <= now) {
                start_attempt(multi.get(), *t);
                ++running_slots;
            }
        }

        int still_running = 0;
        curl_multi_perform(multi.get(), &still_running);
        int queued = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi.get(), &queued)) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            Transfer* t = nullptr;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
            CURLcode rc = msg->data.result;
            curl_multi_remove_handle(multi.get(), msg->easy_handle);
            t->active = false;
            t->fd.reset();
            Outcome out = classify(*t, rc);
            std::size_t index =
                static_cast<std::size_t>(std::find_if(transfers.begin(), transfers.end(),
                                                      [&](const auto& p) { return p.get() == t; }) -
                                         transfers.begin());
            if (out.ok) {
                t->done = true;
                t->fraction = 1;
                --remaining;
                log::debug("asset downloaded", {{"url", t->url}, {"bytes", t->bytes}});
            } else if (out.retry && t->attempt <= options.retries) {
                long wait = backoff_ms(options, t->attempt);
                t->not_before = Clock::now() + std::chrono::milliseconds(wait);
                log::warn("asset download failed, retrying", {{"url", t->url},
                                                              {"attempt", t->attempt},
                                                              {"retry_in_ms", wait},
                                                              {"error", out.problem}});
            } else {
                return Failure{index, out};
            }
        }

        if (on_progress && Clock::now() - last_report > std::chrono::milliseconds(250)) {
            double sum = done_before;
            for (auto& t : transfers) sum += t->fraction;
            on_progress(total > 0 ? sum / total : 1.0);
            last_report = Clock::now();
        }
        if (remaining == 0)
            break;

        // Sleep until curl has work, or the next retry is due.
        long wait_ms = 200;
        now = Clock::now();
        for (auto& t : transfers) {
            if (!t->active && !t->done) {
                auto due =
                    std::chrono::duration_cast<std::chrono::milliseconds>(t->not_before - now);
                wait_ms = std::clamp<long>(static_cast<long>(due.count()), 0, wait_ms);
            }
        }
        curl_multi_poll(multi.get(), nullptr, 0, static_cast<int>(wait_ms), nullptr);
    }
    return std::nullopt;
}

std::uint64_t file_size(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        throw_sys("stat " + path);
    return static_cast<std::uint64_t>(st.st_size);
}

}  // namespace

FetchOptions FetchOptions::from_env() {
    FetchOptions o;
    o.connect_timeout_s = env_long("FETCH_CONNECT_TIMEOUT", o.connect_timeout_s, 1, 3600);
    o.timeout_s = env_long("FETCH_TIMEOUT", o.timeout_s, 1, 86400);
    o.low_speed_limit = env_long("FETCH_LOW_SPEED_LIMIT", o.low_speed_limit, 0, 1L << 30);
    o.low_speed_time_s = env_long("FETCH_LOW_SPEED_TIME", o.low_speed_time_s, 1, 3600);
    o.max_bytes = static_cast<std::uint64_t>(
        env_long("FETCH_MAX_BYTES", static_cast<long>(o.max_bytes), 1024, 1L << 40));
    o.retries = static_cast<int>(env_long("FETCH_RETRIES", o.retries, 0, 10));
    o.retry_backoff_ms = env_long("FETCH_RETRY_BACKOFF_MS", o.retry_backoff_ms, 0, 60000);
    o.parallel = static_cast<int>(env_long("FETCH_PARALLEL", o.parallel, 1, 64));
    return o;
}

void apply_common_curl_options(CURL* h, const FetchOptions& o) {
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    // Limitation: HTTP(S) proxies are not supported; proxy variables in the
    // environment are ignored so that the address checks see the real destination.
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, o.connect_timeout_s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, o.timeout_s);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, o.low_speed_limit);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o.low_speed_time_s);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ProtoVideo-renderer/0.1");
}

std::string extension_for(std::string_view format) {
    static const std::map<std::string_view, std::string_view> kExt = {
        {"jpeg", ".jpg"},  {"png", ".png"}, {"gif", ".gif"},   {"webp", ".webp"},
        {"bmp", ".bmp"},   {"mp3", ".mp3"}, {"aac", ".aac"},   {"wav", ".wav"},
        {"flac", ".flac"}, {"ogg", ".ogg"}, {"ogv", ".ogv"},   {"m4a", ".m4a"},
        {"mp4", ".mp4"},   {"mov", ".mov"}, {"webm", ".webm"}, {"matroska", ".mkv"},
        {"avi", ".avi"},
    };
    auto it = kExt.find(format);
    return it == kExt.end() ? "" : std::string(it->second);
}

std::vector<AssetRequest> collect_assets(const Request& req) {
    std::vector<AssetRequest> out;
    for (std::size_t i = 0; i < req.scenes.size(); ++i) {
        const Scene& s = req.scenes[i];
        auto add = [&](AssetRequest::Slot slot, const char* key, const std::string& source,
                       AssetKind kind) {
            if (source.empty())
                return;
            out.push_back({i, slot, fmt::format("scenes[{}].{}", i, key), source, kind});
        };
        add(AssetRequest::Slot::Image, "image", s.image, AssetKind::Image);
        add(AssetRequest::Slot::Video, "video", s.video, AssetKind::Video);
        add(AssetRequest::Slot::Narration, "narration", s.narration, AssetKind::Audio);
        add(AssetRequest::Slot::Music, "music", s.music, AssetKind::Audio);
    }
    return out;
}

std::vector<FetchedAsset> fetch_assets(const std::vector<AssetRequest>& assets,
                                       const std::string& dest_dir, const AssetPolicy& policy,
                                       const FetchOptions& options,
                                       const std::function<void(double)>& on_progress) {
    std::vector<FetchedAsset> result(assets.size());
    std::vector<std::unique_ptr<Transfer>> transfers;
    std::map<std::string, std::size_t> transfer_of;  // source URL -> transfers index
    std::vector<std::size_t> asset_transfer(assets.size(), SIZE_MAX);
    std::size_t local_count = 0;

    // Local files first: they fail fast and need no network.
    for (std::size_t i = 0; i < assets.size(); ++i) {
        const auto& a = assets[i];
        if (!AssetPolicy::is_local(a.source)) {
            auto [it, inserted] = transfer_of.emplace(a.source, transfers.size());
            if (inserted) {
                auto t = std::make_unique<Transfer>();
                t->url = a.source;
                t->path = fmt::format("{}/asset-{}.download", dest_dir, transfers.size());
                t->policy = &policy;
                t->options = &options;
                setup_transfer(*t);
                transfers.push_back(std::move(t));
            }
            asset_transfer[i] = it->second;
            continue;
        }
        std::string real;
        if (auto problem = policy.resolve_local(a.source, real)) {
            fail_asset(a.field, a.source + " " + *problem, false);
        }
        result[i].path = real;
        ++local_count;
    }

    double total = static_cast<double>(local_count + transfers.size());
    if (!transfers.empty()) {
        auto failure =
            run_transfers(transfers, options, on_progress, static_cast<double>(local_count), total);
        if (failure) {
            // Name the first request field that used the failed source.
            for (std::size_t i = 0; i < assets.size(); ++i) {
                if (asset_transfer[i] == failure->index) {
                    fail_asset(assets[i].field, failure->outcome.problem, failure->outcome.retry);
                }
            }
        }
    }

    // Every file is complete now: check its bytes against the field that named it.
    std::map<std::size_t, std::string> renamed;  // transfer index -> final path
    for (std::size_t i = 0; i < assets.size(); ++i) {
        const auto& a = assets[i];
        std::string path = result[i].path;
        if (asset_transfer[i] != SIZE_MAX) {
            auto it = renamed.find(asset_transfer[i]);
            path = it != renamed.end() ? it->second : transfers[asset_transfer[i]]->path;
        }
        std::uint64_t size = file_size(path);
        Sniffed s = sniff_file(path);
        if (auto problem = check_content(s, size, a.kind)) {
            fail_asset(a.field, short_url(a.source) + " " + *problem, false);
        }
        if (size > options.max_bytes) {
            fail_asset(a.field,
                       fmt::format("{} is larger than the {} limit (FETCH_MAX_BYTES)", a.source,
                                   human_bytes(options.max_bytes)),
                       false);
        }
        if (asset_transfer[i] != SIZE_MAX && !renamed.count(asset_transfer[i])) {
            // Give the file an extension matching its bytes; some demuxers look at it.
            std::string final_path =
                fmt::format("{}/asset-{}{}", dest_dir, asset_transfer[i], extension_for(s.format));
            if (::rename(path.c_str(), final_path.c_str()) != 0)
                throw_sys("rename " + path);
            renamed[asset_transfer[i]] = final_path;
            path = final_path;
        }
        result[i] = {path, s.format, size};
    }
    if (on_progress)
        on_progress(1.0);
    return result;
}

}  // namespace pv
