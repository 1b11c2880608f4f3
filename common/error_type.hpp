// SPDX-License-Identifier: MIT
// The stable error_type words stored in tasks.error_type and task_attempts.outcome.
// The README's error table explains each; never rename one, only add.
#pragma once

#include <string_view>

namespace pv::error_type {

// Decided by the supervisor from how the child died.
inline constexpr std::string_view kMemoryLimit = "memory_limit";
inline constexpr std::string_view kTimeout = "timeout";
inline constexpr std::string_view kCancelled = "cancelled";
inline constexpr std::string_view kShutdown = "shutdown";
inline constexpr std::string_view kSignal = "signal";
inline constexpr std::string_view kExitCode = "exit_code";
inline constexpr std::string_view kProtocol = "protocol";
inline constexpr std::string_view kSpawn = "spawn";
inline constexpr std::string_view kWorkerLost = "worker_lost";

// Reported by the renderer child in its error event.
inline constexpr std::string_view kInvalidRequest = "invalid_request";
inline constexpr std::string_view kAsset = "asset";
inline constexpr std::string_view kEncoding = "encoding";
inline constexpr std::string_view kIo = "io";
inline constexpr std::string_view kInternal = "internal";

}  // namespace pv::error_type
