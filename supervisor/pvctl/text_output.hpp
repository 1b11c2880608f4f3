// SPDX-License-Identifier: MIT
// Turning database values into the short texts pvctl shows people: signal
// names, megabytes, durations, timestamps, progress bars.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace pv::ctl {

/// "SIGKILL" for 9; "SIG42" for a number without a name.
std::string signal_name(int signo);

/// How an attempt ended: "exit 0", "killed by SIGKILL (9)", "running", or "-".
std::string describe_exit(const nlohmann::json& attempt);

/// Bytes as megabytes with one decimal: "61.2 MB"; "-" for null.
std::string format_megabytes(const nlohmann::json& bytes);

/// Seconds for people: "0.4 s", "12.0 s", "3 m 05 s", "2 h 01 m"; "-" for null.
std::string format_seconds(const nlohmann::json& seconds);
std::string format_seconds(double seconds);

/// An ISO timestamp from PostgreSQL shortened to "2026-12-03 16:24:33"; "-" for null.
std::string format_timestamp(const nlohmann::json& iso);

/// The string, or `fallback` when the value is null or not a string.
std::string text_or(const nlohmann::json& value, std::string_view fallback = "-");

/// Cuts to at most `width` characters (bytes), marking the cut with "...".
std::string truncate(std::string_view text, std::size_t width);

/// "[#########-----------]  42%": `width` is the bar's inner width.
std::string progress_bar(double percent, int width);

}  // namespace pv::ctl
