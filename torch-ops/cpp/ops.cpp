// The libtorch calls bertlab needs that tch 0.24 does not bind, but for
// c10d's (distributed.cpp). Each entry point is guarded (guarded.h).
// Tensors cross as `at::Tensor*`, the representation tch's C API uses.
#include "guarded.h"
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/autocast_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <mutex>
#include <string>
#include <vector>

namespace torch_ops {
thread_local std::string last_error;
}

namespace {
using torch_ops::guarded;
using torch_ops::list;

std::optional<at::Tensor> maybe(at::Tensor* t) {
  return t ? std::optional<at::Tensor>(*t) : std::nullopt;
}

at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }

}  // namespace

extern "C" {

const char* torch_ops_error() { return torch_ops::last_error.c_str(); }

// Autocast state is per thread and per device type; `dtype` is a c10
// ScalarType code (BFloat16 = 15, Half = 5). Entering reports the state it
// replaces, which leaving restores (torch.autocast's __enter__/__exit__).
int torch_ops_autocast_enter(int cuda, int dtype, int* was_enabled, int* previous_dtype) {
  return guarded([&] {
    *was_enabled = at::autocast::is_autocast_enabled(device_type(cuda));
    *previous_dtype = static_cast<int>(at::autocast::get_autocast_dtype(device_type(cuda)));
    at::autocast::set_autocast_dtype(device_type(cuda), static_cast<at::ScalarType>(dtype));
    at::autocast::set_autocast_enabled(device_type(cuda), true);
    at::autocast::increment_nesting();
  });
}

// Leaving the outermost region drops the cached low-precision copies of the
// weights: they would be stale after the next optimiser step.
int torch_ops_autocast_exit(int cuda, int was_enabled, int previous_dtype) {
  return guarded([&] {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_type(cuda), was_enabled != 0);
    at::autocast::set_autocast_dtype(device_type(cuda), static_cast<at::ScalarType>(previous_dtype));
  });
}

// One multi-tensor AdamW step over a parameter group (torch.optim.AdamW with
// fused=True). `steps` are per-parameter float step counters, advanced here
// before the kernel reads them, as torch.optim does; with `found_inf`
// non-null the update is skipped on the device when it is non-zero, with no
// host synchronisation.
int torch_ops_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                          at::Tensor** steps, int n, double lr, double beta1, double beta2, double weight_decay,
                          double eps, at::Tensor* found_inf) {
  return guarded([&] {
    auto counters = list(steps, n);
    at::_foreach_add_(counters, 1);
    at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n), {}, counters, lr,
                      beta1, beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false, std::nullopt,
                      maybe(found_inf));
    // A skipped update does not count as a step (torch.optim does the same).
    if (found_inf) at::_foreach_sub_(counters, std::vector<at::Tensor>(n, found_inf->reshape({})));
  });
}

// Scales gradients so their global L2 norm is at most max_norm, computing the
// factor on the device (torch.nn.utils.clip_grad_norm_): nothing is read back.
// Writes the norm before clipping, a 0-dim tensor, to *total.
int torch_ops_clip_grad_norm(at::Tensor** grads, int n, double max_norm, at::Tensor** total) {
  return guarded([&] {
    if (n == 0) {
      *total = new at::Tensor(at::zeros({}));
      return;
    }
    auto gs = list(grads, n);
    auto norms = at::_foreach_norm(gs, 2);
    auto norm = at::linalg_vector_norm(at::stack(norms), 2);
    if (max_norm > 0) {
      auto coef = (max_norm / (norm + 1e-6)).clamp_max(1.0);
      at::_foreach_mul_(gs, coef);
    }
    *total = new at::Tensor(norm);
  });
}

// Divides gradients by the loss scale and sets found_inf if any is not finite
// (torch.amp.GradScaler.unscale_).
int torch_ops_unscale(at::Tensor** grads, int n, at::Tensor* found_inf, at::Tensor* inv_scale) {
  return guarded([&] { at::_amp_foreach_non_finite_check_and_unscale_(list(grads, n), *found_inf, *inv_scale); });
}

// Drops the gradients (optimizer.zero_grad(set_to_none=True)): the next
// backward pass then writes fresh gradients instead of adding into zeroed
// ones, which saves a fill and an add per parameter.
int torch_ops_clear_grads(at::Tensor** params, int n) {
  return guarded([&] {
    for (int i = 0; i < n; ++i) params[i]->mutable_grad().reset();
  });
}

// A page-locked copy of a CPU tensor, from which a copy to the GPU can run
// asynchronously (tch's binding passes a device argument libtorch deprecates).
int torch_ops_pin_memory(at::Tensor* t, at::Tensor** out) {
  return guarded([&] { *out = new at::Tensor(t->pin_memory()); });
}

// The state of the default random generator of a device (cuda < 0: the
// CPU's), as the bytes torch.get_rng_state() returns; and setting it back.
// Dropout draws from these, so an exact resume restores them.
int torch_ops_rng_state(int cuda, at::Tensor** out) {
  return guarded([&] {
    auto generator = cuda < 0 ? at::detail::getDefaultCPUGenerator()
                              : at::globalContext().defaultGenerator(at::Device(at::kCUDA, cuda));
    std::lock_guard<std::mutex> lock(generator.mutex());
    *out = new at::Tensor(generator.get_state());
  });
}

int torch_ops_set_rng_state(int cuda, at::Tensor* state) {
  return guarded([&] {
    auto generator = cuda < 0 ? at::detail::getDefaultCPUGenerator()
                              : at::globalContext().defaultGenerator(at::Device(at::kCUDA, cuda));
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(*state);
  });
}

int torch_ops_allow_tf32(int allow) {
  return guarded([&] {
    at::globalContext().setAllowTF32CuBLAS(allow != 0);
    at::globalContext().setAllowTF32CuDNN(allow != 0);
  });
}

// Peak bytes allocated on an accelerator device since the last reset.
int torch_ops_peak_memory(int device, int64_t* bytes) {
  return guarded([&] {
    auto stats = at::accelerator::getDeviceStats(device);
    *bytes = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  });
}

int torch_ops_reset_peak_memory(int device) {
  return guarded([&] { at::accelerator::resetPeakStats(device); });
}

// Returns the accelerator's cached, unused blocks to the device, so a retry
// after an out-of-memory error starts from what is really in use.
int torch_ops_empty_cache() {
  return guarded([&] { at::accelerator::emptyCache(); });
}
}
