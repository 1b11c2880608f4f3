// SPDX-License-Identifier: MIT
#include "image_api.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "curl_handle.hpp"
#include "error_type.hpp"
#include "log.hpp"
#include "render/renderer.hpp"
#include "sniff.hpp"
#include "sys_error.hpp"
#include "unique_fd.hpp"

namespace pv {

namespace {

constexpr std::size_t kMaxResponseBytes = 64 * 1024 * 1024;

std::string env_or_empty(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

[[noreturn]] void fail(const std::string& field, const std::string& message, bool retryable) {
    throw RenderError(std::string(error_type::kAsset), field + ": " + message, retryable);
}

struct Response {
    long status = 0;
    CURLcode rc = CURLE_OK;
    std::string body;
    bool too_big = false;
    char errbuf[CURL_ERROR_SIZE] = {};
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
    auto* r = static_cast<Response*>(user);
    std::size_t n = size * count;
    if (r->body.size() + n > kMaxResponseBytes) {
        r->too_big = true;
        return 0;
    }
    r->body.append(data, n);
    return n;
}

Response post_json(const ImageApiConfig& cfg, const std::string& payload,
                   const FetchOptions& options) {
    Response r;
    CurlEasy h = make_curl_easy();
    FetchOptions o = options;
    o.timeout_s = cfg.timeout_s;
    // Generation takes a while before the first byte: no low-speed abort.
    o.low_speed_limit = 0;
    apply_common_curl_options(h.get(), o);
    CurlSlist headers;
    std::string auth = "Authorization: Bearer " + cfg.api_key;
    append_header(headers, auth.c_str());
    append_header(headers, "Content-Type: application/json");
    append_header(headers, "Accept: application/json");
    std::string url = images_endpoint(cfg.base_url);
    curl_easy_setopt(h.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(h.get(), CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(h.get(), CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(h.get(), CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
    curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h.get(), CURLOPT_ERRORBUFFER, r.errbuf);
    r.rc = curl_easy_perform(h.get());
    curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &r.status);
    return r;
}

/// The API's own words for an error response, when it sent any.
std::string api_error_message(const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object()) {
        auto err = j.find("error");
        if (err != j.end() && err->is_object() && err->contains("message") &&
            (*err)["message"].is_string()) {
            return (*err)["message"].get<std::string>().substr(0, 500);
        }
    }
    return "";
}

struct Attempt {
    std::string image;  // decoded bytes on success
    std::string problem;
    bool transient = false;
};

Attempt attempt_once(const ImageApiConfig& cfg, const std::string& payload,
                     const FetchOptions& options) {
    Response r = post_json(cfg, payload, options);
    if (r.too_big)
        return {"", "the image API's answer is larger than 64 MB", false};
    if (r.rc != CURLE_OK) {
        bool transient = r.rc == CURLE_OPERATION_TIMEDOUT || r.rc == CURLE_COULDNT_CONNECT ||
                         r.rc == CURLE_RECV_ERROR || r.rc == CURLE_SEND_ERROR ||
                         r.rc == CURLE_GOT_NOTHING || r.rc == CURLE_PARTIAL_FILE;
        std::string detail = r.errbuf[0] ? r.errbuf : curl_easy_strerror(r.rc);
        return {"", "cannot reach the image API: " + detail, transient};
    }
    if (r.status < 200 || r.status >= 300) {
        std::string why = api_error_message(r.body);
        bool transient = r.status >= 500 || r.status == 429 || r.status == 408;
        return {"",
                fmt::format("the image API returned HTTP {}{}", r.status,
                            why.empty() ? "" : ": " + why),
                transient};
    }
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    const nlohmann::json* b64 = nullptr;
    if (j.is_object() && j.contains("data") && j["data"].is_array() && !j["data"].empty() &&
        j["data"][0].is_object()) {
        auto it = j["data"][0].find("b64_json");
        if (it != j["data"][0].end() && it->is_string())
            b64 = &*it;
    }
    // Limitation: an API that ignores response_format and answers with
    // data[0].url instead of b64_json is refused rather than followed.
    if (!b64)
        return {"", "the image API's answer has no data[0].b64_json", false};
    try {
        return {base64_decode(b64->get_ref<const std::string&>()), "", false};
    } catch (const std::invalid_argument& e) {
        return {"", std::string("the image API's b64_json is not valid base64: ") + e.what(),
                false};
    }
}

void write_file(const std::string& path, const std::string& bytes) {
    UniqueFd fd{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
    if (!fd)
        throw_sys("open " + path);
    std::size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = ::write(fd.get(), bytes.data() + off, bytes.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw_sys("write " + path);
        off += static_cast<std::size_t>(n);
    }
}

}  // namespace

std::optional<ImageApiConfig> ImageApiConfig::from_env() {
    ImageApiConfig cfg;
    cfg.api_key = env_or_empty("IMAGE_API_KEY");
    cfg.base_url = env_or_empty("IMAGE_API_BASE_URL");
    if (cfg.api_key.empty())
        cfg.api_key = env_or_empty("OPENAI_API_KEY");
    if (cfg.base_url.empty())
        cfg.base_url = env_or_empty("OPENAI_BASE_URL");
    if (cfg.api_key.empty())
        return std::nullopt;
    if (cfg.base_url.empty())
        cfg.base_url = "https://api.openai.com/v1";
    std::string model = env_or_empty("IMAGE_API_MODEL");
    if (!model.empty())
        cfg.model = model;
    return cfg;
}

std::string images_endpoint(std::string_view base_url) {
    std::string base(base_url);
    while (!base.empty() && base.back() == '/') base.pop_back();
    if (base.size() >= 3 && base.compare(base.size() - 3, 3, "/v1") == 0) {
        return base + "/images/generations";
    }
    return base + "/v1/images/generations";
}

std::string base64_decode(std::string_view text) {
    static const std::array<int, 256> kTable = [] {
        std::array<int, 256> t{};
        t.fill(-1);
        const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = i;
        return t;
    }();
    std::string out;
    out.reserve(text.size() / 4 * 3);
    std::uint32_t acc = 0;
    int bits = 0;
    bool padding = false;
    for (char c : text) {
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            padding = true;
            continue;
        }
        int v = kTable[static_cast<unsigned char>(c)];
        if (v < 0 || padding) {
            throw std::invalid_argument(padding ? "data after '=' padding"
                                                : fmt::format("unexpected character 0x{:02x}",
                                                              static_cast<unsigned char>(c)));
        }
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xFF));
        }
    }
    if (bits >= 6)
        throw std::invalid_argument("truncated input");
    return out;
}

FetchedAsset generate_image(const std::optional<ImageApiConfig>& config, const std::string& field,
                            const std::string& prompt, const std::string& dest_path,
                            const FetchOptions& options) {
    if (!config) {
        fail(field, "no image API configured (set IMAGE_API_BASE_URL and IMAGE_API_KEY)", false);
    }
    nlohmann::json payload = {{"model", config->model},
                              {"prompt", prompt},
                              {"n", 1},
                              {"size", config->size},
                              {"response_format", "b64_json"}};
    std::string body = payload.dump();

    Attempt result;
    for (int attempt = 1;; ++attempt) {
        result = attempt_once(*config, body, options);
        if (result.problem.empty() || !result.transient || attempt > options.retries)
            break;
        long wait = options.retry_backoff_ms << (attempt - 1);
        log::warn("image API request failed, retrying", {{"field", field},
                                                         {"attempt", attempt},
                                                         {"retry_in_ms", wait},
                                                         {"error", result.problem}});
        std::this_thread::sleep_for(std::chrono::milliseconds(wait));
    }
    if (!result.problem.empty())
        fail(field, result.problem, result.transient);

    Sniffed s = sniff_bytes(std::string_view(result.image).substr(0, kSniffBytes));
    if (auto problem = check_content(s, result.image.size(), AssetKind::Image)) {
        fail(field, "the image API's answer " + *problem, false);
    }
    std::string path = dest_path + extension_for(s.format);
    write_file(path, result.image);
    return {path, s.format, result.image.size()};
}

}  // namespace pv
