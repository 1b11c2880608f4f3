// SPDX-License-Identifier: MIT
// The death classifier: decides why a child attempt ended from facts gathered after
// the child and its whole cgroup are dead. A pure function, so it is unit-tested
// without forking (tests/unit/death_test.cpp).
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cgroup.hpp"
#include "events.hpp"

namespace pv {

/// What the supervisor itself did to the child before it died.
enum class SupervisorAction { None, Timeout, Cancel, Shutdown, Watchdog };

const char* to_string(SupervisorAction action);

/// Extra evidence in rlimit mode, where no kernel OOM counter exists and a breach
/// shows up as ENOMEM inside the child (it then exits non-zero or aborts).
struct RlimitEvidence {
    std::uint64_t limit_bytes = 0;
    bool memory_error_text = false;  // stderr or the error event speaks of memory
};

/// True when `text` holds a typical allocation-failure message.
bool mentions_memory_failure(std::string_view text);

/// Everything known about one finished attempt.
struct DeathFacts {
    int wait_status = 0;  // from wait4
    CgroupStats stats;    // read after the cgroup emptied
    SupervisorAction action = SupervisorAction::None;
    std::optional<ErrorEvent> child_error;           // the child's own account, if it sent one
    bool got_result = false;                         // a result event arrived
    std::optional<int> spawn_errno;                  // the child failed before exec
    std::string spawn_step = "execute";              // which pre-exec step failed
    std::string program;                             // path that was exec'd (for spawn errors)
    double timeout_seconds = 0;                      // the limit that applied (for the text)
    std::optional<std::uint64_t> rusage_peak_bytes;  // ru_maxrss fallback for the peak
    std::optional<RlimitEvidence> rlimit;            // set in rlimit mode only
};

/// The decision: success, or an error_type word plus the human text.
struct Verdict {
    bool success = false;
    std::string error_type;  // "" on success
    std::string error;       // "" on success
    bool retryable = false;  // the failure itself says it is transient
    std::optional<int> exit_code;
    std::optional<int> signal;
    bool core_dumped = false;
    std::optional<std::uint64_t> peak_bytes;
};

/// Classifies a death. Order: spawn failure, OOM counter rose, supervisor action,
/// (rlimit mode: a failure near the limit or with an allocation-failure message),
/// signal (SIGKILL from outside or another signal), non-zero exit, exit 0 with or
/// without a result. Never throws.
Verdict classify_death(const DeathFacts& facts);

/// "SIGKILL (SIG9)" style name of a signal number.
std::string signal_name(int sig);

/// "Process terminated by signal: SIGKILL (SIG9)".
std::string signal_death_text(int sig);

/// "Memory limit exceeded: 2048.5MB" (peak bytes / 1048576 with one decimal).
std::string memory_limit_text(std::optional<std::uint64_t> peak_bytes);

}  // namespace pv
