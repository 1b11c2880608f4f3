// SPDX-License-Identifier: MIT
// cgroup v1 backend: a memory cgroup per task (memory.limit_in_bytes and memsw),
// a v1 pids cgroup where writable, and a controller-less cgroup2 beside it for
// cgroup.kill and "populated" where the host mounts one (hybrid hierarchy).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cgroup_backends.hpp"
#include "cgroup_fs.hpp"
#include "sys_error.hpp"

namespace pv::cgroup_backend {
namespace {

namespace fs = pv::cgroup_fs;

// Where one supervisor instance keeps its task cgroups in each hierarchy.
struct V1Layout {
    std::string memory_base;
    bool has_memsw = false;
    std::string pids_base;   // empty: no writable v1 pids hierarchy
    std::string track_base;  // empty: no writable cgroup2 for tracking
    bool track_has_kill = false;
};

class V1TaskCgroup final : public TaskCgroup {
public:
    V1TaskCgroup(const V1Layout& layout, const std::string& name) {
        m_memory_dir = layout.memory_base + "/" + name;
        if (!layout.pids_base.empty())
            m_pids_dir = layout.pids_base + "/" + name;
        if (!layout.track_base.empty())
            m_track_dir = layout.track_base + "/" + name;
        m_track_has_kill = layout.track_has_kill;

        // The memory cgroup comes first so the child is charged there as early
        // as possible; v1 charges do not follow a process that moves later.
        for (const std::string* dir : {&m_memory_dir, &m_pids_dir, &m_track_dir}) {
            if (!dir->empty())
                m_join_paths.push_back(*dir + "/cgroup.procs");
        }
    }

    ~V1TaskCgroup() override {
        // Never throw from a destructor; remove() logs what stays, leftovers() finds it.
        try {
            if (!m_removed)
                kill_and_remove(*this, std::chrono::milliseconds(100));
        } catch (...) {
        }
    }

    int join_from_child() const noexcept override {
        for (const std::string& procs : m_join_paths) {
            if (int err = fs::join_cgroup(procs.c_str()); err != 0)
                return err;
        }
        return 0;
    }

    std::optional<std::uint64_t> current_bytes() const override {
        auto usage = fs::read_u64(m_memory_dir + "/memory.usage_in_bytes");
        if (!usage)
            return std::nullopt;
        auto inactive = fs::read_keyed(m_memory_dir + "/memory.stat", "total_inactive_file");
        return *usage - std::min(*usage, inactive.value_or(0));
    }

    std::vector<pid_t> pids() const override {
        std::vector<pid_t> all = fs::read_procs(m_memory_dir);
        for (const std::string* dir : {&m_pids_dir, &m_track_dir}) {
            if (dir->empty())
                continue;
            auto more = fs::read_procs(*dir);
            all.insert(all.end(), more.begin(), more.end());
        }
        std::sort(all.begin(), all.end());
        all.erase(std::unique(all.begin(), all.end()), all.end());
        return all;
    }

    void signal_all(int sig) override {
        if (sig == SIGKILL && !m_track_dir.empty() && m_track_has_kill) {
            fs::write_file(m_track_dir + "/cgroup.kill", "1");
        }
        // Limitation: cgroup v1 has no kill-all file, so anything not covered by
        // the cgroup2 tracker is killed one pid at a time (without freezing).
        fs::kill_until_stable(sig, [this] { return pids(); });
    }

    bool empty() const override {
        // Every process of the task joined the tracker too (the child joins all
        // three before exec and descendants inherit them), so its "populated"
        // answers for the v1 cgroups as well.
        if (!m_track_dir.empty()) {
            if (auto populated = fs::read_keyed(m_track_dir + "/cgroup.events", "populated"))
                return *populated == 0;
        }
        return pids().empty();
    }

    CgroupStats stats() const override {
        CgroupStats stats;
        // The v1 oom_kill counter is per cgroup (not hierarchical) and exists
        // since Linux 4.13; older kernels read as 0.
        auto kills = fs::read_keyed(m_memory_dir + "/memory.oom_control", "oom_kill");
        stats.oom_kills = static_cast<int>(kills.value_or(0));
        stats.peak_bytes = fs::read_u64(m_memory_dir + "/memory.max_usage_in_bytes");
        if (!m_track_dir.empty()) {
            stats.oomd_killed = fs::read_xattr_counter(m_track_dir, "user.oomd_ooms") > 0 ||
                                fs::read_xattr_counter(m_track_dir, "user.oomd_kill") > 0;
        }
        return stats;
    }

    bool remove() override {
        if (m_removed)
            return true;
        std::vector<std::string> dirs;
        for (const std::string* dir : {&m_track_dir, &m_pids_dir, &m_memory_dir}) {
            if (!dir->empty())
                dirs.push_back(*dir);
        }
        m_removed = fs::remove_dirs(dirs);
        return m_removed;
    }

    std::string path() const override { return m_memory_dir; }

private:
    std::string m_memory_dir;
    std::string m_pids_dir;
    std::string m_track_dir;
    bool m_track_has_kill = false;
    std::vector<std::string> m_join_paths;
    bool m_removed = false;
};

class V1Manager final : public CgroupManager {
public:
    explicit V1Manager(V1Layout layout) : m_layout{std::move(layout)} {}

    ~V1Manager() override {
        // rmdir fails with EBUSY while task cgroups remain, which keeps them
        // visible to leftovers() after a restart.
        for (const std::string* base :
             {&m_layout.track_base, &m_layout.pids_base, &m_layout.memory_base}) {
            if (!base->empty())
                ::rmdir(base->c_str());
        }
    }

    CgroupMode mode() const override { return CgroupMode::V1; }

    std::unique_ptr<TaskCgroup> create(const std::string& name, std::uint64_t memory_limit_bytes,
                                       int pids_max) override {
        fs::check_task_name(name);
        // A half-built handle is torn down on failure, so it must never cover a
        // directory that belongs to someone else (a leftover of the same name).
        std::string memory_dir = m_layout.memory_base + "/" + name;
        for (const std::string* base : {&m_layout.pids_base, &m_layout.track_base}) {
            if (!base->empty() && fs::exists(*base + "/" + name)) {
                throw_sys("create " + *base + "/" + name, EEXIST);
            }
        }
        if (int err = fs::make_dir(memory_dir); err != 0)
            throw_sys("mkdir " + memory_dir, err);
        auto task = std::make_unique<V1TaskCgroup>(m_layout, name);
        try {
            std::string limit = std::to_string(memory_limit_bytes);
            fs::write_file_or_throw(memory_dir + "/memory.limit_in_bytes", limit);
            // memsw must not be below the memory limit, so it is set second.
            // Without memsw files, swappiness 0 is the v1 way to forbid swapping
            // (best effort: a host without swap does not care).
            if (m_layout.has_memsw) {
                fs::write_file_or_throw(memory_dir + "/memory.memsw.limit_in_bytes", limit);
            } else {
                fs::write_file(memory_dir + "/memory.swappiness", "0");
            }
            if (!m_layout.pids_base.empty()) {
                std::string pids_dir = m_layout.pids_base + "/" + name;
                if (int err = fs::make_dir(pids_dir); err != 0)
                    throw_sys("mkdir " + pids_dir, err);
                if (pids_max > 0) {
                    fs::write_file_or_throw(pids_dir + "/pids.max", std::to_string(pids_max));
                }
            }
            if (!m_layout.track_base.empty()) {
                std::string track_dir = m_layout.track_base + "/" + name;
                if (int err = fs::make_dir(track_dir); err != 0) {
                    throw_sys("mkdir " + track_dir, err);
                }
            }
        } catch (...) {
            task->remove();
            throw;
        }
        return task;
    }

    std::vector<std::string> leftovers() const override {
        std::vector<std::string> names = fs::list_task_dirs(m_layout.memory_base);
        for (const std::string* base : {&m_layout.pids_base, &m_layout.track_base}) {
            if (base->empty())
                continue;
            auto more = fs::list_task_dirs(*base);
            names.insert(names.end(), more.begin(), more.end());
        }
        std::sort(names.begin(), names.end());
        names.erase(std::unique(names.begin(), names.end()), names.end());
        return names;
    }

    std::unique_ptr<TaskCgroup> adopt(const std::string& name) override {
        fs::check_task_name(name);
        auto names = leftovers();
        if (std::find(names.begin(), names.end(), name) == names.end()) {
            throw_sys("adopt " + m_layout.memory_base + "/" + name, ENOENT);
        }
        // A crash can leave only some of the directories; the handle tolerates
        // missing ones (reads give nothing, rmdir treats ENOENT as done).
        return std::make_unique<V1TaskCgroup>(m_layout, name);
    }

    std::string describe() const override {
        std::string text = "cgroup v1: memory=" + m_layout.memory_base;
        text += m_layout.has_memsw ? " (memsw limited)" : " (no memsw files)";
        text += " pids=" + (m_layout.pids_base.empty() ? "none" : m_layout.pids_base);
        text += " tracking=" + (m_layout.track_base.empty() ? "none" : m_layout.track_base);
        if (!m_layout.track_base.empty()) {
            text += m_layout.track_has_kill ? " (cgroup.kill)" : " (no cgroup.kill)";
        }
        return text;
    }

private:
    V1Layout m_layout;
};

// mkdir <base>/probe-<pid>, write `file`, rmdir. Returns 0 or an errno value.
int probe_write(const std::string& base, const std::string& file, const std::string& value,
                bool* extra_exists = nullptr, const std::string& extra = {}) {
    std::string dir = base + "/probe-" + std::to_string(::getpid());
    if (int err = fs::make_dir(dir); err != 0 && err != EEXIST)
        return err;
    int err = file.empty() ? 0 : fs::write_file(dir + "/" + file, value);
    if (extra_exists)
        *extra_exists = fs::exists(dir + "/" + extra);
    if (::rmdir(dir.c_str()) != 0 && err == 0)
        err = errno;
    return err;
}

// Creates `base` (if needed) and checks a task cgroup can be made and written
// below it. Returns 0 or an errno value; removes `base` again on failure.
int prepare_base(const std::string& base, const std::string& file, const std::string& value,
                 bool* extra_exists = nullptr, const std::string& extra = {}) {
    if (int err = fs::make_dir(base); err != 0 && err != EEXIST)
        return err;
    int err = probe_write(base, file, value, extra_exists, extra);
    if (err != 0)
        ::rmdir(base.c_str());
    return err;
}

}  // namespace

Probe probe_v1(const std::string& instance) {
    Probe probe;
    auto memory = fs::own_v1_cgroup("memory");
    if (!memory) {
        probe.why_not = "no cgroup v1 memory hierarchy";
        probe.err = ENOENT;
        return probe;
    }
    std::string leaf = "protovideo-" + instance;
    V1Layout layout;
    layout.memory_base = memory->dir + "/" + leaf;
    int err = prepare_base(layout.memory_base, "memory.limit_in_bytes", "67108864",
                           &layout.has_memsw, "memory.memsw.limit_in_bytes");
    if (err != 0) {
        probe.why_not =
            "cannot create and limit a cgroup under " + memory->dir + ": " + std::strerror(err);
        probe.err = err;
        return probe;
    }

    // Optional extras: each is used only if a probe cgroup can be made there.
    if (auto pids = fs::own_v1_cgroup("pids")) {
        std::string base = pids->dir + "/" + leaf;
        if (prepare_base(base, "pids.max", "64") == 0)
            layout.pids_base = base;
    }
    if (auto unified = fs::own_v2_cgroup()) {
        std::string base = unified->dir + "/" + leaf;
        if (prepare_base(base, "", "", &layout.track_has_kill, "cgroup.kill") == 0) {
            layout.track_base = base;
        }
    }
    probe.manager = std::make_unique<V1Manager>(std::move(layout));
    return probe;
}

}  // namespace pv::cgroup_backend
