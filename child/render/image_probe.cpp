// SPDX-License-Identifier: MIT
#include "image_probe.hpp"

#include <cctype>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <vector>

namespace pv {
namespace {

// A photo is at most tens of megabytes; reading it whole keeps the JPEG walk simple.
constexpr std::size_t kMaxImageFileBytes = 256u << 20;

std::vector<std::uint8_t> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot open file");
    in.seekg(0, std::ios::end);
    auto size = static_cast<std::size_t>(in.tellg());
    if (size > kMaxImageFileBytes)
        throw std::runtime_error("file too large");
    in.seekg(0);
    std::vector<std::uint8_t> data(size);
    in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size));
    if (!in)
        throw std::runtime_error("cannot read file");
    return data;
}

int be16(const std::uint8_t* p) {
    return (p[0] << 8) | p[1];
}

long long be32(const std::uint8_t* p) {
    return (static_cast<long long>(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
}

std::string printable_prefix(const std::vector<std::uint8_t>& data) {
    std::string s;
    for (std::size_t i = 0; i < data.size() && s.size() < 12; ++i) {
        auto c = static_cast<char>(data[i]);
        s += std::isprint(static_cast<unsigned char>(c)) ? c : '.';
    }
    return s;
}

bool is_sof(int marker) {
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
    return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

// Walks the marker segments and entropy-coded data up to EOI.
ImageHeader walk_jpeg(const std::vector<std::uint8_t>& d) {
    ImageHeader h{ImageKind::Jpeg};
    std::size_t pos = 2;
    const std::size_t n = d.size();
    while (true) {
        if (pos + 2 > n)
            throw std::runtime_error("truncated JPEG: no end-of-image marker");
        if (d[pos] != 0xFF)
            throw std::runtime_error("corrupt JPEG: marker expected");
        int marker = d[pos + 1];
        if (marker == 0xFF) {  // fill byte
            ++pos;
            continue;
        }
        pos += 2;
        if (marker == 0xD9)
            break;
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7))
            continue;
        if (pos + 2 > n)
            throw std::runtime_error("truncated JPEG: no end-of-image marker");
        int len = be16(&d[pos]);
        if (len < 2 || pos + static_cast<std::size_t>(len) > n) {
            throw std::runtime_error("truncated JPEG: no end-of-image marker");
        }
        if (is_sof(marker) && len >= 7) {
            h.height = be16(&d[pos + 3]);
            h.width = be16(&d[pos + 5]);
        }
        pos += static_cast<std::size_t>(len);
        if (marker != 0xDA)
            continue;

        // Entropy-coded data runs to the next marker that is not a stuffed
        // zero or a restart marker.
        while (true) {
            if (pos + 1 >= n)
                throw std::runtime_error("truncated JPEG: no end-of-image marker");
            if (d[pos] == 0xFF) {
                int next = d[pos + 1];
                if (next != 0x00 && next != 0xFF && !(next >= 0xD0 && next <= 0xD7))
                    break;
            }
            ++pos;
        }
    }
    if (h.width == 0 || h.height == 0)
        throw std::runtime_error("corrupt JPEG: no frame header");
    return h;
}

}  // namespace

ImageHeader probe_image_header(const std::string& path) {
    std::vector<std::uint8_t> d = read_file(path);
    if (d.size() < 16)
        throw std::runtime_error("file too small to be an image");

    ImageHeader h;
    static const std::uint8_t kPng[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) {
        h = walk_jpeg(d);
    } else if (std::equal(std::begin(kPng), std::end(kPng), d.begin())) {
        if (d.size() < 24)
            throw std::runtime_error("truncated PNG");
        h = {ImageKind::Png, static_cast<int>(std::min(be32(&d[16]), 1LL << 30)),
             static_cast<int>(std::min(be32(&d[20]), 1LL << 30))};
    } else if (d[0] == 'G' && d[1] == 'I' && d[2] == 'F') {
        h.kind = ImageKind::Gif;
    } else if (d[0] == 'R' && d[1] == 'I' && d[2] == 'F' && d[3] == 'F' && d[8] == 'W' &&
               d[9] == 'E' && d[10] == 'B' && d[11] == 'P') {
        h.kind = ImageKind::Webp;
    } else if (d[0] == 'B' && d[1] == 'M') {
        h.kind = ImageKind::Bmp;
    } else if ((d[0] == 'I' && d[1] == 'I' && d[2] == 42) ||
               (d[0] == 'M' && d[1] == 'M' && d[3] == 42)) {
        h.kind = ImageKind::Tiff;
    } else {
        throw std::runtime_error("not an image (starts with \"" + printable_prefix(d) + "\")");
    }

    if (h.width > kMaxImageSide || h.height > kMaxImageSide ||
        static_cast<long long>(h.width) * h.height > kMaxImagePixels) {
        throw std::runtime_error("image too large: " + std::to_string(h.width) + "x" +
                                 std::to_string(h.height));
    }
    return h;
}

}  // namespace pv
