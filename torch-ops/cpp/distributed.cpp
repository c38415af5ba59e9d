// PyTorch's c10d through libtorch: key-value stores for rendezvous
// (TCPStore, PrefixStore), process groups (Gloo here, NCCL in nccl.cpp),
// their collectives, and a gradient reducer that all-reduces a model's
// gradients in buckets as the backward pass produces them, the way
// PyTorch's DistributedDataParallel does (the C++ frontend has no DDP,
// pytorch#48959). Handles cross to Rust as opaque pointers to heap-held
// intrusive pointers; every entry point is guarded (guarded.h).
//
// Gloo's own headers (Debian's libgloo-dev) are needed only to compile
// ProcessGroupGloo.hpp: its members are pointers and containers whose size
// does not depend on Gloo's version, and this file never builds a Gloo type
// itself, so libtorch's own Gloo does the work. Without the headers
// (BERTLAB_GLOO undefined) the Gloo group is an error saying so.
#include "guarded.h"
#include "handles.h"
#include <ATen/ATen.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef BERTLAB_GLOO
#define USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

using torch_ops::guarded;
using torch_ops::list;
using Millis = std::chrono::milliseconds;

namespace {
std::vector<uint8_t> bytes_of(const uint8_t* bytes, size_t len) { return std::vector<uint8_t>(bytes, bytes + len); }

// One tensor through a collective, waited for: on the CPU the result is
// there on return; on a GPU the current stream waits for it.
void wait(const c10::intrusive_ptr<c10d::Work>& work) {
  if (!work->wait()) throw std::runtime_error("a collective ended without completing");
}
}  // namespace

// The gradient reducer. Each parameter gets a post-accumulate-grad hook;
// while the reducer is armed (the last backward pass of a step), a hook
// marks its parameter's gradient final, and a bucket whose gradients are
// all final is flattened and its all-reduce launched, in bucket order (the
// same on every rank, as collectives must be issued), while autograd goes
// on computing the gradients of earlier layers. finish() launches what the
// backward pass left (a parameter without a gradient reduces zeros, as DDP
// does), waits, and writes the sums back into the gradients.
//
// Buckets follow the order in which gradients become final. That order is
// not known before the first backward pass (a VarStore has no registration
// order), so the first step reduces everything after its backward pass,
// recording the order; rank 0's order is then broadcast, so every rank
// builds the same buckets, and later steps overlap (DDP rebuilds its buckets
// after its first iteration in the same way).
struct Reducer {
  c10::intrusive_ptr<c10d::Backend> group;
  std::vector<at::Tensor> params;
  int64_t first_bucket_bytes;
  int64_t bucket_bytes;

  std::mutex mutex;
  bool armed = false;
  bool ordered = false;
  std::vector<int64_t> arrival;
  std::vector<std::vector<size_t>> buckets;
  std::vector<size_t> bucket_of;
  std::vector<size_t> waiting;
  size_t next = 0;
  std::vector<at::Tensor> flats;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  // A launch that failed inside a hook, on autograd's thread: finish()
  // reports it.
  std::string failure;

  void ready(size_t index) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed || !failure.empty()) return;
    if (!ordered) {
      arrival.push_back(static_cast<int64_t>(index));
      return;
    }
    --waiting[bucket_of[index]];
    try {
      launch_ready();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }

  void launch_ready() {
    while (next < buckets.size() && waiting[next] == 0) launch(next++);
  }

  void launch(size_t b) {
    std::vector<at::Tensor> parts;
    for (size_t i : buckets[b]) {
      auto& p = params[i];
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
      parts.push_back(p.grad().reshape({-1}));
    }
    std::vector<at::Tensor> flat{at::cat(parts)};
    flats[b] = flat[0];
    works[b] = group->allreduce(flat);
  }

  // Buckets of consecutive parameters in `order`, the first one small so
  // that communication starts early, each of one dtype.
  void build(const std::vector<int64_t>& order) {
    buckets.clear();
    bucket_of.assign(params.size(), 0);
    int64_t filled = 0;
    for (int64_t i : order) {
      auto& p = params[i];
      int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
      int64_t cap = buckets.size() <= 1 ? first_bucket_bytes : bucket_bytes;
      bool fresh = buckets.empty() || (filled > 0 && filled + bytes > cap) ||
                   params[buckets.back().front()].scalar_type() != p.scalar_type();
      if (fresh) {
        buckets.emplace_back();
        filled = 0;
      }
      buckets.back().push_back(static_cast<size_t>(i));
      bucket_of[i] = buckets.size() - 1;
      filled += bytes;
    }
  }

  void reset() {
    waiting.clear();
    for (auto& bucket : buckets) waiting.push_back(bucket.size());
    next = 0;
    flats.assign(buckets.size(), at::Tensor());
    works.assign(buckets.size(), c10::intrusive_ptr<c10d::Work>());
  }

  void arm() {
    std::lock_guard<std::mutex> lock(mutex);
    reset();
    armed = true;
  }

  void finish() {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed) throw std::runtime_error("the gradient reducer finished a step it was not armed for");
    armed = false;
    if (!failure.empty()) {
      auto message = failure;
      failure.clear();
      throw std::runtime_error(message);
    }
    if (!ordered) {
      // Parameters that got no gradient go last, in their given order.
      std::vector<bool> seen(params.size(), false);
      for (int64_t i : arrival) seen[i] = true;
      for (size_t i = 0; i < params.size(); ++i)
        if (!seen[i]) arrival.push_back(static_cast<int64_t>(i));
      auto device = params.empty() ? at::Device(at::kCPU) : params[0].device();
      std::vector<at::Tensor> order{at::tensor(arrival, at::TensorOptions().dtype(at::kLong)).to(device)};
      c10d::BroadcastOptions root;
      root.rootRank = 0;
      wait(group->broadcast(order, root));
      auto agreed = order[0].cpu();
      build(std::vector<int64_t>(agreed.data_ptr<int64_t>(), agreed.data_ptr<int64_t>() + agreed.numel()));
      ordered = true;
      reset();
    }
    while (next < buckets.size()) launch(next++);
    for (size_t b = 0; b < buckets.size(); ++b) {
      wait(works[b]);
      int64_t offset = 0;
      for (size_t i : buckets[b]) {
        auto grad = params[i].grad();
        grad.copy_(flats[b].narrow(0, offset, grad.numel()).view_as(grad));
        offset += grad.numel();
      }
    }
    flats.assign(buckets.size(), at::Tensor());
    works.assign(buckets.size(), c10::intrusive_ptr<c10d::Work>());
  }
};

namespace {
struct ReadyHook : torch::autograd::PostAccumulateGradHook {
  std::weak_ptr<Reducer> reducer;
  size_t index;
  ReadyHook(std::weak_ptr<Reducer> reducer, size_t index) : reducer(std::move(reducer)), index(index) {}
  void operator()(const at::Tensor&) override {
    if (auto r = reducer.lock()) r->ready(index);
  }
};
}  // namespace

struct ReducerHandle {
  std::shared_ptr<Reducer> reducer;
};

extern "C" {

// 1 when this build can make Gloo groups.
int torch_ops_has_gloo() {
#ifdef BERTLAB_GLOO
  return 1;
#else
  return 0;
#endif
}

// 1 when this build can make NCCL groups.
int torch_ops_has_nccl() {
#ifdef BERTLAB_NCCL
  return 1;
#else
  return 0;
#endif
}

// A TCPStore: the server (is_server; port 0 picks a free one) or a client
// of the one at host:port. `timeout_ms` bounds connecting and each wait.
int torch_ops_store_tcp(const char* host, int port, int is_server, int64_t timeout_ms, StoreHandle** out) {
  return guarded([&] {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = is_server != 0;
    options.waitWorkers = false;
    options.timeout = Millis(timeout_ms);
    *out = new StoreHandle{c10::make_intrusive<c10d::TCPStore>(host, options)};
  });
}

// The port a TCPStore listens on (the one it picked when asked for 0).
int torch_ops_store_port(StoreHandle* handle, int* port) {
  return guarded([&] {
    auto tcp = dynamic_cast<c10d::TCPStore*>(handle->store.get());
    if (!tcp) throw std::runtime_error("not a TCPStore");
    *port = tcp->getPort();
  });
}

// The same store with every key under `prefix` (one namespace per use).
int torch_ops_store_prefixed(StoreHandle* handle, const char* prefix, StoreHandle** out) {
  return guarded([&] { *out = new StoreHandle{c10::make_intrusive<c10d::PrefixStore>(prefix, handle->store)}; });
}

void torch_ops_store_free(StoreHandle* handle) { delete handle; }

int torch_ops_store_set(StoreHandle* handle, const char* key, const uint8_t* bytes, size_t len) {
  return guarded([&] { handle->store->set(key, bytes_of(bytes, len)); });
}

// The value of `key`, waiting up to `timeout_ms` for it to be set; the
// bytes are for torch_ops_bytes_free.
int torch_ops_store_get(StoreHandle* handle, const char* key, int64_t timeout_ms, uint8_t** bytes, size_t* len) {
  return guarded([&] {
    handle->store->wait({key}, Millis(timeout_ms));
    auto value = handle->store->get(key);
    *len = value.size();
    *bytes = static_cast<uint8_t*>(std::malloc(value.size() + 1));
    std::memcpy(*bytes, value.data(), value.size());
  });
}

void torch_ops_bytes_free(uint8_t* bytes) { std::free(bytes); }

int torch_ops_store_check(StoreHandle* handle, const char* key, int* found) {
  return guarded([&] { *found = handle->store->check({key}) ? 1 : 0; });
}

// Adds `delta` to the integer at `key` (0 when unset) and returns the sum.
int torch_ops_store_add(StoreHandle* handle, const char* key, int64_t delta, int64_t* value) {
  return guarded([&] { *value = handle->store->add(key, delta); });
}

// A Gloo process group of `size` ranks meeting through `store`; each
// collective fails after `timeout_ms` without its peers.
int torch_ops_group_gloo(StoreHandle* store, int rank, int size, int64_t timeout_ms, GroupHandle** out) {
  return guarded([&] {
#ifdef BERTLAB_GLOO
    auto options = c10d::ProcessGroupGloo::Options::create_default(Millis(timeout_ms));
    *out = new GroupHandle{c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, size, options)};
#else
    (void)store, (void)rank, (void)size, (void)timeout_ms, (void)out;
    throw std::runtime_error("this bertlab was built without Gloo's headers");
#endif
  });
}

void torch_ops_group_free(GroupHandle* handle) { delete handle; }

// Sums `tensor` over the ranks, in place.
int torch_ops_group_all_reduce(GroupHandle* handle, at::Tensor* tensor) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*tensor};
    wait(handle->group->allreduce(tensors));
  });
}

// Copies rank `root`'s `tensor` into every rank's.
int torch_ops_group_broadcast(GroupHandle* handle, at::Tensor* tensor, int root) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    wait(handle->group->broadcast(tensors, options));
  });
}

// Every rank's `input` (all of one shape) into `outputs`, one per rank.
int torch_ops_group_all_gather(GroupHandle* handle, at::Tensor* input, at::Tensor** outputs, int n) {
  return guarded([&] {
    std::vector<std::vector<at::Tensor>> gathered{list(outputs, n)};
    std::vector<at::Tensor> inputs{*input};
    wait(handle->group->allgather(gathered, inputs));
  });
}

// A reducer of the gradients of `params` over `group`.
int torch_ops_reducer_new(GroupHandle* group, at::Tensor** params, int n, int64_t first_bucket_bytes, int64_t bucket_bytes,
                          ReducerHandle** out) {
  return guarded([&] {
    auto reducer = std::make_shared<Reducer>();
    reducer->group = group->group;
    reducer->params = list(params, n);
    reducer->first_bucket_bytes = first_bucket_bytes;
    reducer->bucket_bytes = bucket_bytes;
    for (int i = 0; i < n; ++i)
      torch::autograd::impl::set_post_acc_grad_hooks(reducer->params[i],
                                                     std::make_unique<ReadyHook>(reducer, static_cast<size_t>(i)));
    *out = new ReducerHandle{reducer};
  });
}

// The next backward pass is the step's last: reduce as it goes.
int torch_ops_reducer_arm(ReducerHandle* handle) {
  return guarded([&] { handle->reducer->arm(); });
}

// After that backward pass: every gradient is the sum over the ranks.
int torch_ops_reducer_finish(ReducerHandle* handle) {
  return guarded([&] { handle->reducer->finish(); });
}

// Takes the hooks off the parameters and frees the reducer.
void torch_ops_reducer_free(ReducerHandle* handle) {
  try {
    for (auto& p : handle->reducer->params) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
  } catch (...) {
  }
  delete handle;
}
}

#ifndef BERTLAB_NCCL
extern "C" int torch_ops_group_nccl(StoreHandle*, int, int, int, int64_t, GroupHandle**) {
  return guarded([&] { throw std::runtime_error("this bertlab was built without NCCL's headers"); });
}
#endif
