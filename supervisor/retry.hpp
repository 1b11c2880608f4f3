// SPDX-License-Identifier: MIT
// Retry policy: whether a failed attempt is tried again, and after what delay.
// Pure functions with an injected random source (tests/unit/retry_test.cpp).
#pragma once

#include <functional>
#include <set>
#include <string>
#include <string_view>

namespace pv {

struct RetryPolicy {
    double base_delay_seconds = 2;      // first retry waits about this long
    double max_delay_seconds = 300;     // cap (5 minutes)
    double jitter = 0.2;                // +-20 %
    std::set<std::string> extra_kinds;  // --retry-on
};

struct RetryDecision {
    bool retry = false;
    double delay_seconds = 0;
};

/// True when a failure of `error_type` may be retried at all: transient kinds
/// (worker_lost, shutdown, spawn), child errors marked retryable, and kinds in
/// `extra_kinds`. Cancellation and success are never retried.
bool is_retryable(std::string_view error_type, bool child_retryable, const RetryPolicy& policy);

/// Delay before attempt `attempt + 1`: base * 2^(attempt-1), capped, times a jitter
/// factor in [1-jitter, 1+jitter] taken from `unit_random` (0..1), capped again.
double backoff_delay(int attempt, const RetryPolicy& policy, double unit_random);

/// The whole decision for an attempt (1-based) that failed with `error_type`.
RetryDecision decide_retry(std::string_view error_type, bool child_retryable, int attempt,
                           int max_attempts, const RetryPolicy& policy,
                           const std::function<double()>& unit_random);

/// Parses "signal,memory_limit" into a set (blank items ignored).
std::set<std::string> parse_kind_list(std::string_view list);

}  // namespace pv
