// SPDX-License-Identifier: MIT
// The containment layer: one cgroup per task attempt on cgroup v2 or v1, or
// rlimits plus RSS sampling where neither can be written. The mode is probed once.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pv {

enum class CgroupMode { V2, V1, Rlimit };

/// "v2", "v1" or "rlimit".
const char* to_string(CgroupMode mode);

/// True if `name` can name a supervisor instance (and a cgroup directory):
/// [A-Za-z0-9._-]+, at most 200 characters, not "." or "..". For validating
/// configuration before CgroupManager::probe(), which rejects anything else.
bool valid_instance_name(std::string_view name);

/// Counters read after the task's processes are all dead.
struct CgroupStats {
    int oom_kills = 0;                        // kernel OOM kills inside this cgroup
    std::optional<std::uint64_t> peak_bytes;  // high-water mark incl. page cache, if known
    bool oomd_killed = false;                 // systemd-oomd xattr seen (v2)
};

/// One task attempt's cgroup(s). Created by CgroupManager before fork.
/// Everything the forked child needs is precomputed so join_from_child() is
/// async-signal-safe (no allocation, only open/write/close/setrlimit).
///
/// Not thread-safe: use it from the supervisor's thread only. Destroying a
/// handle whose cgroup was not remove()d SIGKILLs whatever is still inside and
/// removes it (best effort, blocking up to ~300 ms), so a task tree never
/// outlives its handle. Backends: v2 uses one cgroup; v1 uses a memory cgroup,
/// a pids cgroup where writable and a controller-less cgroup2 for tracking and
/// cgroup.kill where the host has one; rlimit tracks the child's session.
class TaskCgroup {
public:
    virtual ~TaskCgroup() = default;

    /// Called in the child between fork and exec, after setsid(): joins the
    /// cgroup(s) by writing "0" to each cgroup.procs, or sets RLIMIT_DATA and
    /// records the child's pid as the task's session (rlimit mode). Returns 0 or
    /// an errno value. Async-signal-safe.
    virtual int join_from_child() const noexcept = 0;

    /// Current memory usage of the whole task in bytes (for warnings/watchdog):
    /// the cgroup's usage minus inactive page cache (the "working set" kubelet and
    /// docker report), or in rlimit mode the summed RSS of the session's
    /// processes (each call also feeds stats().peak_bytes in that mode). In
    /// rlimit mode only RLIMIT_DATA is enforced, so the supervisor's watchdog
    /// compares this with the limit and kills the task itself.
    virtual std::optional<std::uint64_t> current_bytes() const = 0;

    /// Pids currently in the task (empty when none remain). Zombies are not listed.
    virtual std::vector<pid_t> pids() const = 0;

    /// Sends `sig` to every process of the task (cgroup.kill for SIGKILL on v2,
    /// otherwise a list-and-kill loop that repeats until no new pid appears).
    virtual void signal_all(int sig) = 0;

    /// True once no process of the task remains.
    virtual bool empty() const = 0;

    /// Reads the counters; call after empty() is true and before remove().
    virtual CgroupStats stats() const = 0;

    /// Removes the cgroup directories (retrying EBUSY for at most ~200 ms).
    /// Returns false if something is left behind (logged). Idempotent.
    virtual bool remove() = 0;

    /// The task's main cgroup directory ("rlimit:<name>" in rlimit mode).
    virtual std::string path() const = 0;
};

/// Result of kill_and_remove().
struct CgroupTeardown {
    CgroupStats stats;
    bool emptied = false;  // every process was gone before the counters were read
    bool removed = false;  // remove() succeeded
};

/// The whole teardown in the right order: SIGKILL everything, wait up to
/// `timeout` for the task to be empty (blocking, polling every 10 ms), read the
/// counters, remove. For crash recovery (adopt()) and shutdown paths.
CgroupTeardown kill_and_remove(TaskCgroup& cgroup, std::chrono::milliseconds timeout);

class CgroupManager {
public:
    /// Probes v2 (delegated, memory controller), then v1 memory (+ controller-less
    /// cgroup2 for kill/tracking), then falls back to rlimits. `forced` skips the
    /// probe; a forced V2 or V1 that is not usable throws std::system_error.
    /// Task cgroups live under "<own cgroup>/protovideo-<instance>/", so several
    /// supervisors on one host (distinct instances) never see each other's tasks.
    /// On v2 the supervisor first moves itself into "<own cgroup>/supervisor" (or
    /// uses the parent when it already runs in a leaf named "supervisor").
    /// `instance` must match [A-Za-z0-9._-]+ (std::invalid_argument otherwise).
    static std::unique_ptr<CgroupManager> probe(const std::string& instance,
                                                std::optional<CgroupMode> forced = {});

    /// Removes the instance directories if no task cgroup is left in them, so
    /// keep one manager per instance alive at a time.
    virtual ~CgroupManager() = default;
    virtual CgroupMode mode() const = 0;

    /// Creates the cgroup for `name` ("task-" followed by [A-Za-z0-9._-], e.g.
    /// "task-<uuid>-<attempt>", else std::invalid_argument) with a hard memory
    /// limit and a pids limit (pids_max <= 0: none). Throws std::system_error if
    /// the cgroup cannot be set up, including when it already exists.
    virtual std::unique_ptr<TaskCgroup> create(const std::string& name,
                                               std::uint64_t memory_limit_bytes, int pids_max) = 0;

    /// Names of leftover task cgroups from an earlier life (for startup recovery).
    /// Always empty in rlimit mode.
    virtual std::vector<std::string> leftovers() const = 0;

    /// Opens a leftover by name so it can be killed, read and removed. Throws
    /// std::system_error (ENOENT) if no such cgroup exists, and (ENOTSUP) in
    /// rlimit mode, which keeps no state that survives the supervisor.
    virtual std::unique_ptr<TaskCgroup> adopt(const std::string& name) = 0;

    /// Human description of where task cgroups live (logged once at startup).
    virtual std::string describe() const = 0;
};

/// The state of the cgroup2 mount option favordynmods (Linux 6.0+). Without it
/// every move into a cgroup (v1 or v2: the lock is global) waits for an RCU grace
/// period, about 10 ms per child on the CI machines; with it the move takes
/// microseconds. Forks and exits then take a slightly slower lock path.
struct DynmodsState {
    bool on = false;
    std::string mount_point;  // the cgroup2 mount looked at or changed
    std::string error;        // why it could not be turned on
};

/// Reads the option from /proc/self/mountinfo; with `enable`, turns it on first
/// where it is off by reconfiguring the first cgroup2 mount (fspick + fsconfig),
/// keeping that mount's other cgroup2 options (nsdelegate, ...). Needs root.
DynmodsState favor_dynmods(bool enable);

}  // namespace pv
