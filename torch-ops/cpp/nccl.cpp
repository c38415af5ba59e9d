// NCCL process groups (libtorch_cuda's ProcessGroupNCCL), compiled only
// where the nvidia-nccl wheel's nccl.h and CUDA's headers are at hand;
// distributed.cpp stands in with an error otherwise.
#include "guarded.h"
#include "handles.h"
#define USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <cstdlib>

using torch_ops::guarded;

extern "C" {

// An NCCL process group of `size` ranks meeting through `store`, this
// rank's collectives on CUDA device `device`. A collective that fails or
// outlasts `timeout_ms` raises in its wait (error handling 2, "clean up
// only") rather than ending the process as libtorch's default does, so the
// trial ends with an error that names the rank and is recorded.
int torch_ops_group_nccl(StoreHandle* store, int rank, int size, int device, int64_t timeout_ms, GroupHandle** out) {
  return guarded([&] {
    setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2", /*overwrite=*/0);
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    *out = new GroupHandle{c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, rank, size, options)};
  });
}
}
