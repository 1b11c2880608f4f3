// SPDX-License-Identifier: MIT
// libFuzzer target for the child event protocol: arbitrary bytes, as a child
// could write them on its event pipe, go through LineSplitter in chunks and
// every line through parse_event_line. It must never throw or crash, and what
// it returns must respect PROTOCOL.md.
#include "events.hpp"

#include "fuzz_util.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace {

// Deeper than this, a result body is a hazard for the supervisor: nlohmann's
// dump() recurses once per level and overflows the stack somewhere past ~50,000
// levels, which a 1 MiB line can reach. Any sane limit the parser picks passes.
constexpr std::size_t kSafeDepth = 1000;

void expect(bool ok, const char* what) {
    if (!ok) pv::fuzz::broken("fuzz_events", what);
}

void check_event(std::string_view line) {
    std::string why;
    auto ev = pv::parse_event_line(line, why);
    if (!ev) {
        expect(!why.empty(), "rejected line without a reason");
        if (pv::fuzz::enforced("events-why-utf8") && pv::fuzz::valid_utf8(line)) {
            expect(pv::fuzz::valid_utf8(why), "reason is not valid UTF-8 for a valid line");
        }
        return;
    }
    if (auto* p = std::get_if<pv::ProgressEvent>(&*ev)) {
        expect(std::isfinite(p->percent) && p->percent >= 0 && p->percent <= 100,
               "progress percent outside 0..100");
    } else if (auto* r = std::get_if<pv::ResultEvent>(&*ev)) {
        expect(r->body.is_object(), "result body is not an object");
        expect(!r->body.contains("type"), "result body keeps \"type\"");
        // The supervisor stores the body as jsonb, so it dumps it: that must
        // neither throw nor recurse without bound for anything accepted.
        if (pv::fuzz::enforced("events-result-depth")) {
            expect(pv::fuzz::depth(r->body) <= kSafeDepth, "result body nested too deeply");
            (void)r->body.dump();
        }
    } else if (auto* e = std::get_if<pv::ErrorEvent>(&*ev)) {
        expect(!e->error_type.empty(), "error event without error_type");
    }
}

void check_line(std::string_view line, bool overlong) {
    expect(line.size() <= pv::LineSplitter::kMaxLine, "line longer than kMaxLine");
    if (!overlong) check_event(line);  // the supervisor skips overlong lines unparsed
}

/// Lines at and just past kMaxLine: cut at the limit, flagged only when longer,
/// and the line after them is whole again. Checked once at start-up: 1 MiB per
/// input would slow fuzzing a thousandfold.
void check_overlong() {
    for (std::size_t extra : {0, 1, 2}) {
        pv::LineSplitter splitter;
        std::string filler(pv::LineSplitter::kMaxLine + extra, 'x');
        std::size_t lines = 0;
        splitter.feed(filler, [&](std::string_view, bool) { ++lines; });
        expect(lines == 0, "a line was reported before its newline");
        splitter.feed("\n{\"type\":\"progress\",\"percent\":5}\n",
                      [&](std::string_view line, bool overlong) {
                          if (lines++ == 0) {
                              expect(overlong == (extra > 0), "overlong flag is wrong");
                              expect(line.size() == pv::LineSplitter::kMaxLine,
                                     "overlong line not cut at kMaxLine");
                          } else {
                              expect(!overlong, "the line after an overlong one is flagged");
                              std::string why;
                              expect(pv::parse_event_line(line, why).has_value(),
                                     "the line after an overlong one is damaged");
                          }
                      });
        expect(lines == 2, "lines lost after an overlong line");
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    check_overlong();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);

    // The first byte picks the read size, as reads from a pipe split the
    // stream at arbitrary points.
    std::size_t chunk = size ? static_cast<std::size_t>(data[0] % 64) + 1 : 1;
    pv::LineSplitter splitter;
    std::vector<std::string> lines;
    for (std::size_t off = 0; off < bytes.size(); off += chunk) {
        splitter.feed(bytes.substr(off, chunk), [&](std::string_view line, bool overlong) {
            lines.emplace_back(line);
            check_line(line, overlong);
        });
    }
    // An unterminated last line is what a child leaves when it dies mid-write.
    check_event(splitter.pending());

    // How reads split the stream must not change the lines.
    pv::LineSplitter whole;
    std::size_t k = 0;
    whole.feed(bytes, [&](std::string_view line, bool) {
        expect(k < lines.size() && lines[k] == line, "lines depend on how reads split the stream");
        ++k;
    });
    expect(k == lines.size() && whole.pending() == splitter.pending(),
           "lines depend on how reads split the stream");

    // Whole input as one line, so the parser also sees raw newlines inside.
    check_event(bytes);
    return 0;
}
