// SPDX-License-Identifier: MIT
// The single-threaded event loop: one epoll set over file descriptors, each with a
// callback, plus small RAII helpers for timerfds and the signalfd.
#pragma once

#include <signal.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "unique_fd.hpp"

namespace pv {

class EventLoop {
public:
    using Handler = std::function<void(std::uint32_t events)>;

    EventLoop();

    /// Watches `fd` for `events` (EPOLLIN, ...). The fd stays owned by the caller,
    /// which must remove() it before closing it. Returns a registration id.
    std::uint64_t add(int fd, std::uint32_t events, Handler handler);

    /// Stops watching `fd`. Safe to call from inside a handler, also for the fd
    /// being dispatched; events already collected for it are dropped.
    void remove(int fd) noexcept;

    bool watching(int fd) const { return m_by_fd.count(fd) > 0; }

    /// Waits up to `timeout_ms` (-1 = forever) and dispatches ready handlers.
    /// Handler exceptions propagate to the caller.
    void run_once(int timeout_ms);

private:
    struct Entry {
        int fd;
        Handler handler;
    };
    UniqueFd m_epoll;
    std::uint64_t m_next_id = 1;
    std::unordered_map<std::uint64_t, Entry> m_entries;
    std::unordered_map<int, std::uint64_t> m_by_fd;
};

/// A CLOCK_MONOTONIC timerfd (non-blocking, close-on-exec).
class TimerFd {
public:
    TimerFd();
    /// Fires once after `seconds` (clamped to at least 1 ms), then every `interval`
    /// seconds when interval > 0.
    void arm(double seconds, double interval = 0);
    void disarm();
    bool armed() const { return m_armed; }
    /// Consumes the expiration count (0 if it had not fired).
    std::uint64_t consume() noexcept;
    int fd() const { return m_fd.get(); }

private:
    UniqueFd m_fd;
    bool m_armed = false;
};

/// Creates a non-blocking signalfd for `mask` (the signals must already be blocked).
UniqueFd make_signalfd(const sigset_t& mask);

/// Monotonic seconds.
double monotonic_seconds();

}  // namespace pv
