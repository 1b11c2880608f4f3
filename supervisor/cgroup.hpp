// SPDX-License-Identifier: MIT
// The containment layer: one cgroup per task attempt on cgroup v2 or v1, or
// rlimits plus RSS sampling where neither can be written. The mode is probed once.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pv {

enum class CgroupMode { V2, V1, Rlimit };

const char* to_string(CgroupMode mode);

/// Counters read after the task's processes are all dead.
struct CgroupStats {
    int oom_kills = 0;                     // kernel OOM kills inside this cgroup
    std::optional<std::uint64_t> peak_bytes;  // memory high-water mark, if known
    bool oomd_killed = false;              // systemd-oomd xattr seen (v2)
};

/// One task attempt's cgroup(s). Created by CgroupManager before fork.
/// Everything the forked child needs is precomputed so join_from_child() is
/// async-signal-safe (no allocation, only open/write/close/setrlimit).
class TaskCgroup {
public:
    virtual ~TaskCgroup() = default;

    /// Called in the child between fork and exec: joins the cgroup(s) or sets
    /// rlimits. Returns 0 or an errno value. Async-signal-safe.
    virtual int join_from_child() const noexcept = 0;

    /// Current memory usage of the whole task in bytes (for warnings/watchdog).
    virtual std::optional<std::uint64_t> current_bytes() const = 0;

    /// Pids currently in the task (empty when none remain).
    virtual std::vector<pid_t> pids() const = 0;

    /// Sends `sig` to every process of the task (cgroup.kill for SIGKILL on v2).
    virtual void signal_all(int sig) = 0;

    /// True once no process of the task remains.
    virtual bool empty() const = 0;

    /// Reads the counters; call after empty() is true and before remove().
    virtual CgroupStats stats() const = 0;

    /// Removes the cgroup directories (retrying EBUSY briefly). Returns false if
    /// something is left behind (logged).
    virtual bool remove() = 0;

    virtual std::string path() const = 0;
};

class CgroupManager {
public:
    /// Probes v2 (delegated, memory controller), then v1 memory (+ controller-less
    /// cgroup2 for kill/tracking), then falls back to rlimits. `forced` skips the probe.
    /// Task cgroups live under "<own cgroup>/protovideo-<instance>/", so several
    /// supervisors on one host (distinct instances) never see each other's tasks.
    static std::unique_ptr<CgroupManager> probe(const std::string& instance,
                                                std::optional<CgroupMode> forced = {});

    virtual ~CgroupManager() = default;
    virtual CgroupMode mode() const = 0;

    /// Creates the cgroup for `name` (e.g. "task-<uuid>-<attempt>") with a hard
    /// memory limit and a pids limit.
    virtual std::unique_ptr<TaskCgroup> create(const std::string& name,
                                               std::uint64_t memory_limit_bytes,
                                               int pids_max) = 0;

    /// Names of leftover task cgroups from an earlier life (for startup recovery).
    virtual std::vector<std::string> leftovers() const = 0;

    /// Opens a leftover by name so it can be killed, read and removed.
    virtual std::unique_ptr<TaskCgroup> adopt(const std::string& name) = 0;

    /// Human description of where task cgroups live (logged once at startup).
    virtual std::string describe() const = 0;
};

}  // namespace pv
