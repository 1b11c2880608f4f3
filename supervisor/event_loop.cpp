// SPDX-License-Identifier: MIT
#include "event_loop.hpp"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <ctime>
#include <vector>

#include "sys_error.hpp"

namespace pv {

EventLoop::EventLoop() : m_epoll{check_sys(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")} {}

std::uint64_t EventLoop::add(int fd, std::uint32_t events, Handler handler) {
    remove(fd);
    std::uint64_t id = m_next_id++;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = id;
    check_sys(::epoll_ctl(m_epoll.get(), EPOLL_CTL_ADD, fd, &ev), "epoll_ctl add");
    m_entries.emplace(id, Entry{fd, std::move(handler)});
    m_by_fd[fd] = id;
    return id;
}

void EventLoop::remove(int fd) noexcept {
    auto it = m_by_fd.find(fd);
    if (it == m_by_fd.end())
        return;
    ::epoll_ctl(m_epoll.get(), EPOLL_CTL_DEL, fd, nullptr);
    m_entries.erase(it->second);
    m_by_fd.erase(it);
}

void EventLoop::run_once(int timeout_ms) {
    epoll_event events[32];
    int n = ::epoll_wait(m_epoll.get(), events, 32, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return;
        throw_sys("epoll_wait");
    }
    // Handlers may remove other registrations; ids make stale events harmless.
    std::vector<std::pair<std::uint64_t, std::uint32_t>> ready;
    ready.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        std::uint64_t id = events[i].data.u64;
        std::uint32_t mask = events[i].events;
        ready.emplace_back(id, mask);
    }
    for (auto [id, mask] : ready) {
        auto it = m_entries.find(id);
        if (it == m_entries.end())
            continue;
        // Copy: the handler may remove its own entry while running.
        Handler handler = it->second.handler;
        handler(mask);
    }
}

TimerFd::TimerFd()
    : m_fd{check_sys(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC),
                     "timerfd_create")} {}

namespace {

timespec to_timespec(double seconds) {
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(seconds);
    ts.tv_nsec = static_cast<long>((seconds - static_cast<double>(ts.tv_sec)) * 1e9);
    return ts;
}

}  // namespace

void TimerFd::arm(double seconds, double interval) {
    if (!(seconds >= 0.001))
        seconds = 0.001;
    itimerspec spec{};
    spec.it_value = to_timespec(seconds);
    if (interval > 0)
        spec.it_interval = to_timespec(std::max(interval, 0.001));
    check_sys(::timerfd_settime(m_fd.get(), 0, &spec, nullptr), "timerfd_settime");
    m_armed = true;
}

void TimerFd::disarm() {
    itimerspec spec{};
    ::timerfd_settime(m_fd.get(), 0, &spec, nullptr);
    consume();
    m_armed = false;
}

std::uint64_t TimerFd::consume() noexcept {
    std::uint64_t count = 0;
    if (::read(m_fd.get(), &count, sizeof count) != sizeof count)
        return 0;
    return count;
}

UniqueFd make_signalfd(const sigset_t& mask) {
    return UniqueFd{check_sys(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC), "signalfd")};
}

double monotonic_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace pv
