// SPDX-License-Identifier: MIT
// Retry policy: which kinds are retried, the attempt cap, and backoff bounds with
// an injected random source.
#include <doctest/doctest.h>

#include "retry.hpp"

namespace {

pv::RetryPolicy policy(double base = 2) {
    pv::RetryPolicy p;
    p.base_delay_seconds = base;
    return p;
}

auto fixed(double u) {
    return [u] { return u; };
}

}  // namespace

TEST_CASE("transient kinds are retried while attempts remain") {
    for (const char* kind : {"worker_lost", "shutdown", "spawn"}) {
        auto d = pv::decide_retry(kind, false, 1, 3, policy(), fixed(0.5));
        CHECK(d.retry);
        CHECK(d.delay_seconds == doctest::Approx(2.0));
    }
}

TEST_CASE("the last attempt is never retried") {
    CHECK_FALSE(pv::decide_retry("spawn", false, 3, 3, policy(), fixed(0.5)).retry);
    CHECK_FALSE(pv::decide_retry("spawn", false, 4, 3, policy(), fixed(0.5)).retry);
    CHECK_FALSE(pv::decide_retry("spawn", false, 1, 1, policy(), fixed(0.5)).retry);
}

TEST_CASE("permanent kinds are not retried by default") {
    for (const char* kind :
         {"invalid_request", "memory_limit", "signal", "exit_code", "timeout", "protocol"}) {
        CHECK_FALSE(pv::decide_retry(kind, false, 1, 3, policy(), fixed(0.5)).retry);
    }
}

TEST_CASE("the child's retryable flag counts only for child-reported kinds") {
    CHECK(pv::decide_retry("io", true, 1, 3, policy(), fixed(0.5)).retry);
    CHECK(pv::decide_retry("asset", true, 1, 3, policy(), fixed(0.5)).retry);
    CHECK_FALSE(pv::decide_retry("asset", false, 1, 3, policy(), fixed(0.5)).retry);
    CHECK_FALSE(pv::decide_retry("invalid_request", true, 1, 3, policy(), fixed(0.5)).retry);
    CHECK_FALSE(pv::decide_retry("signal", true, 1, 3, policy(), fixed(0.5)).retry);
}

TEST_CASE("--retry-on adds kinds, but never cancellation") {
    auto p = policy();
    p.extra_kinds = pv::parse_kind_list("signal, memory_limit,,cancelled");
    CHECK(p.extra_kinds.count("signal") == 1);
    CHECK(p.extra_kinds.count("memory_limit") == 1);
    CHECK(pv::decide_retry("signal", false, 1, 3, p, fixed(0.5)).retry);
    CHECK(pv::decide_retry("memory_limit", false, 2, 3, p, fixed(0.5)).retry);
    CHECK_FALSE(pv::decide_retry("exit_code", false, 1, 3, p, fixed(0.5)).retry);
    CHECK_FALSE(pv::decide_retry("cancelled", false, 1, 3, p, fixed(0.5)).retry);
    CHECK_FALSE(pv::decide_retry("", false, 1, 3, p, fixed(0.5)).retry);
}

TEST_CASE("backoff doubles per attempt") {
    auto p = policy(2);
    CHECK(pv::backoff_delay(1, p, 0.5) == doctest::Approx(2));
    CHECK(pv::backoff_delay(2, p, 0.5) == doctest::Approx(4));
    CHECK(pv::backoff_delay(3, p, 0.5) == doctest::Approx(8));
    CHECK(pv::backoff_delay(6, p, 0.5) == doctest::Approx(64));
}

TEST_CASE("jitter stays within +-20 percent") {
    auto p = policy(10);
    CHECK(pv::backoff_delay(1, p, 0.0) == doctest::Approx(8));
    CHECK(pv::backoff_delay(1, p, 1.0) == doctest::Approx(12));
    for (double u = 0; u <= 1.0; u += 0.05) {
        double d = pv::backoff_delay(2, p, u);
        CHECK(d >= 16 - 1e-9);
        CHECK(d <= 24 + 1e-9);
    }
    // Out-of-range random values are clamped.
    CHECK(pv::backoff_delay(1, p, -3) == doctest::Approx(8));
    CHECK(pv::backoff_delay(1, p, 7) == doctest::Approx(12));
}

TEST_CASE("backoff is capped at five minutes, jitter included") {
    auto p = policy(2);
    for (int attempt : {9, 10, 20, 100, 100000}) {
        for (double u : {0.0, 0.5, 1.0}) {
            double d = pv::backoff_delay(attempt, p, u);
            CHECK(d <= 300.0);
            CHECK(d >= 240.0 - 1e-9);
        }
    }
}

TEST_CASE("the random source is consulted only when retrying") {
    int calls = 0;
    auto counting = [&] {
        ++calls;
        return 0.5;
    };
    pv::decide_retry("signal", false, 1, 3, policy(), counting);
    CHECK(calls == 0);
    pv::decide_retry("spawn", false, 1, 3, policy(), counting);
    CHECK(calls == 1);
}

TEST_CASE("a zero base retries at once") {
    auto d = pv::decide_retry("spawn", false, 2, 3, policy(0), fixed(1.0));
    CHECK(d.retry);
    CHECK(d.delay_seconds == 0);
}
