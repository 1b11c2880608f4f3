// SPDX-License-Identifier: MIT
// The child event protocol: JSON lines a child writes on its event pipe.
// PROTOCOL.md beside this file is the description other workloads implement.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace pv {

struct ProgressEvent {
    double percent = 0;  // 0..100
    std::string stage;   // download, narration, render, finalize, ...
};

struct ResultEvent {
    nlohmann::json body;  // the whole object; stored as tasks.result
};

struct ErrorEvent {
    std::string error_type;
    std::string message;
    bool retryable = false;
};

using ChildEvent = std::variant<ProgressEvent, ResultEvent, ErrorEvent>;

/// Parses one line (without the newline). Returns nullopt and sets `why` when the
/// line is not a valid event; never throws.
std::optional<ChildEvent> parse_event_line(std::string_view line, std::string& why);

/// Splits a byte stream into lines, keeping at most kMaxLine bytes of one line;
/// longer lines are reported as overlong and skipped up to their newline.
class LineSplitter {
public:
    static constexpr std::size_t kMaxLine = 1 << 20;

    /// Feeds bytes; calls on_line(std::string_view line, bool overlong) per line.
    template <class F>
    void feed(std::string_view bytes, F&& on_line) {
        for (char c : bytes) {
            if (c == '\n') {
                on_line(std::string_view(m_buf), m_overlong);
                m_buf.clear();
                m_overlong = false;
            } else if (m_buf.size() < kMaxLine) {
                m_buf.push_back(c);
            } else {
                m_overlong = true;
            }
        }
    }
    /// Bytes of an unterminated last line (the child died mid-write).
    const std::string& pending() const { return m_buf; }

private:
    std::string m_buf;
    bool m_overlong = false;
};

/// Writes events as JSON lines to a file descriptor (used by children).
/// Each event is one write(2) of at most PIPE_BUF bytes where possible, so lines
/// from one writer never interleave. A closed or absent fd makes it a no-op.
class EventWriter {
public:
    explicit EventWriter(int fd = -1) : m_fd{fd} {}
    void progress(double percent, std::string_view stage);
    void result(const nlohmann::json& body);
    void error(std::string_view error_type, std::string_view message, bool retryable);
    int fd() const { return m_fd; }

private:
    void write_line(const nlohmann::json& obj);
    int m_fd;
};

}  // namespace pv
