// SPDX-License-Identifier: MIT
// FFmpeg's own log lines (av_log) routed into the project log, so a corrupt
// input's decoder warnings land in the job's log and not on a bare stderr.
#pragma once

namespace pv {

/// Installs the av_log callback once per process (idempotent, thread-safe).
/// Errors become warn events and warnings debug events, both named "ffmpeg";
/// chattier levels are dropped. Called by render().
void install_av_log_bridge();

/// Starts a new budget of lines: at most 100 are logged per render, since a
/// damaged input can make a decoder complain on every frame.
void reset_av_log_budget();

}  // namespace pv
