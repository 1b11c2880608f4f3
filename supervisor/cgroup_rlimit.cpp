// SPDX-License-Identifier: MIT
// Fallback where no cgroup can be written: RLIMIT_DATA in the child, and the
// task tracked as the session the child starts with setsid() (scanned in /proc).
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <sstream>

#include "cgroup_backends.hpp"
#include "cgroup_fs.hpp"
#include "sys_error.hpp"

namespace pv::cgroup_backend {
namespace {

namespace fs = pv::cgroup_fs;

// One page shared with every forked child, so the child can publish its pid
// from join_from_child() without the caller passing it back in.
class SharedPid {
public:
    SharedPid() {
        void* page = ::mmap(nullptr, sizeof(std::atomic<pid_t>), PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED)
            throw_sys("mmap shared pid page");
        m_pid = new (page) std::atomic<pid_t>(0);
    }
    SharedPid(const SharedPid&) = delete;
    SharedPid& operator=(const SharedPid&) = delete;
    ~SharedPid() { ::munmap(m_pid, sizeof(std::atomic<pid_t>)); }

    void store(pid_t pid) const noexcept { m_pid->store(pid, std::memory_order_relaxed); }
    pid_t load() const noexcept { return m_pid->load(std::memory_order_relaxed); }

private:
    std::atomic<pid_t>* m_pid;
};
static_assert(std::atomic<pid_t>::is_always_lock_free);

struct ProcStat {
    char state = '?';
    pid_t pgrp = 0;
    pid_t session = 0;
};

// Fields 3, 5 and 6 of /proc/<pid>/stat; the command name may hold spaces and
// parentheses, so parsing starts after the last ')'.
std::optional<ProcStat> read_proc_stat(pid_t pid) {
    auto text = fs::read_file("/proc/" + std::to_string(pid) + "/stat");
    if (!text)
        return std::nullopt;
    std::size_t paren = text->rfind(')');
    if (paren == std::string::npos)
        return std::nullopt;
    std::istringstream in(text->substr(paren + 1));
    ProcStat stat;
    pid_t ppid = 0;
    if (!(in >> stat.state >> ppid >> stat.pgrp >> stat.session))
        return std::nullopt;
    return stat;
}

class RlimitTaskCgroup final : public TaskCgroup {
public:
    RlimitTaskCgroup(std::string name, std::uint64_t memory_limit_bytes)
        : m_name{std::move(name)}, m_limit{memory_limit_bytes} {}

    ~RlimitTaskCgroup() override {
        // Never throw from a destructor; there is no directory to leave behind.
        try {
            if (m_leader.load() != 0 && !empty())
                kill_and_remove(*this, std::chrono::milliseconds(100));
        } catch (...) {
        }
    }

    int join_from_child() const noexcept override {
        m_leader.store(::getpid());
        // RLIMIT_DATA counts private writable mappings (heap, anonymous mmap,
        // thread stacks) but not reserved PROT_NONE arenas, unlike RLIMIT_AS.
        rlimit limit{m_limit, m_limit};
        if (::setrlimit(RLIMIT_DATA, &limit) != 0)
            return errno;
        return 0;
    }

    std::optional<std::uint64_t> current_bytes() const override {
        static const long page = ::sysconf(_SC_PAGESIZE);
        std::uint64_t total = 0;
        for (pid_t pid : pids()) {
            auto statm = fs::read_file("/proc/" + std::to_string(pid) + "/statm");
            if (!statm)
                continue;
            std::istringstream in(*statm);
            std::uint64_t size = 0, resident = 0;
            if (in >> size >> resident)
                total += resident * static_cast<std::uint64_t>(page);
        }
        m_peak = std::max(m_peak.value_or(0), total);
        return total;
    }

    // Limitation: without cgroups a process that calls setsid() again leaves the
    // task's session and is no longer seen, measured or killed; and once the
    // leader is reaped, an unrelated process that gets its pid and calls setsid()
    // would be taken for part of the task.
    std::vector<pid_t> pids() const override {
        std::vector<pid_t> found;
        pid_t leader = m_leader.load();
        if (leader <= 0)
            return found;
        fs::DirPtr proc = fs::open_dir("/proc");
        if (!proc)
            return found;
        while (dirent* entry = ::readdir(proc.get())) {
            pid_t pid = 0;
            const char* name = entry->d_name;
            auto [ptr, ec] =
                std::from_chars(name, name + std::char_traits<char>::length(name), pid);
            if (ec != std::errc{} || *ptr != '\0')
                continue;
            auto stat = read_proc_stat(pid);
            if (!stat || stat->state == 'Z')
                continue;
            if (stat->session == leader || stat->pgrp == leader)
                found.push_back(pid);
        }
        std::sort(found.begin(), found.end());
        return found;
    }

    void signal_all(int sig) override {
        fs::kill_until_stable(sig, [this] { return pids(); });
    }

    bool empty() const override { return pids().empty(); }

    // Limitation: rlimit mode has no kernel OOM counter; a breach shows up as
    // ENOMEM inside the child, and the peak is only the highest sampled RSS.
    CgroupStats stats() const override {
        CgroupStats stats;
        stats.peak_bytes = m_peak;
        return stats;
    }

    bool remove() override { return true; }

    std::string path() const override { return "rlimit:" + m_name; }

private:
    std::string m_name;
    rlim_t m_limit;
    SharedPid m_leader;
    mutable std::optional<std::uint64_t> m_peak;
};

class RlimitManager final : public CgroupManager {
public:
    explicit RlimitManager(std::string note) : m_note{std::move(note)} {}

    CgroupMode mode() const override { return CgroupMode::Rlimit; }

    // Limitation: rlimit mode does not enforce pids_max; RLIMIT_NPROC counts all
    // processes of the user (and root ignores it), so it cannot bound one task.
    std::unique_ptr<TaskCgroup> create(const std::string& name, std::uint64_t memory_limit_bytes,
                                       int /*pids_max*/) override {
        fs::check_task_name(name);
        return std::make_unique<RlimitTaskCgroup>(name, memory_limit_bytes);
    }

    std::vector<std::string> leftovers() const override { return {}; }

    std::unique_ptr<TaskCgroup> adopt(const std::string& name) override {
        throw_sys("adopt " + name + " (rlimit mode keeps no cgroups)", ENOTSUP);
    }

    std::string describe() const override {
        return "rlimit fallback: RLIMIT_DATA per task, session tracked in /proc, RSS sampled (" +
               m_note + ")";
    }

private:
    std::string m_note;
};

}  // namespace

std::unique_ptr<CgroupManager> make_rlimit_manager(const std::string& note) {
    return std::make_unique<RlimitManager>(note);
}

}  // namespace pv::cgroup_backend
