// SPDX-License-Identifier: MIT
// Helpers for the renderer tests: scratch directories, generated media, and
// probing of the rendered MP4 with libavformat.
#pragma once

#include "renderer.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace pvtest {

/// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return m_path; }
    std::string file(const std::string& name) const { return m_path + "/" + name; }

private:
    std::string m_path;
};

/// The shared media folder (PV_MEDIA_DIR or /work/shared/media).
std::string media(const std::string& relative);

/// Runs a shell command; fails the test when it exits non-zero.
void run(const std::string& command);

/// A job with one image scene per path, at w x h, writing into `dir`.
pv::RenderJob image_job(const TempDir& dir, const std::vector<std::string>& images, int w, int h,
                        double seconds);

/// Inserts an EXIF APP1 segment carrying Orientation=`orientation` right after
/// the SOI marker of the JPEG at `path` (rewritten in place).
void add_exif_orientation(const std::string& path, int orientation);

/// Writes a JPEG whose file header claims w x h pixels (the scan data is from
/// a small picture; only the header matters for the size check).
void write_jpeg_claiming_size(const std::string& path, int w, int h);

struct StreamInfo {
    bool present = false;
    std::string codec;
    std::string profile;
    int width = 0;
    int height = 0;
    std::string pix_fmt;
    double fps = 0;
    long packets = 0;
    double duration = 0;  // from packet timestamps, seconds
    int sample_rate = 0;
    int channels = 0;
};

struct FileInfo {
    StreamInfo video;
    StreamInfo audio;
    double duration = 0;  // container
    bool moov_before_mdat = false;
};

FileInfo probe(const std::string& path);

/// Top-level MP4 atom types in file order.
std::vector<std::string> top_level_atoms(const std::string& path);

/// One decoded picture, packed RGB24.
struct Rgb {
    int width = 0;
    int height = 0;
    std::vector<std::uint8_t> data;
    const std::uint8_t* at(int x, int y) const { return &data[(std::size_t(y) * width + x) * 3]; }
};

/// Decodes picture number `index` (0-based, in presentation order).
Rgb video_frame(const std::string& path, long index);

/// Mean absolute difference of two pictures over a rectangle (all channels).
double mean_abs_diff(const Rgb& a, const Rgb& b, int x, int y, int w, int h);

/// Decoded audio of the MP4 as interleaved stereo float at 48 kHz.
std::vector<float> audio_samples(const std::string& path);

/// Resident set size of this process, in kB.
long rss_kb();

/// The RenderError `job` fails with (a test failure when it renders).
pv::RenderError render_error(const pv::RenderJob& job);

}  // namespace pvtest
