// SPDX-License-Identifier: MIT
#include "narration.hpp"

#include <espeak-ng/speak_lib.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <mutex>
#include <stdexcept>

namespace pv {
namespace {

std::mutex g_espeak_mutex;
int g_espeak_rate = 0;  // 0 = not initialised yet

struct SynthState {
    std::vector<std::int16_t> samples;
    struct Event {
        int char_pos;  // 1-based, in characters
        int char_len;
        int ms;
    };
    std::vector<Event> words;
    const std::function<void(double)>* progress = nullptr;
    std::size_t total_chars = 1;
};

// The synthesis in progress; espeak-ng calls back on the caller's thread
// while g_espeak_mutex is held.
SynthState* g_state = nullptr;

int on_synth(short* wav, int count, espeak_EVENT* events) {
    SynthState* state = g_state;
    if (!state)
        return 0;
    for (espeak_EVENT* e = events; e && e->type != espeakEVENT_LIST_TERMINATED; ++e) {
        // Zero-length word events mark pauses, not written words.
        if (e->type != espeakEVENT_WORD || e->length <= 0)
            continue;
        state->words.push_back({e->text_position, e->length, e->audio_position});
        if (state->progress && *state->progress) {
            // Nothing may unwind through espeak-ng's C frames.
            try {
                (*state->progress)(static_cast<double>(e->text_position) / state->total_chars);
            } catch (...) {
                state->progress = nullptr;
            }
        }
    }
    if (wav && count > 0)
        state->samples.insert(state->samples.end(), wav, wav + count);
    return 0;  // continue synthesis
}

std::size_t utf8_length(const std::string& s) {
    std::size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

// Byte offset of the character at 0-based index `chars`.
std::size_t utf8_offset(const std::string& s, std::size_t chars) {
    std::size_t i = 0;
    while (i < s.size() && chars > 0) {
        ++i;
        while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
        --chars;
    }
    return i;
}

// The whitespace-delimited token of `text` that holds byte `pos`.
std::pair<std::size_t, std::size_t> token_at(const std::string& text, std::size_t pos) {
    std::size_t end = pos;
    while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end]))) ++end;
    std::size_t start = pos;
    while (start > 0 && !std::isspace(static_cast<unsigned char>(text[start - 1]))) --start;
    return {start, end};
}

}  // namespace

Speech synthesize(const std::string& text, const std::string& voice,
                  const std::function<void(double)>& progress) {
    std::lock_guard lock(g_espeak_mutex);
    // Initialised once per process: espeak_Terminate followed by a second
    // espeak_Initialize hangs in espeak-ng 1.51.
    // Limitation: espeak-ng keeps state between texts, so the same text can
    // come out a few milliseconds (first call: about 0.1 s) shorter or longer
    // from one synthesis to the next; scene lengths follow the actual speech.
    if (g_espeak_rate == 0) {
        int rate =
            espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 500, nullptr, espeakINITIALIZE_DONT_EXIT);
        if (rate <= 0) {
            throw std::runtime_error("espeak-ng: cannot initialise (espeak-ng-data missing?)");
        }
        g_espeak_rate = rate;
    }
    espeak_SetSynthCallback(on_synth);
    if (espeak_SetVoiceByName(voice.empty() ? "en" : voice.c_str()) != EE_OK) {
        throw std::runtime_error("espeak-ng: unknown voice \"" + voice + "\"");
    }

    SynthState state;
    state.progress = &progress;
    state.total_chars = std::max<std::size_t>(1, utf8_length(text));
    g_state = &state;
    espeak_ERROR rc = espeak_Synth(text.c_str(), text.size() + 1, 0, POS_CHARACTER, 0,
                                   espeakCHARS_UTF8, nullptr, nullptr);
    g_state = nullptr;
    if (rc != EE_OK)
        throw std::runtime_error("espeak-ng: synthesis failed");

    Speech speech;
    speech.audio = resample_mono_s16(state.samples, g_espeak_rate);
    const double total = speech.audio.seconds();
    std::size_t last_start = std::string::npos;
    for (const auto& e : state.words) {
        std::size_t pos = utf8_offset(text, static_cast<std::size_t>(std::max(0, e.char_pos - 1)));
        if (pos >= text.size())
            continue;
        // Several events inside one written token ("100%") become one word.
        auto [start, end] = token_at(text, pos);
        if (start == last_start || start == end)
            continue;
        last_start = start;
        speech.words.push_back({text.substr(start, end - start), e.ms / 1000.0, 0});
    }
    for (std::size_t i = 0; i < speech.words.size(); ++i) {
        speech.words[i].end = i + 1 < speech.words.size() ? speech.words[i + 1].start : total;
    }
    if (progress)
        progress(1.0);
    return speech;
}

}  // namespace pv
