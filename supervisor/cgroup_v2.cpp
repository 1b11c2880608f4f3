// SPDX-License-Identifier: MIT
// cgroup v2 backend for a delegated subtree: the supervisor moves itself into a
// "supervisor" leaf, enables +memory +pids for its siblings, and gives every
// task attempt a cgroup with memory.max, swap off, oom.group and pids.max.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "cgroup_backends.hpp"
#include "cgroup_fs.hpp"
#include "sys_error.hpp"

namespace pv::cgroup_backend {
namespace {

namespace fs = pv::cgroup_fs;

struct V2Layout {
    std::string instance_base;  // <delegated root>/protovideo-<instance>
    bool has_pids = false;
    bool has_kill = false;
};

class V2TaskCgroup final : public TaskCgroup {
public:
    V2TaskCgroup(const V2Layout& layout, const std::string& name)
        : m_dir{layout.instance_base + "/" + name},
          m_procs{m_dir + "/cgroup.procs"},
          m_has_kill{layout.has_kill} {}

    ~V2TaskCgroup() override {
        // Never throw from a destructor; remove() logs what stays, leftovers() finds it.
        try {
            if (!m_removed)
                kill_and_remove(*this, std::chrono::milliseconds(100));
        } catch (...) {
        }
    }

    int join_from_child() const noexcept override { return fs::join_cgroup(m_procs.c_str()); }

    std::optional<std::uint64_t> current_bytes() const override {
        auto usage = fs::read_u64(m_dir + "/memory.current");
        if (!usage)
            return std::nullopt;
        auto inactive = fs::read_keyed(m_dir + "/memory.stat", "inactive_file");
        return *usage - std::min(*usage, inactive.value_or(0));
    }

    std::vector<pid_t> pids() const override { return fs::read_procs(m_dir); }

    void signal_all(int sig) override {
        // cgroup.kill (5.14+) kills the whole subtree atomically, forks included.
        if (sig == SIGKILL && m_has_kill && fs::write_file(m_dir + "/cgroup.kill", "1") == 0) {
            return;
        }
        fs::kill_until_stable(sig, [this] { return pids(); });
    }

    bool empty() const override {
        if (auto populated = fs::read_keyed(m_dir + "/cgroup.events", "populated")) {
            return *populated == 0;
        }
        return pids().empty();
    }

    CgroupStats stats() const override {
        CgroupStats stats;
        // An OOM inside the task kills the whole group (memory.oom.group=1) and
        // counts once in oom_group_kill, while oom_kill counts the victim once
        // as chosen and again as a group member, then every other member (3 for
        // a two-process task on Linux 6.1, tests/vm/cgroup_v2.sh). So, as on v1,
        // the count is of OOM events; oom_kill counts only without a group kill
        // here (an OOM that killed the group of an ancestor with oom.group set).
        std::string events = m_dir + "/memory.events";
        auto kills = fs::read_keyed(events, "oom_kill").value_or(0);
        auto group_kills = fs::read_keyed(events, "oom_group_kill").value_or(0);
        stats.oom_kills = static_cast<int>(group_kills > 0 ? group_kills : kills);
        stats.peak_bytes = fs::read_u64(m_dir + "/memory.peak");
        stats.oomd_killed = fs::read_xattr_counter(m_dir, "user.oomd_ooms") > 0 ||
                            fs::read_xattr_counter(m_dir, "user.oomd_kill") > 0;
        return stats;
    }

    bool remove() override {
        if (!m_removed)
            m_removed = fs::remove_dirs({m_dir});
        return m_removed;
    }

    std::string path() const override { return m_dir; }

private:
    std::string m_dir;
    std::string m_procs;
    bool m_has_kill = false;
    bool m_removed = false;
};

class V2Manager final : public CgroupManager {
public:
    explicit V2Manager(V2Layout layout) : m_layout{std::move(layout)} {}

    ~V2Manager() override {
        // EBUSY while task cgroups remain keeps them for leftovers().
        ::rmdir(m_layout.instance_base.c_str());
    }

    CgroupMode mode() const override { return CgroupMode::V2; }

    std::unique_ptr<TaskCgroup> create(const std::string& name, std::uint64_t memory_limit_bytes,
                                       int pids_max) override {
        fs::check_task_name(name);
        std::string dir = m_layout.instance_base + "/" + name;
        if (int err = fs::make_dir(dir); err != 0)
            throw_sys("mkdir " + dir, err);
        auto task = std::make_unique<V2TaskCgroup>(m_layout, name);
        try {
            fs::write_file_or_throw(dir + "/memory.max", std::to_string(memory_limit_bytes));
            // Without swap accounting the file is missing; then nothing can swap.
            if (int err = fs::write_file(dir + "/memory.swap.max", "0");
                err != 0 && err != ENOENT) {
                throw_sys("write 0 to " + dir + "/memory.swap.max", err);
            }
            fs::write_file_or_throw(dir + "/memory.oom.group", "1");
            if (m_layout.has_pids && pids_max > 0) {
                fs::write_file_or_throw(dir + "/pids.max", std::to_string(pids_max));
            }
        } catch (...) {
            task->remove();
            throw;
        }
        return task;
    }

    std::vector<std::string> leftovers() const override {
        return fs::list_task_dirs(m_layout.instance_base);
    }

    std::unique_ptr<TaskCgroup> adopt(const std::string& name) override {
        fs::check_task_name(name);
        std::string dir = m_layout.instance_base + "/" + name;
        if (!fs::exists(dir))
            throw_sys("adopt " + dir, ENOENT);
        return std::make_unique<V2TaskCgroup>(m_layout, name);
    }

    std::string describe() const override {
        std::string text = "cgroup v2: tasks under " + m_layout.instance_base;
        text += m_layout.has_pids ? " (memory, pids" : " (memory only, no pids controller";
        text += m_layout.has_kill ? ", cgroup.kill)" : ", no cgroup.kill)";
        return text;
    }

private:
    V2Layout m_layout;
};

bool lists_controller(const std::string& file, const std::string& controller) {
    auto text = fs::read_file(file);
    if (!text)
        return false;
    std::istringstream in(*text);
    std::string word;
    while (in >> word) {
        if (word == controller)
            return true;
    }
    return false;
}

// Turns on memory (and pids) for the children of `dir`. Returns 0 or an errno value.
int enable_controllers(const std::string& dir, bool with_pids) {
    if (int err = fs::write_file(dir + "/cgroup.subtree_control", "+memory"); err != 0) {
        return err;
    }
    if (with_pids)
        return fs::write_file(dir + "/cgroup.subtree_control", "+pids");
    return 0;
}

// Creates the instance directory with memory (and pids) on for its children,
// then proves a task cgroup can be made and limited there. Returns 0 or an
// errno value; the instance directory is removed again on failure.
int prepare_instance(V2Layout& layout) {
    const std::string& base = layout.instance_base;
    int err = fs::make_dir(base);
    if (err == 0 || err == EEXIST)
        err = enable_controllers(base, layout.has_pids);
    if (err == 0) {
        std::string dir = base + "/probe-" + std::to_string(::getpid());
        err = fs::make_dir(dir);
        if (err == 0 || err == EEXIST) {
            err = fs::write_file(dir + "/memory.max", "67108864");
            layout.has_kill = fs::exists(dir + "/cgroup.kill");
            if (::rmdir(dir.c_str()) != 0 && err == 0)
                err = errno;
        }
    }
    if (err != 0)
        ::rmdir(base.c_str());
    return err;
}

Probe failed(std::string why, int err) {
    Probe probe;
    probe.why_not = std::move(why) + (err != 0 ? std::string(": ") + std::strerror(err) : "");
    probe.err = err != 0 ? err : ENOTSUP;
    return probe;
}

}  // namespace

std::unique_ptr<CgroupManager> make_v2_manager_at(const std::string& instance_base, bool has_pids,
                                                  bool has_kill) {
    V2Layout layout;
    layout.instance_base = instance_base;
    layout.has_pids = has_pids;
    layout.has_kill = has_kill;
    return std::make_unique<V2Manager>(std::move(layout));
}

Probe probe_v2(const std::string& instance) {
    auto own = fs::own_v2_cgroup();
    if (!own)
        return failed("no cgroup2 hierarchy mounted for this process", ENOENT);

    // Under systemd's DelegateSubgroup=supervisor we already sit in the leaf and
    // the delegated root is its parent; otherwise our own cgroup is the root.
    std::string root = own->dir;
    std::string leaf = root + "/supervisor";
    bool in_leaf = own->dir.ends_with("/supervisor") && own->dir != own->mount_point;
    if (in_leaf) {
        root = own->dir.substr(0, own->dir.size() - std::string("/supervisor").size());
        leaf = own->dir;
    }
    if (!lists_controller(root + "/cgroup.controllers", "memory")) {
        return failed("memory controller not delegated to " + root, 0);
    }
    bool with_pids = lists_controller(root + "/cgroup.controllers", "pids");

    // No-internal-processes rule: controllers can be enabled for the children of
    // `root` only once no process lives in it, so the supervisor moves to a leaf.
    bool moved = false;
    if (!in_leaf) {
        if (int err = fs::make_dir(leaf); err != 0 && err != EEXIST) {
            return failed("cannot create " + leaf, err);
        }
        if (int err = fs::write_file(leaf + "/cgroup.procs", "0"); err != 0) {
            ::rmdir(leaf.c_str());
            return failed("cannot move the supervisor into " + leaf, err);
        }
        moved = true;
    }
    if (int err = enable_controllers(root, with_pids); err != 0) {
        if (moved) {
            fs::write_file(root + "/cgroup.procs", "0");
            ::rmdir(leaf.c_str());
        }
        return failed("cannot enable memory for children of " + root + " (other processes in it?)",
                      err);
    }
    // From here on `root` may hold no process, so the supervisor stays in its
    // leaf even if a later step fails.

    V2Layout layout;
    layout.has_pids = with_pids;
    layout.instance_base = root + "/protovideo-" + instance;
    if (int err = prepare_instance(layout); err != 0) {
        return failed("cannot create and limit a cgroup under " + layout.instance_base, err);
    }
    Probe probe;
    probe.manager = std::make_unique<V2Manager>(std::move(layout));
    return probe;
}

}  // namespace pv::cgroup_backend
