#include "log/log_context.h"

#include <utility>

namespace ccm::log {

namespace {
thread_local Context current;
}  // namespace

const Context& Current() { return current; }

Scope::Scope(Set set) : saved_(current) {
  if (set.trace_id) current.trace_id = std::move(*set.trace_id);
  if (set.lablet_id) current.lablet_id = std::move(*set.lablet_id);
  if (set.worker_id) current.worker_id = std::move(*set.worker_id);
  if (set.request_id) current.request_id = std::move(*set.request_id);
  for (auto& f : set.fields) current.fields.push_back(std::move(f));
}

Scope::~Scope() { current = std::move(saved_); }

}  // namespace ccm::log
