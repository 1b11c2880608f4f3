// SPDX-License-Identifier: MIT
// The death classifier, row by row: precedence of OOM over supervisor actions,
// SIGKILL from outside versus our own kills, exit codes and the child's own words.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <csignal>

#include "death.hpp"

namespace {

// Builds wait statuses the way the kernel encodes them.
int exited(int code) {
    return (code & 0xff) << 8;
}
int signaled(int sig, bool core = false) {
    return sig | (core ? 0x80 : 0);
}

pv::DeathFacts facts(int status) {
    pv::DeathFacts f;
    f.wait_status = status;
    f.program = "/usr/bin/renderer";
    f.timeout_seconds = 900;
    return f;
}

}  // namespace

TEST_CASE("encoded statuses decode as expected") {
    CHECK(WIFEXITED(exited(3)));
    CHECK(WEXITSTATUS(exited(3)) == 3);
    CHECK(WIFSIGNALED(signaled(SIGKILL)));
    CHECK(WTERMSIG(signaled(SIGSEGV, true)) == SIGSEGV);
    CHECK(WCOREDUMP(signaled(SIGSEGV, true)));
}

TEST_CASE("exit 0 with a result completes") {
    auto f = facts(exited(0));
    f.got_result = true;
    auto v = pv::classify_death(f);
    CHECK(v.success);
    CHECK(v.error_type.empty());
    CHECK(v.exit_code == 0);
}

TEST_CASE("exit 0 without a result is a protocol failure") {
    auto v = pv::classify_death(facts(exited(0)));
    CHECK_FALSE(v.success);
    CHECK(v.error_type == "protocol");
    CHECK(v.error == "Child exited 0 without reporting a result");
    CHECK_FALSE(v.retryable);
}

TEST_CASE("exit 0 after an error event is the child's failure") {
    auto f = facts(exited(0));
    f.got_result = true;
    f.child_error = pv::ErrorEvent{"asset", "scenes[1].image: HTTP 404", false};
    auto v = pv::classify_death(f);
    CHECK_FALSE(v.success);
    CHECK(v.error_type == "asset");
    CHECK(v.error == "scenes[1].image: HTTP 404");
}

TEST_CASE("non-zero exit without a child message") {
    auto v = pv::classify_death(facts(exited(3)));
    CHECK(v.error_type == "exit_code");
    CHECK(v.error == "Process exited with code 3");
    CHECK(v.exit_code == 3);
    CHECK_FALSE(v.signal);
}

TEST_CASE("non-zero exit prefers the child's own error") {
    auto f = facts(exited(2));
    f.child_error = pv::ErrorEvent{"invalid_request", "scenes[0].duration: must be > 0", false};
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "invalid_request");
    CHECK(v.error == "scenes[0].duration: must be > 0");
    CHECK_FALSE(v.retryable);
    CHECK(v.exit_code == 2);
}

TEST_CASE("a retryable child error stays retryable") {
    auto f = facts(exited(1));
    f.child_error = pv::ErrorEvent{"io", "disk full", true};
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "io");
    CHECK(v.retryable);
}

TEST_CASE("SIGKILL from outside is a signal death, never an OOM") {
    auto v = pv::classify_death(facts(signaled(SIGKILL)));
    CHECK(v.error_type == "signal");
    CHECK(v.error == "Process terminated by signal: SIGKILL (SIG9)");
    CHECK(v.signal == SIGKILL);
    CHECK_FALSE(v.core_dumped);
}

TEST_CASE("exit 137 is an exit code, not an OOM") {
    auto v = pv::classify_death(facts(exited(137)));
    CHECK(v.error_type == "exit_code");
    CHECK(v.error == "Process exited with code 137");
}

TEST_CASE("a crash carries the core flag but the text is unchanged") {
    auto v = pv::classify_death(facts(signaled(SIGSEGV, true)));
    CHECK(v.error_type == "signal");
    CHECK(v.error == "Process terminated by signal: SIGSEGV (SIG11)");
    CHECK(v.core_dumped);
    CHECK(v.signal == SIGSEGV);
}

TEST_CASE("a signal death ignores the child's error event") {
    auto f = facts(signaled(SIGABRT, true));
    f.child_error = pv::ErrorEvent{"internal", "about to abort", false};
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "signal");
    CHECK(v.error == "Process terminated by signal: SIGABRT (SIG6)");
}

TEST_CASE("an OOM kill is a memory limit with the cgroup peak") {
    auto f = facts(signaled(SIGKILL));
    f.stats.oom_kills = 1;
    f.stats.peak_bytes = 2148007936ULL;  // 2048.5 MiB
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "memory_limit");
    CHECK(v.error == "Memory limit exceeded: 2048.5MB");
    CHECK(v.signal == SIGKILL);
    CHECK_FALSE(v.retryable);
}

TEST_CASE("an OOM-killed helper fails the task even when the main process exits 1") {
    auto f = facts(exited(1));
    f.stats.oom_kills = 2;
    f.stats.peak_bytes = 64ULL << 20;
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "memory_limit");
    CHECK(v.error == "Memory limit exceeded: 64.0MB");
    CHECK(v.exit_code == 1);
}

TEST_CASE("OOM takes precedence over what the supervisor did") {
    for (auto action : {pv::SupervisorAction::Timeout, pv::SupervisorAction::Cancel,
                        pv::SupervisorAction::Shutdown}) {
        auto f = facts(signaled(SIGKILL));
        f.action = action;
        f.stats.oom_kills = 1;
        f.stats.peak_bytes = 100ULL << 20;
        auto v = pv::classify_death(f);
        CHECK(v.error_type == "memory_limit");
        CHECK(v.error == "Memory limit exceeded: 100.0MB");
    }
}

TEST_CASE("the peak falls back to ru_maxrss when the cgroup keeps none") {
    auto f = facts(signaled(SIGKILL));
    f.stats.oom_kills = 1;
    f.rusage_peak_bytes = 1024ULL * 1048576ULL + 314572ULL;  // 1024.3 MiB
    auto v = pv::classify_death(f);
    CHECK(v.error == "Memory limit exceeded: 1024.3MB");
}

TEST_CASE("systemd-oomd kills count as memory") {
    auto f = facts(signaled(SIGKILL));
    f.stats.oomd_killed = true;
    f.stats.peak_bytes = 10ULL << 20;
    CHECK(pv::classify_death(f).error_type == "memory_limit");
}

TEST_CASE("our own SIGKILL after a timeout is a timeout, not a signal death") {
    auto f = facts(signaled(SIGKILL));
    f.action = pv::SupervisorAction::Timeout;
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "timeout");
    CHECK(v.error == "Task timed out after 900 s");
    CHECK(v.signal == SIGKILL);
}

TEST_CASE("a timeout the child answered with exit 255 is still a timeout") {
    auto f = facts(exited(255));
    f.action = pv::SupervisorAction::Timeout;
    f.timeout_seconds = 1.5;
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "timeout");
    CHECK(v.error == "Task timed out after 1.5 s");
}

TEST_CASE("cancel") {
    auto f = facts(signaled(SIGTERM));
    f.action = pv::SupervisorAction::Cancel;
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "cancelled");
    CHECK(v.error == "Cancelled by request");
    CHECK_FALSE(v.retryable);
}

TEST_CASE("shutdown keeps the SIGTERM text even when SIGKILL was needed") {
    for (int status : {signaled(SIGTERM), signaled(SIGKILL), exited(143), exited(0)}) {
        auto f = facts(status);
        f.action = pv::SupervisorAction::Shutdown;
        f.got_result = true;
        auto v = pv::classify_death(f);
        CHECK(v.error_type == "shutdown");
        CHECK(v.error == "Process terminated by signal: SIGTERM (SIG15)");
        CHECK(v.retryable);
    }
}

TEST_CASE("the memory watchdog's kill is a memory limit") {
    auto f = facts(signaled(SIGKILL));
    f.action = pv::SupervisorAction::Watchdog;
    f.rusage_peak_bytes = 2100ULL << 20;
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "memory_limit");
    CHECK(v.error == "Memory limit exceeded: 2100.0MB");
}

TEST_CASE("a failed exec is a retryable spawn error naming the program") {
    auto f = facts(exited(127));
    f.spawn_errno = ENOENT;
    f.program = "/path/x";
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "spawn");
    CHECK(v.error == "Cannot execute /path/x: No such file or directory");
    CHECK(v.retryable);
}

TEST_CASE("signal names") {
    CHECK(pv::signal_name(SIGKILL) == "SIGKILL (SIG9)");
    CHECK(pv::signal_name(SIGTERM) == "SIGTERM (SIG15)");
    CHECK(pv::signal_death_text(SIGSEGV) == "Process terminated by signal: SIGSEGV (SIG11)");
}

TEST_CASE("rlimit mode: an allocation failure message means memory") {
    auto f = facts(signaled(SIGABRT, true));
    f.rlimit = pv::RlimitEvidence{100ULL << 20, true};
    f.stats.peak_bytes = 50ULL << 20;
    auto v = pv::classify_death(f);
    CHECK(v.error_type == "memory_limit");
    CHECK(v.error == "Memory limit exceeded: 50.0MB");
}

TEST_CASE("rlimit mode: a failure close to the limit means memory") {
    auto f = facts(exited(1));
    f.rlimit = pv::RlimitEvidence{100ULL << 20, false};
    f.stats.peak_bytes = 95ULL << 20;
    CHECK(pv::classify_death(f).error_type == "memory_limit");
    f.stats.peak_bytes = 20ULL << 20;
    CHECK(pv::classify_death(f).error_type == "exit_code");
}

TEST_CASE("rlimit mode: success and supervisor actions are unaffected") {
    auto f = facts(exited(0));
    f.got_result = true;
    f.rlimit = pv::RlimitEvidence{100ULL << 20, true};
    f.stats.peak_bytes = 99ULL << 20;
    CHECK(pv::classify_death(f).success);
    auto t = facts(signaled(SIGKILL));
    t.action = pv::SupervisorAction::Timeout;
    t.rlimit = pv::RlimitEvidence{100ULL << 20, true};
    CHECK(pv::classify_death(t).error_type == "timeout");
}

TEST_CASE("allocation failure messages") {
    CHECK(pv::mentions_memory_failure("terminate called after throwing 'std::bad_alloc'"));
    CHECK(pv::mentions_memory_failure("mmap: Cannot allocate memory"));
    CHECK_FALSE(pv::mentions_memory_failure("No such file or directory"));
}
