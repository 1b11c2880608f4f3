// SPDX-License-Identifier: MIT
// Leases: no task waits forever for a dead supervisor. Every supervisor
// heartbeats its workers row; a task whose supervisor stopped heartbeating for
// longer than the lease (or stopped) is recovered by any live supervisor, and at
// startup a supervisor resolves the tasks of its own earlier lives at once.
// Recovery closes the open attempt row and retries or fails the task, with the
// same fence as every other write (task id + attempt + worker_id), so a late
// write from the presumed-dead supervisor changes nothing afterwards.
#pragma once

#include <chrono>
#include <compare>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/pqxx>

#include "cgroup.hpp"

namespace pv {

/// One attempt of one task (the key of leftover cgroup evidence).
struct TaskKey {
    std::string task_id;
    int attempt = 0;

    auto operator<=>(const TaskKey&) const = default;
};

/// Parses a task cgroup name "task-<uuid>-<attempt>"; nullopt for anything else.
std::optional<TaskKey> parse_task_cgroup_name(std::string_view name);

/// "supervisor <host>/<pid> stopped heartbeating at <heartbeat, ISO 8601 UTC>".
std::string lease_expired_text(std::string_view host, int pid, std::string_view heartbeat_iso);

/// "supervisor <host>/<pid> restarted".
std::string supervisor_restarted_text(std::string_view host, int pid);

/// "Memory limit exceeded: 2048.5MB" (bytes / 1048576, one decimal), or
/// "Memory limit exceeded: peak unknown".
std::string memory_exceeded_text(std::optional<std::uint64_t> peak_bytes);

/// Seconds a recovered task waits before it may be claimed again, given the
/// number of the attempt that was lost (the supervisor's retry backoff). Empty:
/// claimable at once.
using RequeueDelay = std::function<double(int attempt)>;

/// Recovers tasks in progress whose supervisor is presumed dead: its workers row
/// has stopped_at set, or heartbeat_at older than `lease` by the database clock
/// (so host clocks never matter). Tasks of `my_worker_id` are never touched.
/// Rows are taken with FOR UPDATE OF tasks SKIP LOCKED, so concurrent recoverers
/// each recover a task at most once and never wait on each other.
/// For each task, in this transaction:
///   - the open attempt row (ended_at IS NULL) is closed: ended_at now(),
///     outcome 'worker_lost', error "supervisor <host>/<pid> stopped heartbeating
///     at <heartbeat_at ISO>" (inserted if the claim left no attempt row);
///   - the task (fenced: same attempts, worker_id, still inprogress) becomes
///     'pending' with not_before now() + requeue_delay(attempt) if attempts <
///     max_attempts, else 'failed';
///     error_type 'worker_lost' and that error either way; a task whose
///     cancel_requested is set becomes 'cancelled' (error_type 'cancelled').
/// A task in progress with no worker_id is recovered the same way once
/// updated_at is older than the lease ("task was in progress without a supervisor").
/// Returns how many tasks were recovered. Throws pqxx exceptions; does not commit.
int recover_expired(pqxx::work& tx, std::chrono::seconds lease, const std::string& my_worker_id,
                    const RequeueDelay& requeue_delay = {});

/// Startup recovery: resolves at once every task still in progress under an
/// earlier workers row of this `host` and `instance` (any row but `my_worker_id`),
/// instead of waiting for the lease. Call after taking the instance lock (opening
/// the Journal does) and after killing and reading the leftover task cgroups;
/// `evidence` maps their names (parse_task_cgroup_name) to the counters read.
///   - evidence with oom_kills > 0 or oomd_killed: outcome 'memory_limit', error
///     "Memory limit exceeded: <peak>MB", oom_kills and peak stored on the attempt;
///     retried only if "memory_limit" is in `retry_on` (--retry-on);
///   - otherwise outcome 'worker_lost', error "supervisor <host>/<old pid>
///     restarted" (peak stored when evidence has one); retried.
/// Retry/failed/cancelled as in recover_expired. The earlier rows get stopped_at
/// set. Same locking and fencing as recover_expired. Returns the ids of the
/// tasks resolved. Throws pqxx exceptions; does not commit.
std::vector<std::string> recover_own_previous_life(pqxx::work& tx, const std::string& host,
                                                   const std::string& instance,
                                                   const std::string& my_worker_id,
                                                   const std::map<TaskKey, CgroupStats>& evidence,
                                                   const std::set<std::string>& retry_on = {},
                                                   const RequeueDelay& requeue_delay = {});

/// Of the attempts this supervisor is still running, those it no longer owns:
/// the task row is not 'inprogress' with that attempt number and `my_worker_id`
/// (a peer recovered it after our heartbeat lapsed, or an operator reset it).
/// Their final writes will be fenced off, so the supervisor should stop those
/// children rather than let two attempts of one task run at once. Call after a
/// heartbeat succeeds again following a failure. Read-only; throws pqxx exceptions.
std::set<TaskKey> lost_ownership(pqxx::work& tx, const std::string& my_worker_id,
                                 const std::set<TaskKey>& running);

/// The other direction: tasks the database says this supervisor is running but
/// `running` lacks (a claim whose child never started, an attempt the supervisor
/// forgot after an internal error). Without this they would wait for a restart,
/// since nobody recovers a live supervisor's tasks. Only attempts claimed more
/// than `grace` ago (database clock) are touched, so a claim still being spawned
/// is safe. Each is resolved like recover_expired with outcome 'worker_lost' and
/// error "supervisor <host>/<pid> lost track of the attempt". Same locking and
/// fencing. Returns how many tasks were resolved. Throws pqxx exceptions.
int recover_untracked(pqxx::work& tx, const std::string& my_worker_id,
                      const std::set<TaskKey>& running, std::chrono::seconds grace,
                      const RequeueDelay& requeue_delay = {});

}  // namespace pv
