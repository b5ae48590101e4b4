// The job thread of a device runtime (jobs.h).
#include "jobs.h"

#include <new>

namespace gk {
namespace rt {

std::string Outcome::Said(const std::string& op) const {
  return code != nullptr && std::string(code) == "RANGE" ? message : op + ": " + message;
}

Runtime::~Runtime() { Close(); }

void Runtime::Start(Deliver deliver) {
  deliver_ = std::move(deliver);
  open_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void Runtime::Push(Job* job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job);
  }
  cv_.notify_one();
}

void Runtime::Close() {
  if (released_) return;
  released_ = true;
  open_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  Release();
}

void Runtime::Loop() {
  OnThreadStart();
  for (;;) {
    Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      job = queue_.front();
      queue_.pop_front();
    }
    if (job->awaited && !sticky_.ok()) {  // an earlier fire-and-forget job failed: report it here
      job->outcome = sticky_;
      sticky_ = Outcome::Ok();
    } else {
      try {
        job->outcome = job->work();
      } catch (const std::bad_alloc&) {
        job->outcome = Outcome::Fail("OUT_OF_MEMORY", "out of host memory");
      }
      if (!job->outcome.ok() && !job->awaited) sticky_ = job->outcome;
    }
    if (job->awaited)
      deliver_(job);
    else
      delete job;
  }
}

}  // namespace rt
}  // namespace gk
