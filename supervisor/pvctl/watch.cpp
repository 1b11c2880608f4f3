// SPDX-License-Identifier: MIT
// pvctl watch: a live view of running tasks. One poll(2) loop waits on a
// signalfd (Ctrl-C, terminal resize) and the libpq socket (LISTEN pv_progress);
// a slow query refreshes the whole picture in case a notification was missed.
#include "commands.hpp"
#include "text_output.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <deque>
#include <iostream>
#include <map>
#include <system_error>

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "sys_error.hpp"
#include "unique_fd.hpp"

namespace pv::ctl {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kRecentShown = 5;

/// Blocks the signals watch handles and reads them from a signalfd instead, so
/// no work happens in a signal handler; the old mask comes back on destruction.
class SignalFd {
public:
    SignalFd() {
        sigset_t set;
        sigemptyset(&set);
        for (int s : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) sigaddset(&set, s);
        check_sys(::sigprocmask(SIG_BLOCK, &set, &m_old), "sigprocmask");
        m_fd.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!m_fd) {
            int err = errno;
            ::sigprocmask(SIG_SETMASK, &m_old, nullptr);
            throw_sys("signalfd", err);
        }
    }
    ~SignalFd() { ::sigprocmask(SIG_SETMASK, &m_old, nullptr); }
    SignalFd(const SignalFd&) = delete;
    SignalFd& operator=(const SignalFd&) = delete;

    int fd() const { return m_fd.get(); }

    /// The next pending signal number, or 0 when none is waiting.
    int read_one() {
        signalfd_siginfo info{};
        ssize_t n = ::read(m_fd.get(), &info, sizeof info);
        return n == static_cast<ssize_t>(sizeof info) ? static_cast<int>(info.ssi_signo) : 0;
    }

private:
    UniqueFd m_fd;
    sigset_t m_old{};
};

/// Switches a terminal to the alternate screen with a hidden cursor, and back.
class TerminalScreen {
public:
    explicit TerminalScreen(bool active) : m_active(active) {
        if (m_active)
            write_all("\x1b[?1049h\x1b[?25l");
    }
    ~TerminalScreen() {
        if (m_active)
            write_all("\x1b[?25h\x1b[?1049l");
    }
    TerminalScreen(const TerminalScreen&) = delete;
    TerminalScreen& operator=(const TerminalScreen&) = delete;

private:
    static void write_all(const std::string& s) {
        std::fflush(stdout);
        std::size_t done = 0;
        while (done < s.size()) {
            ssize_t n = ::write(STDOUT_FILENO, s.data() + done, s.size() - done);
            if (n <= 0)
                return;
            done += static_cast<std::size_t>(n);
        }
    }

    bool m_active;
};

struct RunningTask {
    double progress = 0;
    std::string stage;
    std::string output_filename;
    std::string host;
    long pid = 0;
    int attempt = 0;
    int max_attempts = 0;
    Clock::time_point started;
};

struct FinishedTask {
    std::string id;
    std::string status;
};

/// What the view shows; changed by notifications and refreshes, drawn by draw().
struct WatchState {
    std::map<std::string, RunningTask> running;
    std::deque<FinishedTask> recent;  // newest first
    long pending = 0;
    bool dirty = true;
};

/// Receives pv_progress payloads: {"id","status","progress","stage"}.
class ProgressReceiver : public pqxx::notification_receiver {
public:
    ProgressReceiver(pqxx::connection& conn, WatchState& state, bool json_lines)
        : pqxx::notification_receiver(conn, "pv_progress"),
          m_state(state),
          m_json_lines(json_lines) {}

    void operator()(const std::string& payload, int) override {
        json n = json::parse(payload, nullptr, false);
        if (!n.is_object() || !n["id"].is_string() || !n["status"].is_string())
            return;
        if (m_json_lines) {
            json line = n;
            line["event"] = "progress";
            std::cout << line.dump() << std::endl;
        }
        std::string id = n["id"].get<std::string>();
        std::string status = n["status"].get<std::string>();
        auto it = m_state.running.find(id);
        if (status == "inprogress") {
            if (it == m_state.running.end()) {
                // New to us: the next refresh fills in host, pid and attempt.
                it = m_state.running.emplace(id, RunningTask{}).first;
                it->second.started = Clock::now();
                m_needs_refresh = true;
            }
            if (n["progress"].is_number())
                it->second.progress = n["progress"].get<double>();
            it->second.stage = n["stage"].is_string() ? n["stage"].get<std::string>() : "";
        } else if (it != m_state.running.end()) {
            m_state.running.erase(it);
            m_state.recent.push_front({id, status});
            if (m_state.recent.size() > kRecentShown)
                m_state.recent.pop_back();
            m_needs_refresh = true;
        } else {
            m_needs_refresh = true;  // e.g. a new pending task: the count changed
        }
        m_state.dirty = true;
    }

    /// True once since the last call if a notification means the counts changed.
    bool take_refresh_request() { return std::exchange(m_needs_refresh, false); }

private:
    WatchState& m_state;
    bool m_json_lines;
    bool m_needs_refresh = false;
};

const char* const kSnapshotSql = R"sql(
SELECT json_build_object(
  'running', (SELECT coalesce(json_agg(r ORDER BY r.started_at), '[]'::json) FROM (
      SELECT t.id, t.progress, t.stage, t.attempts AS attempt, t.max_attempts,
             t.request->>'output_filename' AS output_filename, t.started_at,
             extract(epoch FROM now() - coalesce(a.started_at, t.started_at)) AS running_seconds,
             a.host, a.pid
      FROM tasks t
      LEFT JOIN task_attempts a ON a.task_id = t.id AND a.attempt = t.attempts
      WHERE t.status = 'inprogress') r),
  'pending', (SELECT count(*) FROM tasks WHERE status = 'pending'))::text
)sql";

void refresh(pqxx::connection& conn, WatchState& state, bool json_lines) {
    json snap;
    {
        pqxx::read_transaction tx(conn);
        snap = json::parse(tx.exec(kSnapshotSql)[0][0].c_str());
    }
    if (json_lines) {
        json line = snap;
        line["event"] = "snapshot";
        std::cout << line.dump() << std::endl;
    }
    auto now = Clock::now();
    std::map<std::string, RunningTask> running;
    for (const auto& r : snap["running"]) {
        RunningTask t;
        t.progress = r["progress"].is_number() ? r["progress"].get<double>() : 0;
        t.stage = text_or(r["stage"], "");
        t.output_filename = text_or(r["output_filename"], "");
        t.host = text_or(r["host"], "");
        t.pid = r["pid"].is_number() ? r["pid"].get<long>() : 0;
        t.attempt = r["attempt"].get<int>();
        t.max_attempts = r["max_attempts"].get<int>();
        double secs = r["running_seconds"].is_number() ? r["running_seconds"].get<double>() : 0;
        t.started = now - std::chrono::milliseconds(static_cast<long>(secs * 1000));
        running.emplace(r["id"].get<std::string>(), std::move(t));
    }
    state.running = std::move(running);
    state.pending = snap["pending"].get<long>();
    state.dirty = true;
}

int terminal_width() {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 100;
}

void draw(const WatchState& state, bool ansi) {
    int width = std::clamp(terminal_width(), 60, 200);
    int bar = std::max(10, width - 60);
    auto now = Clock::now();
    std::string out;
    if (ansi)
        out += "\x1b[H\x1b[2J";
    out += fmt::format("ProtoVideo: {} running, {} pending    (Ctrl-C to quit)\n\n",
                       state.running.size(), state.pending);
    for (const auto& [id, t] : state.running) {
        double secs = std::chrono::duration<double>(now - t.started).count();
        std::string who = t.host;
        if (t.pid > 0)
            who += fmt::format(" pid {}", t.pid);
        out += fmt::format("{}  {}  try {}/{}  {}\n", id.substr(0, 8),
                           truncate(t.output_filename.empty() ? "-" : t.output_filename, 30),
                           t.attempt, t.max_attempts, who);
        out += fmt::format("  {}  {:<12} {}\n", progress_bar(t.progress, bar),
                           truncate(t.stage, 12), format_seconds(secs));
    }
    if (state.running.empty())
        out += "nothing running\n";
    if (!state.recent.empty()) {
        out += "\nrecently finished:\n";
        for (const auto& f : state.recent) out += fmt::format("  {}  {}\n", f.id, f.status);
    }
    if (!ansi)
        out += "\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
}

}  // namespace

void watch(const GlobalOptions& g, const WatchArgs& args) {
    if (!(args.refresh_seconds > 0)) {
        throw CommandError(ExitCode::Usage, "--refresh must be a positive number of seconds");
    }
    Database db(g);
    bool tty = !g.json && ::isatty(STDOUT_FILENO) == 1;

    WatchState state;
    SignalFd signals;
    ProgressReceiver receiver(db.conn(), state, g.json);
    refresh(db.conn(), state, g.json);
    TerminalScreen screen(tty);

    auto refresh_every = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(args.refresh_seconds));
    auto next_refresh = Clock::now() + refresh_every;
    auto next_tick = Clock::now();
    for (;;) {
        auto now = Clock::now();
        if (now >= next_refresh) {
            refresh(db.conn(), state, g.json);
            next_refresh = now + refresh_every;
        }
        // A terminal view redraws every second to advance the clocks; a pipe
        // only gets a new frame when something changed.
        bool tick = tty && now >= next_tick;
        if (!g.json && (state.dirty || tick)) {
            draw(state, tty);
            state.dirty = false;
            next_tick = now + std::chrono::seconds(1);
        }

        auto until = std::min(next_refresh, tty ? next_tick : next_refresh);
        auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
        pollfd fds[2] = {{signals.fd(), POLLIN, 0}, {db.conn().sock(), POLLIN, 0}};
        int n = ::poll(fds, 2, static_cast<int>(std::max<long>(wait_ms.count(), 0) + 1));
        if (n < 0 && errno != EINTR)
            throw_sys("poll");
        if (n <= 0)
            continue;

        if (fds[0].revents & POLLIN) {
            for (int sig = signals.read_one(); sig != 0; sig = signals.read_one()) {
                if (sig == SIGWINCH) {
                    state.dirty = true;
                } else {
                    return;  // the destructors restore the screen and the mask
                }
            }
        }
        if (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) {
            db.conn().get_notifs();
            if (!db.conn().is_open()) {
                throw pqxx::broken_connection("the server closed the connection");
            }
            if (receiver.take_refresh_request())
                refresh(db.conn(), state, g.json);
        }
    }
}

}  // namespace pv::ctl
