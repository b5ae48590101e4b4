// The device runtime's job thread (native/runtime/jobs.h) on its own, without Node or a device: order,
// the sticky error of fire-and-forget jobs, out-of-memory, and the close sequence. Built and run by
// test/native/runtime.test.ts; prints one line per failed check and exits 1 if any failed.
#include <atomic>
#include <cstdio>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "runtime/jobs.h"

using gk::rt::Job;
using gk::rt::Outcome;
using gk::rt::Runtime;

namespace {

std::atomic<int> failures{0};
#define CHECK(cond)                                                    \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
      ++failures;                                                      \
    }                                                                  \
  } while (0)

// A device that records what the runtime calls on it.
class FakeDevice : public Runtime {
 public:
  ~FakeDevice() override { Close(); }
  std::thread::id job_thread;
  std::atomic<int> started{0}, released{0}, ran{0};
  std::vector<std::string> delivered;  // job thread while open; read after Close()
  std::vector<Outcome> outcomes;

  void Begin() {
    Start([this](Job* job) {
      CHECK(std::this_thread::get_id() == job_thread);
      delivered.push_back(job->op);
      outcomes.push_back(job->outcome);
      delete job;
    });
  }
  void Push(const std::string& op, gk::rt::Work work, bool awaited = true) {
    Job* job = new Job();
    job->op = op;
    job->work = std::move(work);
    job->awaited = awaited;
    Runtime::Push(job);
  }

 protected:
  void OnThreadStart() override {
    job_thread = std::this_thread::get_id();
    ++started;
  }
  void Release() override {
    CHECK(std::this_thread::get_id() != job_thread);  // after the job thread ended
    ++released;
  }
};

void Order() {
  FakeDevice d;
  CHECK(!d.open());
  d.Begin();
  CHECK(d.open());
  for (int i = 0; i < 200; ++i)
    d.Push(std::to_string(i), [&d, i] {
      CHECK(d.ran++ == i);  // one thread, call order
      return i % 7 == 0 ? Outcome::Value(i) : Outcome::Ok();
    });
  d.Close();  // runs what was queued first
  CHECK(!d.open());
  CHECK(d.started == 1);
  CHECK(d.released == 1);
  CHECK(d.delivered.size() == 200);
  for (size_t i = 0; i < d.delivered.size(); ++i) {
    CHECK(d.delivered[i] == std::to_string(i));
    CHECK(d.outcomes[i].ok());
    CHECK(d.outcomes[i].has_value == (i % 7 == 0));
    if (d.outcomes[i].has_value) CHECK(d.outcomes[i].value == double(i));
  }
  d.Close();  // idempotent
  CHECK(d.released == 1);
}

// A failed fire-and-forget job is reported by the next awaited job, which does not run; the one after
// runs as usual. A successful fire-and-forget job leaves nothing behind.
void Sticky() {
  FakeDevice d;
  d.Begin();
  bool second_ran = false, third_ran = false;
  d.Push("upload", [] { return Outcome::Ok(); }, false);
  d.Push("first", [] { return Outcome::Ok(); });
  d.Push("upload", [] { return Outcome::Fail("DEVICE_LOST", "cudaMemcpyAsync failed"); }, false);
  d.Push("free", [] { return Outcome::Ok(); }, false);  // runs; the failure stays sticky
  d.Push("read", [&] {
    second_ran = true;
    return Outcome::Ok();
  });
  d.Push("read", [&] {
    third_ran = true;
    return Outcome::Ok();
  });
  d.Close();
  CHECK(d.delivered.size() == 3);  // fire-and-forget jobs are not delivered
  CHECK(d.outcomes[0].ok());
  CHECK(!second_ran);
  CHECK(d.outcomes[1].code != nullptr && std::string(d.outcomes[1].code) == "DEVICE_LOST");
  CHECK(d.outcomes[1].Said("read") == "read: cudaMemcpyAsync failed");
  CHECK(third_ran);
  CHECK(d.outcomes[2].ok());
}

void OutOfMemory() {
  FakeDevice d;
  d.Begin();
  d.Push("logprobs", []() -> Outcome { throw std::bad_alloc(); });
  d.Push("whiten", [] { return Outcome::Ok(); });
  d.Close();
  CHECK(d.outcomes.size() == 2);
  CHECK(d.outcomes[0].code != nullptr && std::string(d.outcomes[0].code) == "OUT_OF_MEMORY");
  CHECK(d.outcomes[0].Said("logprobs") == "logprobs: out of host memory");
  CHECK(d.outcomes[1].ok());
}

// A RANGE message names its argument already; every other message is said of the op.
void Said() {
  CHECK(Outcome::Fail("RANGE", "targets: expected values in [0, 5)").Said("logprobs") ==
        "targets: expected values in [0, 5)");
  CHECK(Outcome::Fail("SHAPE", "rows: too many").Said("logprobs") == "logprobs: rows: too many");
}

// A device whose setup failed half way is never started: Close (from its destructor) still releases it.
void NeverStarted() {
  int released = 0;
  {
    struct Half : Runtime {
      int* count;
      explicit Half(int* c) : count(c) {}
      ~Half() override { Close(); }
      void Release() override { ++*count; }
    } h(&released);
    CHECK(!h.open());
  }
  CHECK(released == 1);
}

}  // namespace

int main() {
  Order();
  Sticky();
  OutOfMemory();
  Said();
  NeverStarted();
  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
