// SPDX-License-Identifier: MIT
#include "sniff.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "sys_error.hpp"
#include "unique_fd.hpp"

namespace pv {

namespace {

bool starts_with(std::string_view s, std::string_view prefix, std::size_t at = 0) {
    return s.size() >= at + prefix.size() && s.substr(at, prefix.size()) == prefix;
}

std::string lower_prefix(std::string_view s, std::size_t n) {
    std::string out(s.substr(0, std::min(n, s.size())));
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

/// MPEG audio frame header: 11 sync bits, a valid version, layer, bitrate and
/// sample-rate index.
bool is_mpeg_audio_frame(std::string_view s) {
    if (s.size() < 4)
        return false;
    auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    if (b(0) != 0xFF || (b(1) & 0xE0) != 0xE0)
        return false;
    unsigned version = (b(1) >> 3) & 3;
    unsigned layer = (b(1) >> 1) & 3;
    unsigned bitrate = b(2) >> 4;
    unsigned rate = (b(2) >> 2) & 3;
    return version != 1 && layer != 0 && bitrate != 0 && bitrate != 15 && rate != 3;
}

bool is_adts(std::string_view s) {
    if (s.size() < 7)
        return false;
    auto b0 = static_cast<unsigned char>(s[0]);
    auto b1 = static_cast<unsigned char>(s[1]);
    // ADTS: 12 sync bits, layer 00.
    return b0 == 0xFF && (b1 & 0xF6) == 0xF0;
}

Sniffed sniff_ftyp(std::string_view head) {
    std::string_view brand = head.substr(8, 4);
    if (brand == "M4A " || brand == "M4B " || brand == "M4P ") {
        return {ContentClass::Audio, "m4a"};
    }
    if (brand == "qt  ")
        return {ContentClass::Video, "mov"};
    if (brand == "avif" || brand == "avis" || brand == "heic" || brand == "heix" ||
        brand == "mif1") {
        // Still-image formats in an ISO container; the renderer does not read them.
        return {ContentClass::Unknown, "heif"};
    }
    return {ContentClass::AudioOrVideo, "mp4"};
}

Sniffed sniff_text(std::string_view head) {
    std::string_view s = head;
    if (starts_with(s, "\xEF\xBB\xBF"))
        s.remove_prefix(3);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    std::string low = lower_prefix(s, 64);
    if (starts_with(low, "<!doctype html") || starts_with(low, "<html") ||
        starts_with(low, "<head") || starts_with(low, "<body") || starts_with(low, "<!--") ||
        starts_with(low, "<meta") || starts_with(low, "<title")) {
        return {ContentClass::Html, "html"};
    }
    if (starts_with(low, "<?xml") || starts_with(low, "<svg"))
        return {ContentClass::Xml, "xml"};
    if (starts_with(low, "{") || starts_with(low, "["))
        return {ContentClass::Json, "json"};
    bool printable = !s.empty();
    for (unsigned char c : s.substr(0, 256)) {
        if (c < 0x09 || (c > 0x0D && c < 0x20)) {
            printable = false;
            break;
        }
    }
    if (printable)
        return {ContentClass::Text, "text"};
    return {};
}

std::string_view class_phrase(ContentClass cls) {
    switch (cls) {
        case ContentClass::Image:
            return "an image";
        case ContentClass::Audio:
            return "an audio file";
        case ContentClass::Video:
            return "a video";
        case ContentClass::AudioOrVideo:
            return "a media container";
        case ContentClass::Html:
            return "an HTML page";
        case ContentClass::Xml:
            return "an XML or SVG document";
        case ContentClass::Json:
            return "a JSON document";
        case ContentClass::Text:
            return "a text file";
        case ContentClass::Unknown:
            break;
    }
    return "of an unrecognised type";
}

}  // namespace

Sniffed sniff_bytes(std::string_view h) {
    if (starts_with(h, "\xFF\xD8\xFF"))
        return {ContentClass::Image, "jpeg"};
    if (starts_with(h, "\x89PNG\r\n\x1A\n"))
        return {ContentClass::Image, "png"};
    if (starts_with(h, "GIF87a") || starts_with(h, "GIF89a"))
        return {ContentClass::Image, "gif"};
    if (starts_with(h, "RIFF") && starts_with(h, "WEBP", 8))
        return {ContentClass::Image, "webp"};
    if (starts_with(h, "BM") && h.size() >= 26 && h[6] == 0 && h[7] == 0 && h[8] == 0 &&
        h[9] == 0) {
        return {ContentClass::Image, "bmp"};
    }
    if (starts_with(h, "RIFF") && starts_with(h, "WAVE", 8))
        return {ContentClass::Audio, "wav"};
    if (starts_with(h, "RIFF") && starts_with(h, "AVI ", 8))
        return {ContentClass::Video, "avi"};
    if (starts_with(h, "ID3"))
        return {ContentClass::Audio, "mp3"};
    if (starts_with(h, "fLaC"))
        return {ContentClass::Audio, "flac"};
    if (starts_with(h, "OggS")) {
        // Theora in Ogg is video; Vorbis, Opus and FLAC in Ogg are audio.
        if (h.find("\x80theora") != std::string_view::npos)
            return {ContentClass::Video, "ogv"};
        return {ContentClass::Audio, "ogg"};
    }
    if (starts_with(h, "ftyp", 4))
        return sniff_ftyp(h);
    if (starts_with(h, "\x1A\x45\xDF\xA3")) {
        std::string_view doc = h.substr(0, std::min<std::size_t>(h.size(), 64));
        bool webm = doc.find("webm") != std::string_view::npos;
        return {ContentClass::AudioOrVideo, webm ? "webm" : "matroska"};
    }
    if (is_mpeg_audio_frame(h))
        return {ContentClass::Audio, "mp3"};
    if (is_adts(h))
        return {ContentClass::Audio, "aac"};
    return sniff_text(h);
}

Sniffed sniff_file(const std::string& path) {
    UniqueFd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (!fd)
        throw_sys("open " + path);
    std::string head(kSniffBytes, '\0');
    std::size_t got = 0;
    while (got < head.size()) {
        ssize_t n = ::read(fd.get(), head.data() + got, head.size() - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw_sys("read " + path);
        if (n == 0)
            break;
        got += static_cast<std::size_t>(n);
    }
    head.resize(got);
    return sniff_bytes(head);
}

std::string_view kind_name(AssetKind kind) {
    switch (kind) {
        case AssetKind::Image:
            return "an image";
        case AssetKind::Video:
            return "a video";
        case AssetKind::Audio:
            return "an audio file";
    }
    return "media";
}

std::optional<std::string> check_content(const Sniffed& s, std::uint64_t size, AssetKind kind) {
    if (size == 0)
        return fmt::format("is empty, not {}", kind_name(kind));
    if (size < kMinAssetBytes) {
        return fmt::format("is only {} byte{}, too small to be {}", size, size == 1 ? "" : "s",
                           kind_name(kind));
    }
    bool fits = false;
    switch (kind) {
        case AssetKind::Image:
            fits = s.cls == ContentClass::Image;
            break;
        case AssetKind::Video:
            fits = s.cls == ContentClass::Video || s.cls == ContentClass::AudioOrVideo;
            break;
        case AssetKind::Audio:
            fits = s.cls == ContentClass::Audio || s.cls == ContentClass::AudioOrVideo;
            break;
    }
    if (fits)
        return std::nullopt;
    if (s.cls == ContentClass::Unknown && s.format == "heif") {
        return std::string("is a HEIF/AVIF image, which is not supported; use JPEG, PNG or WebP");
    }
    return fmt::format("is {}{}, not {}", class_phrase(s.cls),
                       s.format.empty() || s.cls == ContentClass::Html ||
                               s.cls == ContentClass::Text || s.cls == ContentClass::Json ||
                               s.cls == ContentClass::Xml
                           ? ""
                           : " (" + s.format + ")",
                       kind_name(kind));
}

}  // namespace pv
