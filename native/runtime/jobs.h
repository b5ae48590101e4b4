// The device runtime's core, shared by both native backends and free of Node-API and CUDA: one FIFO of
// jobs run in call order on one thread, the outcome each job ends with, and the sticky error of the
// jobs nobody waits for. A device (cuda_device.h, cpu_device.h) derives from Runtime, adds what runs on
// its thread and what it frees when it closes; the Node side (native/device_wrap.h) turns outcomes into
// settled promises.
//
// A job is awaited (a promise waits for it) or fire-and-forget (cuda's upload and free). A
// fire-and-forget job that fails leaves its outcome behind, sticky, and the next awaited job reports it
// instead of running: the caller learns of the failure at the next point where it waits (docs/DESIGN.md,
// "Errors"). Awaited jobs are handed to `deliver` on the job thread once they have run; fire-and-forget
// ones are deleted there.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace gk {
namespace rt {

// How a job ended: ok, with a number when it measures something (the probes), or failed with a
// GrpoKernelsError code ('RANGE', 'OUT_OF_MEMORY', 'DEVICE_LOST', ...) and a message. A RANGE message
// names the argument whose values broke the kernel's checks, worded as the API's host checks word it;
// every other message is said of the op and gets its name in front when it reaches JavaScript.
struct Outcome {
  const char* code = nullptr;  // null: ok
  std::string message;
  bool has_value = false;
  double value = 0;

  bool ok() const { return code == nullptr; }
  static Outcome Ok() { return {}; }
  static Outcome Value(double v) {
    Outcome o;
    o.has_value = true;
    o.value = v;
    return o;
  }
  static Outcome Fail(const char* code, std::string message) {
    Outcome o;
    o.code = code;
    o.message = std::move(message);
    return o;
  }
  // The message as JavaScript sees it (see above).
  std::string Said(const std::string& op) const;
};

// What a job does, on the job thread.
using Work = std::function<Outcome()>;

// One queued call. The Node side derives from it to carry its promise.
struct Job {
  virtual ~Job() = default;
  std::string op;
  Work work;
  bool awaited = true;  // false: fire-and-forget (see above)
  Outcome outcome;      // set on the job thread
};

class Runtime {
 public:
  // Called on the job thread with each awaited job that has run; it owns the job from then on.
  using Deliver = std::function<void(Job*)>;

  Runtime() = default;
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
  // A derived runtime's destructor calls Close() itself (Release() is virtual).
  virtual ~Runtime();

  // Starts the job thread. Before it, the device sets itself up; after it, jobs may be pushed.
  void Start(Deliver deliver);
  // Queues a job (any thread); the runtime owns it.
  void Push(Job* job);
  // Whether jobs may be pushed: between Start() and Close().
  bool open() const { return open_; }
  // Runs every job already queued, ends the job thread, then Release(). Idempotent; also releases a
  // runtime that was never started (a device whose setup failed half way).
  void Close();

 protected:
  // First thing on the job thread (cuda: select the device for this thread).
  virtual void OnThreadStart() {}
  // After the job thread has ended: free the device's resources.
  virtual void Release() {}

 private:
  void Loop();

  Deliver deliver_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
  bool stopping_ = false;
  bool open_ = false;
  bool released_ = false;
  Outcome sticky_;  // job thread only: the failure of a fire-and-forget job, not reported yet
};

}  // namespace rt
}  // namespace gk
