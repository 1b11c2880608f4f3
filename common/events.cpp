// SPDX-License-Identifier: MIT
#include "events.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>

namespace pv {

namespace {

std::optional<std::string> string_field(const nlohmann::json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_string())
        return std::nullopt;
    return it->get<std::string>();
}

}  // namespace

std::optional<ChildEvent> parse_event_line(std::string_view line, std::string& why) {
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
    why = "unknown event type \"" + type->substr(0, 40) + "\"";
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
