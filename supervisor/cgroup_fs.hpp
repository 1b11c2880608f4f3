// SPDX-License-Identifier: MIT
// Small cgroupfs helpers shared by the v1, v2 and rlimit backends: finding our
// own cgroups, reading and writing control files, listing and killing pids,
// and removing directories. Not part of the public cgroup interface.
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pv::cgroup_fs {

/// Where a hierarchy is mounted and where our own cgroup sits inside it.
struct OwnCgroup {
    std::string mount_point;  // e.g. /sys/fs/cgroup/memory
    std::string cgroup_path;  // e.g. /process_api/abc (as in /proc/self/cgroup)
    std::string dir;          // mount_point joined with the path relative to the mount root
};

/// Our cgroup in the v1 hierarchy that carries `controller` ("memory", "pids"),
/// from /proc/self/cgroup and /proc/self/mountinfo. nullopt when there is none.
std::optional<OwnCgroup> own_v1_cgroup(std::string_view controller);

/// Our cgroup in the unified (cgroup2) hierarchy, if it is mounted.
std::optional<OwnCgroup> own_v2_cgroup();

/// The lookup behind both, on given texts of /proc/self/cgroup and
/// /proc/self/mountinfo. An empty `controller` means the unified hierarchy.
std::optional<OwnCgroup> find_own_cgroup(std::string_view proc_cgroup, std::string_view mountinfo,
                                         std::string_view controller);

/// Moves the calling process into the cgroup whose "cgroup.procs" path is
/// given, by writing "0" (works on v1 and v2). Returns 0 or an errno value.
/// Async-signal-safe: for use between fork and exec.
int join_cgroup(const char* procs_path) noexcept;

/// Whole file, or nullopt with `*err` set (when given) if it cannot be read.
std::optional<std::string> read_file(const std::string& path, int* err = nullptr);

/// Writes `value` with one write(2). Returns 0 or an errno value.
int write_file(const std::string& path, std::string_view value);

/// Like write_file, but throws std::system_error naming the file.
void write_file_or_throw(const std::string& path, std::string_view value);

/// First number in the file; nullopt if missing, unreadable or "max".
std::optional<std::uint64_t> read_u64(const std::string& path);

/// Value of the "key value" line in a flat keyed file (memory.events,
/// memory.oom_control, cgroup.events). nullopt if the file or key is missing.
std::optional<std::uint64_t> read_keyed(const std::string& path, std::string_view key);

/// Pids listed in "<dir>/cgroup.procs"; empty if the cgroup is gone.
std::vector<pid_t> read_procs(const std::string& dir);

using DirPtr = std::unique_ptr<DIR, int (*)(DIR*)>;

/// opendir() owned by a DirPtr (null if the directory cannot be opened).
DirPtr open_dir(const std::string& path);

/// True if the path exists (any type).
bool exists(const std::string& path);

/// Creates a directory; returns 0 or an errno value (EEXIST included).
int make_dir(const std::string& path);

/// Names of "task-*" subdirectories of `dir` (sorted); empty if `dir` is missing.
std::vector<std::string> list_task_dirs(const std::string& dir);

/// rmdir every path, retrying EBUSY for at most ~200 ms in total. A path that is
/// already gone counts as removed. Returns false (and logs) if any remains.
bool remove_dirs(const std::vector<std::string>& dirs);

/// True if `name` is a single safe path component: [A-Za-z0-9._-]+, not "." or "..".
bool is_safe_component(std::string_view name);

/// Throws std::invalid_argument unless `name` is "task-" plus a safe component.
void check_task_name(const std::string& name);

/// The numeric counter behind a user.* xattr (as systemd-oomd writes it), or 0.
std::uint64_t read_xattr_counter(const std::string& path, const char* name);

/// Sends `sig` to every pid `list_pids` returns, re-listing until a round finds
/// no pid that was not already signalled (new forks are caught that way).
/// Limitation: a pid that exits between listing and kill(2) could be reused by an
/// unrelated process; the window is tiny and the same one systemd accepts.
void kill_until_stable(int sig, const std::function<std::vector<pid_t>()>& list_pids);

}  // namespace pv::cgroup_fs
