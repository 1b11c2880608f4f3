// SPDX-License-Identifier: MIT
// Mode selection for the containment layer and the shared teardown sequence.
// The backends live in cgroup_v2.cpp, cgroup_v1.cpp and cgroup_rlimit.cpp.
#include "cgroup.hpp"

#include <signal.h>

#include <stdexcept>
#include <system_error>
#include <thread>

#include "cgroup_backends.hpp"
#include "cgroup_fs.hpp"

namespace pv {

const char* to_string(CgroupMode mode) {
    switch (mode) {
        case CgroupMode::V2:
            return "v2";
        case CgroupMode::V1:
            return "v1";
        case CgroupMode::Rlimit:
            return "rlimit";
    }
    return "unknown";
}

bool valid_instance_name(std::string_view name) {
    return cgroup_fs::is_safe_component(name);
}

std::unique_ptr<CgroupManager> CgroupManager::probe(const std::string& instance,
                                                    std::optional<CgroupMode> forced) {
    if (!valid_instance_name(instance)) {
        throw std::invalid_argument("bad supervisor instance name: \"" + instance + "\"");
    }
    if (forced == CgroupMode::Rlimit)
        return cgroup_backend::make_rlimit_manager("forced");
    if (forced == CgroupMode::V2 || !forced) {
        auto v2 = cgroup_backend::probe_v2(instance);
        if (v2.manager)
            return std::move(v2.manager);
        if (forced)
            throw std::system_error(v2.err, std::generic_category(),
                                    "cgroup v2 unusable: " + v2.why_not);
        auto v1 = cgroup_backend::probe_v1(instance);
        if (v1.manager)
            return std::move(v1.manager);
        return cgroup_backend::make_rlimit_manager("v2: " + v2.why_not + "; v1: " + v1.why_not);
    }
    auto v1 = cgroup_backend::probe_v1(instance);
    if (v1.manager)
        return std::move(v1.manager);
    throw std::system_error(v1.err, std::generic_category(), "cgroup v1 unusable: " + v1.why_not);
}

CgroupTeardown kill_and_remove(TaskCgroup& cgroup, std::chrono::milliseconds timeout) {
    constexpr auto kPoll = std::chrono::milliseconds(10);
    CgroupTeardown result;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        // Killing again each round catches processes forked after the last round.
        cgroup.signal_all(SIGKILL);
        result.emptied = cgroup.empty();
        if (result.emptied || std::chrono::steady_clock::now() >= deadline)
            break;
        std::this_thread::sleep_for(kPoll);
    }
    result.stats = cgroup.stats();
    result.removed = cgroup.remove();
    return result;
}

}  // namespace pv
