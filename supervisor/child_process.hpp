// SPDX-License-Identifier: MIT
// Per-attempt state of one running child: its pipes, the events it sent, a bounded
// stderr tail, what the supervisor did to it, and its teardown progress.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cgroup.hpp"
#include "death.hpp"
#include "event_loop.hpp"
#include "events.hpp"
#include "unique_fd.hpp"

namespace pv {

/// What the claim gave us about the task.
struct TaskInfo {
    std::string id;
    int attempt = 0;  // 1-based, equals tasks.attempts after the claim
    int max_attempts = 1;
    double timeout_seconds = 900;
    std::string request;  // JSON text
};

/// A bounded tail of a byte stream: keeps the last `capacity` bytes.
class ByteTail {
public:
    explicit ByteTail(std::size_t capacity) : m_capacity{capacity} {}
    void append(std::string_view bytes);
    const std::string& data() const { return m_data; }
    std::uint64_t total() const { return m_total; }

private:
    std::size_t m_capacity;
    std::string m_data;
    std::uint64_t m_total = 0;
};

/// Makes bytes safe for a PostgreSQL text column: valid UTF-8, no NUL.
std::string sanitize_text(std::string_view bytes);

enum class ChildState {
    Running,   // the main process is alive
    Draining,  // reaped; killing the rest of the cgroup and draining pipes
};

class ChildProcess {
public:
    static constexpr std::size_t kStderrTail = 64 * 1024;

    ChildProcess(TaskInfo task, std::string work_dir, std::unique_ptr<TaskCgroup> cgroup);

    const TaskInfo& task() const { return m_task; }
    const std::string& work_dir() const { return m_work_dir; }
    TaskCgroup* cgroup() const { return m_cgroup.get(); }
    /// Hands the cgroup over (for removal after the attempt is recorded).
    std::unique_ptr<TaskCgroup> take_cgroup() { return std::move(m_cgroup); }

    pid_t pid() const { return m_pid; }
    ChildState state() const { return m_state; }
    SupervisorAction action() const { return m_action; }
    /// Records what we did first; later actions (e.g. shutdown after a timeout
    /// started) do not overwrite it.
    void set_action(SupervisorAction a) {
        if (m_action == SupervisorAction::None)
            m_action = a;
    }

    void attach(pid_t pid, UniqueFd pidfd, UniqueFd event_read, UniqueFd output_read);
    void set_spawn_failure(std::string step, int err) {
        m_spawn_step = std::move(step);
        m_spawn_errno = err;
    }

    int event_fd() const { return m_event.get(); }
    int output_fd() const { return m_output.get(); }
    bool event_open() const { return static_cast<bool>(m_event); }
    bool output_open() const { return static_cast<bool>(m_output); }

    /// Reads what is available; returns false at EOF (the caller then closes it).
    /// Parsed events are passed to `on_event`.
    template <class F>
    bool read_events(F&& on_event);
    bool read_output();
    void close_event() { m_event.reset(); }
    void close_output() { m_output.reset(); }

    /// Sends `sig` to the whole task while the main process is still unreaped
    /// (group kill is safe then) and through the cgroup.
    void signal_task(int sig);

    void mark_reaped(int wait_status, const rusage& ru);

    /// Builds the classifier input; call after the cgroup is empty.
    DeathFacts facts(const CgroupStats& stats, const std::string& program) const;

    const std::string& stderr_tail() const { return m_stderr.data(); }
    const std::optional<nlohmann::json>& result() const { return m_result; }
    const std::optional<ErrorEvent>& child_error() const { return m_error; }
    int wait_status() const { return m_wait_status; }
    const rusage& usage() const { return m_rusage; }
    double started_at() const { return m_started; }
    double reaped_at() const { return m_reaped; }

    // Timers and bookkeeping the supervisor drives.
    TimerFd& timer() { return m_timer; }
    double drain_deadline = 0;  // monotonic time teardown gives up waiting
    double last_memory_warning = -1e9;
    double last_progress_write = -1e9;
    std::optional<ProgressEvent> unsaved_progress;
    std::uint64_t sampled_peak = 0;  // highest current_bytes() seen

private:
    TaskInfo m_task;
    std::string m_work_dir;
    std::unique_ptr<TaskCgroup> m_cgroup;
    pid_t m_pid = -1;
    UniqueFd m_pidfd;
    UniqueFd m_event;
    UniqueFd m_output;
    ChildState m_state = ChildState::Running;
    SupervisorAction m_action = SupervisorAction::None;
    std::optional<int> m_spawn_errno;
    std::string m_spawn_step;
    LineSplitter m_lines;
    ByteTail m_stderr{kStderrTail};
    std::optional<nlohmann::json> m_result;
    std::optional<ErrorEvent> m_error;
    int m_wait_status = 0;
    rusage m_rusage{};
    double m_started;
    double m_reaped = 0;
    TimerFd m_timer;
};

template <class F>
bool ChildProcess::read_events(F&& on_event) {
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(m_event.get(), buf, sizeof buf);
        if (n > 0) {
            m_lines.feed(std::string_view(buf, static_cast<std::size_t>(n)),
                         [&](std::string_view line, bool overlong) {
                             if (overlong) {
                                 on_event(std::optional<ChildEvent>{}, "line over 1 MiB");
                                 return;
                             }
                             std::string why;
                             auto ev = parse_event_line(line, why);
                             if (!ev) {
                                 on_event(std::optional<ChildEvent>{}, why);
                                 return;
                             }
                             if (auto* r = std::get_if<ResultEvent>(&*ev))
                                 m_result = r->body;
                             if (auto* e = std::get_if<ErrorEvent>(&*ev))
                                 m_error = *e;
                             on_event(ev, std::string());
                         });
            continue;
        }
        if (n == 0)
            return false;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
}

}  // namespace pv
