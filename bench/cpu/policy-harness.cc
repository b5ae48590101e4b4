// The native cpu policyLoss alone (native/cpu/policy.cc), by thread CPU time: the kernels of both
// builds called directly on bench/policy.bench.ts's case (ppo, k3 KL, entropy bonus, token-level
// rollout correction, token-mean; ragged responses of 1 to 2·mean − 1 tokens, 2^20 tokens in all),
// serially (a pool_run of its own, one thread), so a machine shared with other work still gives the
// kernel's own cost. Prints the minimum and the median of 60 calls and ns per token.
//
//   bash bench/cpu/policy-harness.sh [avx2|portable] [mean length, default 16]
//   env SMTM=1: aggregation seq-mean-token-mean;  GSPO=1: loss gspo;  MASK=1: every 7th token masked
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu/kernels.h"

namespace gk {
namespace cpu {
struct Pool {};
void pool_run(Pool*, int64_t n, void (*fn)(void*, int64_t, int), void* ctx) {
  for (int64_t i = 0; i < n; ++i) fn(ctx, i, 0);
}
int pool_threads(const Pool*) { return 1; }
}  // namespace cpu
}  // namespace gk

using namespace gk::cpu;

static double cpu_ms() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}
static uint32_t seed = 21;
static float uniform() {
  seed = seed * 1664525u + 1013904223u;
  return seed / 4294967296.0f;
}
static float normal(float scale) { return (uniform() + uniform() + uniform() - 1.5f) * 2 * scale; }

int main(int argc, char** argv) {
  const bool portable = argc > 1 && !strcmp(argv[1], "portable");
  const int mean = argc > 2 ? atoi(argv[2]) : 16, R = 65536 * 16 / mean;
  std::vector<int32_t> ro(R + 1, 0);
  for (int i = 0; i < R; ++i) ro[i + 1] = ro[i] + 1 + int(uniform() * (2 * mean - 1));
  const int T = ro[R];
  std::vector<float> lp(T), old(T), ref(T), roll(T), adv(T), ent(T), grad(T), gent(T), stats(13);
  std::vector<uint8_t> mask(T, 1);
  for (int t = 0; t < T; t += 7) mask[t] = 0;
  for (int t = 0; t < T; ++t) {
    lp[t] = -std::fabs(normal(0.5f)) - 0.05f;
    old[t] = lp[t] + normal(0.1f);
    ref[t] = lp[t] + normal(0.3f);
    roll[t] = lp[t] + normal(0.1f);
    adv[t] = normal(1);
    ent[t] = std::fabs(normal(0.5f));
  }
  float loss = 0;
  PolicyParams p{};
  p.logprobs = lp.data();
  p.old_logprobs = old.data();
  p.advantages = adv.data();
  p.ref_logprobs = ref.data();
  p.rollout_logprobs = roll.data();
  p.entropy = ent.data();
  p.mask = getenv("MASK") ? mask.data() : nullptr;
  p.response_offsets = ro.data();
  p.responses = R;
  p.loss = getenv("GSPO") ? gk::PolicyLossKind::Gspo : gk::PolicyLossKind::Ppo;
  p.clip_low = p.clip_high = 0.2;
  p.dual_clip = p.delta = INFINITY;
  p.log_ratio_clamp = 20;
  p.gspo_log_clamp = 10;
  p.sapo_tau_pos = 1;
  p.sapo_tau_neg = 1.05;
  p.has_kl = true;
  p.kl_estimator = gk::KlEstimator::K3;
  p.kl_coef = 0.01;
  p.kl_input_clamp = 20;
  p.kl_value_clamp = 10;
  p.entropy_coef = 0.001;
  p.has_rollout = true;
  p.rollout_level = gk::RolloutLevel::Token;
  p.rollout_mode = gk::RolloutMode::Truncate;
  p.rollout_lower = 0;
  p.rollout_upper = 2;
  p.rollout_log_clamp = 20;
  p.aggregation = getenv("SMTM") ? gk::Aggregation::SeqMeanTokenMean : gk::Aggregation::TokenMean;
  p.norm_by_sequences = true;
  p.scale_factor = 2 * mean;
  p.ranks = 1;
  p.tokens = p.sequences = -1;  // counted by the kernel (with a mask: its counting pass)
  if (!p.mask) {
    p.tokens = T;
    p.sequences = R;
  }
  p.loss_out = &loss;
  p.grad = grad.data();
  p.grad_entropy = gent.data();
  p.stats = stats.data();
  Pool pool;
  std::vector<double> ms;
  for (int i = 0; i < 60; ++i) {
    const double t0 = cpu_ms();
#if GK_CPU_HAVE_AVX2
    if (!portable) gk::cpu::avx2::policy_loss(p, &pool);
    else
#endif
      gk::cpu::portable::policy_loss(p, &pool);
    ms.push_back(cpu_ms() - t0);
  }
  std::sort(ms.begin(), ms.end());
  printf("%s: R %d, T %d: CPU ms min %.3f, median %.3f; %.2f ns per token (min); loss %.9g\n",
         portable ? "portable" : "avx2", R, T, ms[0], ms[30], ms[0] * 1e6 / T, loss);
}
