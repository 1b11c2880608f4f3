// SPDX-License-Identifier: MIT
// Reads an image file's header without decoding it: sniffs the format from its
// magic bytes, reports the pixel size, and walks a JPEG's segments to its end
// marker so a truncated download is refused before decoding.
#pragma once

#include <string>

namespace pv {

enum class ImageKind { Jpeg, Png, Gif, Webp, Bmp, Tiff };

struct ImageHeader {
    ImageKind kind = ImageKind::Jpeg;
    int width = 0;  // 0 when the header does not say (GIF, WebP, BMP, TIFF)
    int height = 0;
};

/// Largest image accepted, checked from the header before any pixel is decoded.
inline constexpr long long kMaxImagePixels = 100'000'000;
inline constexpr int kMaxImageSide = 20000;

/// Returns the header of the image at `path`. Throws std::runtime_error with a
/// short reason ("not an image (starts with \"<!DOCTYPE\")", "truncated JPEG: no
/// end-of-image marker", "image too large: 30000x30000").
ImageHeader probe_image_header(const std::string& path);

}  // namespace pv
