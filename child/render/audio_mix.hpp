// SPDX-License-Identifier: MIT
// Audio for the whole reel: decoding any input to 48 kHz stereo float, and the
// sample-accurate mix where scenes overlap during crossfades. The mix adds
// signals with fixed gains; nothing renormalises when one of them stops.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace pv {

inline constexpr int kSampleRate = 48000;
inline constexpr int kChannels = 2;

/// Interleaved stereo float samples at kSampleRate.
struct AudioBuffer {
    std::vector<float> samples;
    long frames() const { return static_cast<long>(samples.size() / kChannels); }
    double seconds() const { return static_cast<double>(frames()) / kSampleRate; }
};

/// Decodes the first audio stream of `path`, stopping after `max_seconds`.
/// The length comes from the decoded samples. Throws AvError or
/// std::runtime_error with a short reason.
AudioBuffer decode_audio(const std::string& path,
                         double max_seconds = std::numeric_limits<double>::infinity());

/// Converts mono signed 16-bit samples at `rate` (espeak-ng output).
AudioBuffer resample_mono_s16(const std::vector<std::int16_t>& samples, int rate);

class AudioMix {
public:
    explicit AudioMix(long frames) : m_samples(static_cast<size_t>(frames) * kChannels, 0.f) {}

    /// Adds src[0 .. length) at sample frame `at`, scaled by `gain` and by a
    /// linear fade-in over the first `fade_in` and fade-out over the last
    /// `fade_out` frames of the segment. Parts beyond the mix are dropped.
    void add(const AudioBuffer& src, long at, long length, double gain, long fade_in = 0,
             long fade_out = 0);

    /// Clamps peaks to -0.1 dBFS; call once before reading.
    void limit();

    long frames() const { return static_cast<long>(m_samples.size() / kChannels); }
    const float* data() const { return m_samples.data(); }

private:
    std::vector<float> m_samples;
};

}  // namespace pv
