// SPDX-License-Identifier: MIT
// Recognises media by its first bytes, never by a URL's extension, and decides
// whether a downloaded file fits the request field it was named in.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pv {

/// What a request field expects.
enum class AssetKind { Image, Video, Audio };

/// What the bytes are. Container formats that hold either audio or video
/// (MP4 without an audio-only brand, Matroska/WebM) are AudioOrVideo.
enum class ContentClass { Image, Audio, Video, AudioOrVideo, Html, Xml, Json, Text, Unknown };

struct Sniffed {
    ContentClass cls = ContentClass::Unknown;
    std::string format;  // "jpeg", "png", "mp3", "mp4", ... or "" when unknown
};

/// Bytes needed from the start of a file to recognise it.
inline constexpr std::size_t kSniffBytes = 512;

/// Smallest file accepted as media; anything shorter is refused as "tiny".
inline constexpr std::uint64_t kMinAssetBytes = 32;

Sniffed sniff_bytes(std::string_view head);

/// Reads the first kSniffBytes of `path`; throws std::system_error on I/O errors.
Sniffed sniff_file(const std::string& path);

std::string_view kind_name(AssetKind kind);  // "an image", "a video", "an audio file"

/// Checks a file for `kind` and returns the problem in words, e.g.
/// "is an HTML page, not an image" or "is only 3 bytes, too small to be an
/// audio file"; nullopt when the file fits.
std::optional<std::string> check_content(const Sniffed& s, std::uint64_t size, AssetKind kind);

}  // namespace pv
