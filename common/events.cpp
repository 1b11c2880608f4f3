// SPDX-License-Identifier: MIT
#include "events.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>

#include "text_excerpt.hpp"

namespace pv {

namespace {

constexpr int kMaxEventDepth = 64;

/// Deepest nesting of [ and { outside JSON strings (a bound, not a parse).
int nesting_depth(std::string_view text) {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            deepest = std::max(deepest, ++depth);
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return deepest;
}

std::optional<std::string> string_field(const nlohmann::json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_string())
        return std::nullopt;
    return it->get<std::string>();
}

}  // namespace

std::optional<ChildEvent> parse_event_line(std::string_view line, std::string& why) {
    // A deeply nested body parses, but storing or logging it (dump) recurses once
    // per level; a child must not be able to overflow the supervisor's stack.
    if (nesting_depth(line) > kMaxEventDepth) {
        why = "nested deeper than " + std::to_string(kMaxEventDepth) + " levels";
        return std::nullopt;
    }
    auto obj = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (obj.is_discarded() || !obj.is_object()) {
        why = "not a JSON object";
        return std::nullopt;
    }
    auto type = string_field(obj, "type");
    if (!type) {
        why = "missing string field \"type\"";
        return std::nullopt;
    }
    if (*type == "progress") {
        auto it = obj.find("percent");
        if (it == obj.end() || !it->is_number()) {
            why = "progress without numeric \"percent\"";
            return std::nullopt;
        }
        double pct = it->get<double>();
        if (!std::isfinite(pct))
            pct = 0;
        ProgressEvent ev;
        ev.percent = std::fmin(100.0, std::fmax(0.0, pct));
        ev.stage = string_field(obj, "stage").value_or("");
        return ev;
    }
    if (*type == "result") {
        obj.erase("type");
        return ResultEvent{std::move(obj)};
    }
    if (*type == "error") {
        ErrorEvent ev;
        auto et = string_field(obj, "error_type");
        auto msg = string_field(obj, "message");
        if (!et || et->empty() || !msg) {
            why = "error without string \"error_type\" and \"message\"";
            return std::nullopt;
        }
        ev.error_type = *et;
        ev.message = *msg;
        auto r = obj.find("retryable");
        ev.retryable = r != obj.end() && r->is_boolean() && r->get<bool>();
        return ev;
    }
    why = "unknown event type \"" + utf8_prefix(*type, 40) + "\"";
    return std::nullopt;
}

void EventWriter::progress(double percent, std::string_view stage) {
    write_line({{"type", "progress"}, {"percent", percent}, {"stage", stage}});
}

void EventWriter::result(const nlohmann::json& body) {
    nlohmann::json obj = body;
    obj["type"] = "result";
    write_line(obj);
}

void EventWriter::error(std::string_view error_type, std::string_view message, bool retryable) {
    write_line({{"type", "error"},
                {"error_type", error_type},
                {"message", message},
                {"retryable", retryable}});
}

void EventWriter::write_line(const nlohmann::json& obj) {
    if (m_fd < 0)
        return;
    std::string line = obj.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line.push_back('\n');
    std::size_t off = 0;
    while (off < line.size()) {
        ssize_t n = ::write(m_fd, line.data() + off, line.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            // The supervisor went away; further events have nowhere to go.
            m_fd = -1;
            return;
        }
        off += static_cast<std::size_t>(n);
    }
}

}  // namespace pv
