// SPDX-License-Identifier: MIT
// Entry points of the three containment backends, used only by cgroup.cpp.
#pragma once

#include <memory>
#include <string>

#include "cgroup.hpp"

namespace pv::cgroup_backend {

/// A usable manager, or why the mode cannot be used here.
struct Probe {
    std::unique_ptr<CgroupManager> manager;
    std::string why_not;
    int err = 0;
};

/// Delegated cgroup v2 with the memory controller (cgroup_v2.cpp).
Probe probe_v2(const std::string& instance);

/// A v2 manager over an existing `instance_base`, skipping the probe (and the
/// supervisor's move into a leaf). Lets tests drive the v2 task operations on a
/// controller-less cgroup2, where only create() fails for lack of memory files.
std::unique_ptr<CgroupManager> make_v2_manager_at(const std::string& instance_base, bool has_pids,
                                                  bool has_kill);

/// cgroup v1 memory, plus v1 pids and a controller-less cgroup2 when writable
/// (cgroup_v1.cpp).
Probe probe_v1(const std::string& instance);

/// RLIMIT_DATA plus session tracking; always available (cgroup_rlimit.cpp).
/// `note` says why no cgroup mode was used and ends up in describe().
std::unique_ptr<CgroupManager> make_rlimit_manager(const std::string& note);

}  // namespace pv::cgroup_backend
