// SPDX-License-Identifier: MIT
// Logging setup shared by every program: spdlog, with JSON lines when stdout is
// not a terminal and readable text when it is.
#pragma once

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace pv::log {

enum class Format { Auto, Json, Text };

/// Parses "auto", "json" or "text"; throws std::invalid_argument otherwise.
Format parse_format(std::string_view name);

/// Installs the default logger (writing to stderr when `to_stderr`, else stdout).
void setup(Format format, spdlog::level::level_enum level, bool to_stderr = false);

/// Logs one event: a fixed phrase plus fields. In JSON mode the line is
/// {"time","level","message",...fields}; in text mode "message key=value ...".
void event(spdlog::level::level_enum level, std::string_view message,
           const nlohmann::json& fields = nlohmann::json::object());

inline void info(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
    event(spdlog::level::info, m, f);
}
inline void warn(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
    event(spdlog::level::warn, m, f);
}
inline void error(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
    event(spdlog::level::err, m, f);
}
inline void debug(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
    event(spdlog::level::debug, m, f);
}

}  // namespace pv::log
