// SPDX-License-Identifier: MIT
// promptImage: one image per prompt from an OpenAI-compatible images API
// (POST {base}/v1/images/generations, response_format b64_json).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "fetch.hpp"

namespace pv {

struct ImageApiConfig {
    std::string base_url;  // "https://api.openai.com" or ".../v1"
    std::string api_key;
    std::string model = "dall-e-3";
    std::string size = "1024x1024";
    long timeout_s = 180;

    /// IMAGE_API_BASE_URL and IMAGE_API_KEY, else OPENAI_BASE_URL and
    /// OPENAI_API_KEY; IMAGE_API_MODEL overrides the model. With a key but no
    /// base URL the base is https://api.openai.com/v1. nullopt without a key.
    static std::optional<ImageApiConfig> from_env();
};

/// The generations endpoint for a base URL, with or without a trailing /v1.
std::string images_endpoint(std::string_view base_url);

/// Decodes standard base64 (padding optional, whitespace ignored); throws
/// std::invalid_argument on any other character.
std::string base64_decode(std::string_view text);

/// Generates the image for `field` ("scenes[1].promptImage") into dest_path
/// (an extension matching the bytes is appended). Throws RenderError "asset"
/// naming the field: no configuration, an API error (retryable for 5xx, 429
/// and timeouts, after options.retries local retries), or an answer that is
/// not an image.
FetchedAsset generate_image(const std::optional<ImageApiConfig>& config, const std::string& field,
                            const std::string& prompt, const std::string& dest_path,
                            const FetchOptions& options);

}  // namespace pv
