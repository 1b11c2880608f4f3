// SPDX-License-Identifier: MIT
// One image scene's pictures: the photo is decoded once, turned upright from
// its EXIF orientation, cropped to cover the frame at the largest zoom, and
// darkened; each frame is then a sub-pixel bilinear zoom into that buffer.
#pragma once

#include "av_ptr.hpp"
#include "resample.hpp"

#include <string>

namespace pv {

struct ImageSceneParams {
    int width = 1080;  // output frame size (even)
    int height = 1920;
    double zoom = 1.5;    // zoom at the last frame; the first frame is 1.0
    double darken = 0.5;  // brightness multiplier
    long frames = 1;      // scene length in frames
};

class ImageSource {
public:
    /// Decodes `path`. Throws std::runtime_error or AvError with a short reason;
    /// the caller adds the scene and file name.
    ImageSource(const std::string& path, const ImageSceneParams& params);

    /// Frame `k` (0-based) of the scene, yuv420p at the output size.
    FramePtr frame(long k);

    int source_width() const { return m_src_w; }  // upright size of the photo
    int source_height() const { return m_src_h; }

private:
    ImageSceneParams m_params;
    FramePtr m_big;  // yuv420p, (width*zoom) x (height*zoom), darkened
    ResampleScratch m_scratch;
    int m_src_w = 0;
    int m_src_h = 0;
};

}  // namespace pv
