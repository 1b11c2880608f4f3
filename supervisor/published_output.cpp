// SPDX-License-Identifier: MIT
#include "published_output.hpp"

#include "log.hpp"
#include "uuid_text.hpp"

#include <unistd.h>
#include <cerrno>
#include <cstring>

namespace pv {

std::vector<std::string> PublishedOutput::withdraw(const std::string& task_id) const {
    std::vector<std::string> removed;
    // Task ids come from the database's uuid column; anything else would not
    // name a file of ours.
    if (m_dir.empty() || !is_uuid_text(task_id))
        return removed;
    for (const char* suffix : {".mp4", ".jpg"}) {
        const std::string name = task_id + suffix;
        for (const std::string& path : {m_dir + "/" + name, m_dir + "/." + name + ".tmp"}) {
            if (::unlink(path.c_str()) == 0) {
                removed.push_back(path);
            } else if (errno != ENOENT) {
                log::error("Cannot withdraw the output of an unfinished attempt",
                           {{"task_id", task_id},
                            {"path", path},
                            {"error_message", std::strerror(errno)}});
            }
        }
    }
    if (!removed.empty()) {
        log::warn("Withdrew the output of an attempt that did not complete",
                  {{"task_id", task_id}, {"paths", removed}});
    }
    return removed;
}

}  // namespace pv
