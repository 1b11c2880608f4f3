// SPDX-License-Identifier: MIT
#include "child_process.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

namespace pv {

void ByteTail::append(std::string_view bytes) {
    m_total += bytes.size();
    if (bytes.size() >= m_capacity) {
        m_data.assign(bytes.substr(bytes.size() - m_capacity));
        return;
    }
    m_data.append(bytes);
    if (m_data.size() > m_capacity)
        m_data.erase(0, m_data.size() - m_capacity);
}

std::string sanitize_text(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    std::size_t i = 0;
    while (i < in.size()) {
        auto c = static_cast<unsigned char>(in[i]);
        std::size_t len = c < 0x80           ? 1
                          : (c >> 5) == 0x6  ? 2
                          : (c >> 4) == 0xE  ? 3
                          : (c >> 3) == 0x1E ? 4
                                             : 0;
        bool ok = len > 0 && i + len <= in.size();
        for (std::size_t k = 1; ok && k < len; ++k) {
            ok = (static_cast<unsigned char>(in[i + k]) & 0xC0) == 0x80;
        }
        if (!ok) {
            out.push_back('?');
            ++i;
            continue;
        }
        if (c != 0)
            out.append(in.substr(i, len));
        i += len;
    }
    return out;
}

ChildProcess::ChildProcess(TaskInfo task, std::string work_dir, std::unique_ptr<TaskCgroup> cgroup)
    : m_task{std::move(task)},
      m_work_dir{std::move(work_dir)},
      m_cgroup{std::move(cgroup)},
      m_started{monotonic_seconds()} {}

void ChildProcess::attach(pid_t pid, UniqueFd pidfd, UniqueFd event_read, UniqueFd output_read) {
    m_pid = pid;
    m_pidfd = std::move(pidfd);
    m_event = std::move(event_read);
    m_output = std::move(output_read);
}

bool ChildProcess::read_output() {
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(m_output.get(), buf, sizeof buf);
        if (n > 0) {
            // Keep reading past the cap so the child never blocks on a full pipe.
            m_stderr.append(std::string_view(buf, static_cast<std::size_t>(n)));
            continue;
        }
        if (n == 0)
            return false;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
}

void ChildProcess::signal_task(int sig) {
    if (m_state == ChildState::Running && m_pid > 0) {
        // The unreaped leader pins its pid and process group, so this cannot hit
        // an unrelated process.
        ::kill(-m_pid, sig);
        ::kill(m_pid, sig);
    }
    if (m_cgroup)
        m_cgroup->signal_all(sig);
}

void ChildProcess::mark_reaped(int wait_status, const rusage& ru) {
    m_wait_status = wait_status;
    m_rusage = ru;
    m_state = ChildState::Draining;
    m_reaped = monotonic_seconds();
}

DeathFacts ChildProcess::facts(const CgroupStats& stats, const std::string& program) const {
    DeathFacts f;
    f.wait_status = m_wait_status;
    f.stats = stats;
    f.action = m_action;
    f.child_error = m_error;
    f.got_result = m_result.has_value();
    f.spawn_errno = m_spawn_errno;
    if (m_spawn_errno)
        f.spawn_step = m_spawn_step;
    f.program = program;
    f.timeout_seconds = m_task.timeout_seconds;
    // Fallback when the cgroup keeps no peak: ru_maxrss (KiB; it also counts the
    // supervisor's RSS at fork) or the highest sampled usage, whichever is larger.
    std::uint64_t rss = static_cast<std::uint64_t>(m_rusage.ru_maxrss) * 1024;
    std::uint64_t best = std::max(rss, sampled_peak);
    if (best > 0)
        f.rusage_peak_bytes = best;
    return f;
}

}  // namespace pv
