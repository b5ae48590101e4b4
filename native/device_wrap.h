// The Node side of a device runtime (native/runtime/), shared by CudaDevice (addon.cc) and CpuDevice
// (addon_cpu.cc): a JS class whose calls become jobs and promises.
//
// A call converts its arguments on the main thread, queues a job on the runtime's job thread and returns
// a promise (or nothing, for cuda's fire-and-forget upload and free). When the job has run, the job
// thread hands it to a thread-safe function that settles the promise on the main thread: resolved
// (with the job's number, for the probes) or rejected with an Error whose `code` is the outcome's
// GrpoKernelsError code. The event loop never waits for a device. While promises are pending the
// thread-safe function keeps the event loop alive; a job keeps the JS object it reads or writes (the
// argument object of a cpu op, the array of a read) alive until it settles. close(), the object's
// collection and the environment's teardown close the runtime (after the jobs already queued).
//
// The op methods are table-driven: one row per op, {name, converter} (native/ops.h), each converter
// filling its op's params from the argument object through gkn::Args (strict, key by key), one
// converter per TypeScript interface (src/backends/cuda/native.ts, src/backends/cpu/native.ts).
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "ops.h"
#include "runtime/jobs.h"

namespace gkn {

// An Error with `code` (a GrpoKernelsError code).
inline Napi::Error CodeError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// D: the JS class (CRTP); R: its runtime, a gk::rt::Runtime with SynchronizeWork(), OpWork(name, R::Op)
// and an `Op` type (what the converters of native/ops.h return).
template <class D, class R>
class DeviceWrap : public Napi::ObjectWrap<D> {
 public:
  using Property = typename Napi::ObjectWrap<D>::PropertyDescriptor;
  using Spec = OpSpec<typename R::Op>;

  DeviceWrap(const Napi::CallbackInfo& info, const char* backend) : Napi::ObjectWrap<D>(info), backend_(backend) {}
  ~DeviceWrap() override {
    if (has_cleanup_) {
      cleanup_.Remove(this->Env());
      has_cleanup_ = false;
    }
    Shutdown();
  }

 protected:
  // The class: D's own methods, then synchronize(), close() and one method per row of `ops`.
  static Napi::Function Define(Napi::Env env, const char* name, std::vector<Property> methods,
                               const std::vector<Spec>& ops) {
    methods.push_back(D::InstanceMethod("synchronize", &DeviceWrap::Synchronize));
    methods.push_back(D::InstanceMethod("close", &DeviceWrap::Close));
    for (const auto& op : ops)  // the row travels as the method's data (RunOp reads it back)
      methods.push_back(D::InstanceMethod(op.name, &DeviceWrap::RunOp, napi_default, const_cast<Spec*>(&op)));
    return D::DefineClass(env, name, methods);
  }

  // Takes the runtime once the device is set up, and starts its job thread.
  void Start(Napi::Env env, std::unique_ptr<R> runtime) {
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                          std::string("grpo-kernels-") + backend_, 0, 1);
    tsfn_.Unref(env);
    settle_ = std::make_shared<Settle>();
    settle_->tsfn = tsfn_;
    rt_ = std::move(runtime);
    rt_->Start([tsfn = tsfn_](gk::rt::Job* job) {
      if (tsfn.BlockingCall(job, &DeviceWrap::SettleJob) != napi_ok) {
        // Environment shutting down: the promise can no longer settle. Leak the job rather than touch
        // JS references off the main thread.
      }
    });
    cleanup_ = env.AddCleanupHook(&DeviceWrap::OnEnvCleanup, this);
    has_cleanup_ = true;
  }

  R& rt() { return *rt_; }
  const R& rt() const { return *rt_; }

  // BACKEND_UNAVAILABLE once closed.
  void RequireOpen(Napi::Env env, const std::string& what) const {
    if (!rt_ || !rt_->open())
      throw CodeError(env, "BACKEND_UNAVAILABLE", what + ": the " + backend_ + " context was disposed");
  }

  // Queues `work`; returns its promise. `keep` (an object) stays alive until the promise settles.
  Napi::Value Submit(Napi::Env env, const std::string& op, gk::rt::Work work, Napi::Value keep = Napi::Value()) {
    RequireOpen(env, op);
    auto* job = new PromiseJob();
    job->op = op;
    job->work = std::move(work);
    job->deferred = std::make_unique<Napi::Promise::Deferred>(env);
    if (!keep.IsEmpty() && keep.IsObject()) job->keep = Napi::Persistent(keep.As<Napi::Object>());
    job->settle = settle_;
    Napi::Value promise = job->deferred->Promise();
    if (settle_->pending++ == 0) tsfn_.Ref(env);  // pending promises keep the event loop alive
    rt_->Push(job);
    return promise;
  }

  // Queues fire-and-forget `work`: a failure is reported by the next awaited call (jobs.h).
  void Detach(Napi::Env env, const std::string& op, gk::rt::Work work) {
    RequireOpen(env, op);
    auto* job = new gk::rt::Job();
    job->op = op;
    job->work = std::move(work);
    job->awaited = false;
    rt_->Push(job);
  }

  // The device-specific keys every op of D takes (cuda: the test poison); D hides this to read them.
  static void CommonKeys(Args&, typename R::Op&) {}

 private:
  struct Settle {
    int pending = 0;  // promise jobs not yet settled (main thread only)
    bool released = false;
    Napi::ThreadSafeFunction tsfn;
  };
  struct PromiseJob : gk::rt::Job {
    std::unique_ptr<Napi::Promise::Deferred> deferred;
    Napi::ObjectReference keep;
    std::shared_ptr<Settle> settle;  // shared: a job may settle after its device was collected
  };

  static void SettleJob(Napi::Env env, Napi::Function, gk::rt::Job* j) {
    if (env == nullptr) return;  // teardown: leak (see Start)
    Napi::HandleScope scope(env);
    auto* job = static_cast<PromiseJob*>(j);
    Settle& st = *job->settle;
    if (--st.pending == 0 && !st.released) st.tsfn.Unref(env);
    const gk::rt::Outcome& o = job->outcome;
    if (o.ok())
      job->deferred->Resolve(o.has_value ? Napi::Number::New(env, o.value) : env.Undefined());
    else
      job->deferred->Reject(CodeError(env, o.code, o.Said(job->op)).Value());
    delete job;
  }

  // An op method: converts its argument object with the row's converter, queues the runtime's work.
  Napi::Value RunOp(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Spec& spec = *static_cast<const Spec*>(info.Data());
    RequireOpen(env, spec.name);
    Args a(info[0], spec.name);
    typename R::Op op = spec.convert(a);
    D::CommonKeys(a, op);
    a.Done();
    return Submit(env, spec.name, rt_->OpWork(spec.name, std::move(op)), info[0]);
  }

  // synchronize() → a promise that settles after every call queued before it (cuda: after the stream
  // is idle, rejected by a device-side check raised since the last wait).
  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env(), "synchronize");
    return Submit(info.Env(), "synchronize", rt_->SynchronizeWork());
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  static void OnEnvCleanup(DeviceWrap* self) {
    self->has_cleanup_ = false;
    self->Shutdown();
  }

  void Shutdown() {
    if (!rt_ || settle_->released) return;
    rt_->Close();  // runs the queued jobs first
    settle_->released = true;
    tsfn_.Release();
  }

  const char* backend_;
  std::unique_ptr<R> rt_;
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<Settle> settle_;
  Napi::Env::CleanupHook<void (*)(DeviceWrap*), DeviceWrap> cleanup_;
  bool has_cleanup_ = false;
};

}  // namespace gkn
