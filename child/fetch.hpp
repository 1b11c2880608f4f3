// SPDX-License-Identifier: MIT
// Downloads every asset of a request before rendering starts: in parallel with
// curl multi, with timeouts, a size cap, retries on transient failures, and a
// check of each file's bytes against the field that named it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <curl/curl.h>

#include "asset_policy.hpp"
#include "request.hpp"
#include "sniff.hpp"

namespace pv {

/// Limits for downloads, read from the environment by from_env():
/// FETCH_CONNECT_TIMEOUT (s, 10), FETCH_TIMEOUT (s per attempt, 600),
/// FETCH_LOW_SPEED_LIMIT (bytes/s, 1024), FETCH_LOW_SPEED_TIME (s, 15),
/// FETCH_MAX_BYTES (200 MB), FETCH_RETRIES (2), FETCH_RETRY_BACKOFF_MS (1000),
/// FETCH_PARALLEL (6). Throws std::runtime_error naming a malformed variable.
struct FetchOptions {
    long connect_timeout_s = 10;
    long timeout_s = 600;
    long low_speed_limit = 1024;
    long low_speed_time_s = 15;
    long max_redirects = 5;
    std::uint64_t max_bytes = 200ull * 1024 * 1024;
    int retries = 2;
    long retry_backoff_ms = 1000;
    int parallel = 6;

    static FetchOptions from_env();
};

/// One asset reference of a request.
struct AssetRequest {
    enum class Slot { Image, Video, Narration, Music };
    std::size_t scene = 0;
    Slot slot = Slot::Image;
    std::string field;   // "scenes[0].image", used in every message about it
    std::string source;  // URL or local path as written in the request
    AssetKind kind = AssetKind::Image;
};

struct FetchedAsset {
    std::string path;    // local file: in dest_dir, or the real path under ASSET_ROOTS
    std::string format;  // from sniffing: "jpeg", "mp3", ...
    std::uint64_t size = 0;
};

/// Lists the assets a request names (promptImage is not one: see image_api).
std::vector<AssetRequest> collect_assets(const Request& req);

/// Fetches all assets into dest_dir (network) or checks them in place (local
/// files under ASSET_ROOTS); identical sources are fetched once. Returns one
/// entry per request, in order. on_progress gets a fraction 0..1.
/// Throws RenderError with error_type "asset" naming the first failed asset,
/// e.g. "scenes[0].image: https://h/a.jpg?sig=x is an HTML page, not an image";
/// retryable when the cause was transient (5xx, timeout, connection reset).
/// The other transfers are stopped as soon as one asset fails for good.
std::vector<FetchedAsset> fetch_assets(const std::vector<AssetRequest>& assets,
                                       const std::string& dest_dir, const AssetPolicy& policy,
                                       const FetchOptions& options,
                                       const std::function<void(double)>& on_progress = {});

/// A file extension (with the dot) for a sniffed format, "" when unknown.
std::string extension_for(std::string_view format);

/// Applies the options shared by every outgoing request: no proxies, http and
/// https only, timeouts, signals off. Used by the fetcher and the API clients.
void apply_common_curl_options(CURL* easy, const FetchOptions& options);

}  // namespace pv
