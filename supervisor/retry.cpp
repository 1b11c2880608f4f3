// SPDX-License-Identifier: MIT
#include "retry.hpp"

#include <algorithm>
#include <cmath>

#include "error_type.hpp"

namespace pv {

bool is_retryable(std::string_view error_type, bool child_retryable, const RetryPolicy& policy) {
    if (error_type.empty() || error_type == error_type::kCancelled)
        return false;
    if (error_type == error_type::kWorkerLost || error_type == error_type::kShutdown ||
        error_type == error_type::kSpawn) {
        return true;
    }
    if (policy.extra_kinds.count(std::string(error_type)) > 0)
        return true;
    // The child's own "retryable" flag only counts for kinds the child reports; a
    // supervisor-decided kind (memory_limit, signal, ...) is never made retryable by it.
    static constexpr std::string_view kSupervisorKinds[] = {
        error_type::kMemoryLimit, error_type::kTimeout,  error_type::kSignal,
        error_type::kExitCode,    error_type::kProtocol,
    };
    for (auto kind : kSupervisorKinds) {
        if (kind == error_type)
            return false;
    }
    if (error_type == error_type::kInvalidRequest)
        return false;
    return child_retryable;
}

double backoff_delay(int attempt, const RetryPolicy& policy, double unit_random) {
    int exponent = std::clamp(attempt - 1, 0, 30);
    double delay =
        std::min(policy.base_delay_seconds * std::ldexp(1.0, exponent), policy.max_delay_seconds);
    double u = std::clamp(unit_random, 0.0, 1.0);
    double factor = 1.0 - policy.jitter + 2.0 * policy.jitter * u;
    return std::clamp(delay * factor, 0.0, policy.max_delay_seconds);
}

RetryDecision decide_retry(std::string_view error_type, bool child_retryable, int attempt,
                           int max_attempts, const RetryPolicy& policy,
                           const std::function<double()>& unit_random) {
    RetryDecision d;
    if (attempt >= max_attempts)
        return d;
    if (!is_retryable(error_type, child_retryable, policy))
        return d;
    d.retry = true;
    d.delay_seconds = backoff_delay(attempt, policy, unit_random());
    return d;
}

std::set<std::string> parse_kind_list(std::string_view list) {
    std::set<std::string> kinds;
    std::size_t pos = 0;
    while (pos <= list.size()) {
        std::size_t end = list.find(',', pos);
        if (end == std::string_view::npos)
            end = list.size();
        std::string item(list.substr(pos, end - pos));
        item.erase(0, item.find_first_not_of(" \t"));
        item.erase(item.find_last_not_of(" \t") + 1);
        if (!item.empty())
            kinds.insert(item);
        pos = end + 1;
    }
    return kinds;
}

}  // namespace pv
