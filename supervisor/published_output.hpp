// SPDX-License-Identifier: MIT
// The renderer publishes a task's video as OUTPUT_DIR/<task id>.mp4 with a
// poster beside it, before it reports its result and exits. A child killed in
// between leaves a published video for an attempt that did not complete; the
// supervisor, which alone decides how an attempt ended, withdraws it.
#pragma once

#include <string>
#include <vector>

namespace pv {

// Limitation: only a local OUTPUT_DIR is withdrawn from; an S3 upload of an
// attempt killed before its result stays, and so does the output of a task that
// another supervisor recovered from a lost host.
class PublishedOutput {
public:
    /// `dir` is the renderers' OUTPUT_DIR; empty means nothing is published
    /// locally and withdraw() does nothing.
    explicit PublishedOutput(std::string dir) : m_dir(std::move(dir)) {}

    /// Removes what an attempt of `task_id` may have published: the video, its
    /// poster and the hidden copies of either (a cross-device publish). Call it
    /// only once every process of the attempt is gone. Returns the paths
    /// removed; a failure to remove one is logged, never thrown.
    std::vector<std::string> withdraw(const std::string& task_id) const;

private:
    std::string m_dir;
};

}  // namespace pv
