// SPDX-License-Identifier: MIT
#include "death.hpp"

#include <sys/wait.h>

#include <csignal>
#include <cstdio>
#include <cstring>

#include "error_type.hpp"

namespace pv {

namespace {

std::string format_seconds(double s) {
    char buf[32];
    if (s == static_cast<double>(static_cast<long long>(s))) {
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(s));
    } else {
        std::snprintf(buf, sizeof buf, "%g", s);
    }
    return buf;
}

Verdict failure(std::string_view type, std::string text, bool retryable = false) {
    Verdict v;
    v.error_type = std::string(type);
    v.error = std::move(text);
    v.retryable = retryable;
    return v;
}

Verdict supervisor_verdict(const DeathFacts& f) {
    switch (f.action) {
        case SupervisorAction::Timeout:
            return failure(error_type::kTimeout,
                           "Task timed out after " + format_seconds(f.timeout_seconds) + " s");
        case SupervisorAction::Cancel:
            return failure(error_type::kCancelled, "Cancelled by request");
        case SupervisorAction::Shutdown:
            // The task is stopped with SIGTERM; it keeps that text even if it needed the
            // SIGKILL after the grace, so users see why it stopped, not how.
            return failure(error_type::kShutdown, signal_death_text(SIGTERM), true);
        case SupervisorAction::Watchdog:
            return failure(error_type::kMemoryLimit, "");
        case SupervisorAction::None:
            break;
    }
    return {};
}

/// Rlimit mode: a failed attempt that ran close to the limit or reported an
/// allocation failure is taken as a memory breach.
// Limitation: without a cgroup this is a heuristic; a child that fails for another
// reason right at the limit is reported as memory_limit.
bool rlimit_breach(const DeathFacts& f, std::optional<std::uint64_t> peak) {
    if (!f.rlimit)
        return false;
    bool failed =
        WIFSIGNALED(f.wait_status) || (WIFEXITED(f.wait_status) && WEXITSTATUS(f.wait_status) != 0);
    if (!failed)
        return false;
    if (f.rlimit->memory_error_text)
        return true;
    return peak && f.rlimit->limit_bytes > 0 &&
           static_cast<double>(*peak) >= 0.9 * static_cast<double>(f.rlimit->limit_bytes);
}

}  // namespace

bool mentions_memory_failure(std::string_view text) {
    for (std::string_view needle :
         {"std::bad_alloc", "Cannot allocate memory", "out of memory", "Out of memory"}) {
        if (text.find(needle) != std::string_view::npos)
            return true;
    }
    return false;
}

const char* to_string(SupervisorAction action) {
    switch (action) {
        case SupervisorAction::None:
            return "none";
        case SupervisorAction::Timeout:
            return "timeout";
        case SupervisorAction::Cancel:
            return "cancel";
        case SupervisorAction::Shutdown:
            return "shutdown";
        case SupervisorAction::Watchdog:
            return "watchdog";
    }
    return "none";
}

std::string signal_name(int sig) {
    const char* abbrev = ::sigabbrev_np(sig);
    std::string name = abbrev ? std::string("SIG") + abbrev : "SIG?";
    return name + " (SIG" + std::to_string(sig) + ")";
}

std::string signal_death_text(int sig) {
    return "Process terminated by signal: " + signal_name(sig);
}

std::string memory_limit_text(std::optional<std::uint64_t> peak_bytes) {
    char buf[64];
    double mb = peak_bytes ? static_cast<double>(*peak_bytes) / 1048576.0 : 0.0;
    std::snprintf(buf, sizeof buf, "Memory limit exceeded: %.1fMB", mb);
    return buf;
}

Verdict classify_death(const DeathFacts& f) {
    std::optional<std::uint64_t> peak =
        f.stats.peak_bytes ? f.stats.peak_bytes : f.rusage_peak_bytes;
    Verdict v;

    if (f.spawn_errno) {
        v = failure(
            error_type::kSpawn,
            "Cannot " + f.spawn_step + " " + f.program + ": " + std::strerror(*f.spawn_errno),
            true);
    } else if (f.stats.oom_kills > 0 || f.stats.oomd_killed) {
        // Any OOM kill inside the task's own cgroup decides, whatever else happened.
        v = failure(error_type::kMemoryLimit, memory_limit_text(peak));
    } else if (f.action != SupervisorAction::None) {
        v = supervisor_verdict(f);
        if (f.action == SupervisorAction::Watchdog)
            v.error = memory_limit_text(peak);
    } else if (rlimit_breach(f, peak)) {
        v = failure(error_type::kMemoryLimit, memory_limit_text(peak));
    } else if (WIFSIGNALED(f.wait_status)) {
        v = failure(error_type::kSignal, signal_death_text(WTERMSIG(f.wait_status)));
    } else if (WIFEXITED(f.wait_status) && WEXITSTATUS(f.wait_status) != 0) {
        if (f.child_error) {
            v = failure(f.child_error->error_type, f.child_error->message,
                        f.child_error->retryable);
        } else {
            v = failure(error_type::kExitCode,
                        "Process exited with code " + std::to_string(WEXITSTATUS(f.wait_status)));
        }
    } else if (f.child_error) {
        // Exit 0 after an error event is still the child's failure.
        v = failure(f.child_error->error_type, f.child_error->message, f.child_error->retryable);
    } else if (f.got_result) {
        v.success = true;
    } else {
        v = failure(error_type::kProtocol, "Child exited 0 without reporting a result");
    }

    if (WIFEXITED(f.wait_status))
        v.exit_code = WEXITSTATUS(f.wait_status);
    if (WIFSIGNALED(f.wait_status)) {
        v.signal = WTERMSIG(f.wait_status);
        v.core_dumped = WCOREDUMP(f.wait_status);
    }
    v.peak_bytes = peak;
    return v;
}

}  // namespace pv
