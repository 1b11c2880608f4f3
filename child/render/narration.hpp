// SPDX-License-Identifier: MIT
// Text to speech with the espeak-ng library: the voice's samples at 48 kHz
// stereo, plus the start time of every word from espeak's own word events
// (the subtitles are timed from these; there is no speech recognition).
#pragma once

#include "audio_mix.hpp"

#include <functional>
#include <string>
#include <vector>

namespace pv {

struct WordTiming {
    std::string word;  // as written in the text (UTF-8)
    double start = 0;  // seconds from the start of the speech
    double end = 0;    // start of the next word, or the end of the speech
};

struct Speech {
    AudioBuffer audio;
    std::vector<WordTiming> words;
};

/// Synthesises `text` with espeak-ng voice `voice` ("en", "de", ...).
/// `progress` gets 0..1 as the text is spoken. Safe to call from several
/// threads (calls are serialised: espeak-ng keeps global state). Throws
/// std::runtime_error when espeak-ng cannot start or does not know the voice.
Speech synthesize(const std::string& text, const std::string& voice,
                  const std::function<void(double)>& progress = {});

}  // namespace pv
