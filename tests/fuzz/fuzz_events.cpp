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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);

    // The first byte picks the read size, as reads from a pipe split the
    // stream at arbitrary points.
    std::size_t chunk = size ? static_cast<std::size_t>(data[0] % 64) + 1 : 1;
    pv::LineSplitter splitter;
    std::size_t lines = 0;

    // Now and then, start with a line just past the limit so that the
    // overlong path and the recovery after it are exercised too.
    if (size >= 3 && data[1] == 0xff && data[2] == 0xff) {
        std::string filler(pv::LineSplitter::kMaxLine + data[0] % 3, 'x');
        bool seen = false;
        splitter.feed(filler, [&](std::string_view, bool) { seen = true; });
        expect(!seen, "a line was reported before its newline");
        splitter.feed("\n", [&](std::string_view line, bool overlong) {
            expect(overlong == (filler.size() > pv::LineSplitter::kMaxLine),
                   "overlong flag does not match the line length");
            expect(line.size() == pv::LineSplitter::kMaxLine, "overlong line not cut at kMaxLine");
        });
    }
    for (std::size_t off = 0; off < bytes.size(); off += chunk) {
        splitter.feed(bytes.substr(off, chunk), [&](std::string_view line, bool overlong) {
            ++lines;
            check_line(line, overlong);
        });
    }
    // An unterminated last line is what a child leaves when it dies mid-write.
    check_event(splitter.pending());

    // Whole input as one line, so the parser also sees raw newlines inside.
    check_event(bytes);
    return 0;
}
