// SPDX-License-Identifier: MIT
// Publishing a finished render: check the file, then either move it atomically
// into OUTPUT_DIR (or the --output path) with its poster beside it, or upload
// both to S3-compatible storage. Nothing partial is ever published.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace pv {

/// What libavformat says about a rendered file.
struct MediaProbe {
    int video_streams = 0;
    int audio_streams = 0;
    int width = 0;
    int height = 0;
    double duration = 0;  // seconds
};

/// Probes `path`; throws RenderError "encoding" when it cannot be opened.
MediaProbe probe_media(const std::string& path);

/// Checks a rendered file before it is published: it exists, is not empty, and
/// has exactly one video and one audio stream and a positive duration. Throws
/// RenderError "encoding" saying what is wrong. Returns the probe.
MediaProbe check_rendered(const std::string& path);

/// S3-compatible storage from S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY_ID,
/// S3_SECRET_ACCESS_KEY, S3_REGION (us-east-1), S3_PUBLIC_BASE_URL and
/// S3_KEY_PREFIX. nullopt unless the first four are all set.
struct S3Config {
    std::string endpoint;  // "https://host[:port]", path-style requests
    std::string bucket;
    std::string access_key;
    std::string secret_key;
    std::string region = "us-east-1";
    std::string public_base_url;  // result location base; default endpoint/bucket
    std::string key_prefix;
    long timeout_s = 600;

    static std::optional<S3Config> from_env();
};

struct Published {
    std::string output;     // final path or URL of the video
    std::string thumbnail;  // final path or URL of the poster ("" if none)
    std::uint64_t size = 0;
};

/// Moves `video` (and `poster` if not empty) to `final_video` and the poster
/// to the same name with a .jpg extension. Same filesystem: rename(2); other
/// filesystem: copy to ".<name>.tmp" in the target directory, fsync, rename.
/// The poster goes first so a visible video always has its poster. Throws
/// RenderError "io".
Published publish_local(const std::string& video, const std::string& poster,
                        const std::string& final_video);

/// Uploads poster then video as `<key_prefix><name>.jpg` / `.mp4` with PUT
/// signed by AWS SigV4. If the video upload fails the poster is deleted again.
/// Throws RenderError "io" (retryable for 5xx and network errors).
Published publish_s3(const std::string& video, const std::string& poster, const S3Config& cfg,
                     const std::string& name);

/// The poster path for a video path: same name, .jpg extension.
std::string poster_path_for(const std::string& video_path);

/// Lower-case hex SHA-256 of a byte range (used for x-amz-content-sha256).
std::string sha256_hex(const void* data, std::size_t size);

}  // namespace pv
