// SPDX-License-Identifier: MIT
// Starting one child attempt: clone (sharing memory until exec, like vfork) and exec.
// Everything the child needs (argv, envp, paths, ids) is built before; between clone
// and exec only async-signal-safe calls run.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "cgroup.hpp"
#include "unique_fd.hpp"

namespace pv {

struct SpawnSpec {
    std::vector<std::string> argv;  // argv[0] is the resolved program path
    std::vector<std::string> env;   // "KEY=value"
    std::string work_dir;           // chdir target
    int stdin_fd = -1;              // becomes fd 0 (the request file, read-only)
    std::optional<uid_t> uid;       // drop to this user (root only)
    gid_t gid = 0;
    const TaskCgroup* cgroup = nullptr;  // joined from the child before exec
};

/// Why the child failed before exec: the step that failed and its errno.
struct SpawnFailure {
    const char* step = "execute";
    int err = 0;
};

struct SpawnedChild {
    pid_t pid = -1;
    UniqueFd pidfd;                       // may be empty on kernels without pidfd_open
    UniqueFd event_read;                  // read end of the child's fd 3
    UniqueFd output_read;                 // read end of the child's stdout + stderr
    std::optional<SpawnFailure> failure;  // set when exec did not happen
};

/// Forks and execs. Throws std::system_error when the parent-side setup (pipes,
/// fork) fails; a failure inside the child comes back in `failure`, and the child
/// then exits 127 and must still be reaped. Must run on the main thread (the parent
/// death signal follows the forking thread).
SpawnedChild spawn_child(const SpawnSpec& spec);

}  // namespace pv
