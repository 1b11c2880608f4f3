// SPDX-License-Identifier: MIT
// Thin helpers that turn a failed system call into std::system_error.
#pragma once

#include <cerrno>
#include <string>
#include <system_error>

namespace pv {

[[noreturn]] inline void throw_sys(const std::string& what, int err = errno) {
    throw std::system_error(err, std::generic_category(), what);
}

/// Throws std::system_error naming `what` when `rc` is negative; returns rc.
template <class T>
T check_sys(T rc, const std::string& what) {
    if (rc < 0)
        throw_sys(what);
    return rc;
}

}  // namespace pv
