// How every entry point of torch-ops reports a C++ exception: it returns
// non-zero and leaves the message for torch_ops_error(), so a libtorch error
// becomes a Rust error, not an abort; and how a list of tensors crosses
// from Rust. Shared by the files of cpp/.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <exception>
#include <string>
#include <vector>

namespace torch_ops {
// The message of this thread's last failing call.
extern thread_local std::string last_error;

template <typename F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    // Without the C++ stack libtorch appends: the message is for a user.
    last_error = e.what_without_backtrace();
    return 1;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  } catch (...) {
    last_error = "an unknown C++ exception";
    return 1;
  }
}

// `n` tensors passed as tch's `at::Tensor*` handles.
inline std::vector<at::Tensor> list(at::Tensor** tensors, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}
}  // namespace torch_ops
