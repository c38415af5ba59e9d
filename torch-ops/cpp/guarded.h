// How every entry point of torch-ops reports a C++ exception: it returns
// non-zero and leaves the message for torch_ops_error(), so a libtorch error
// becomes a Rust error, not an abort. Shared by the files of cpp/.
#pragma once
#include <exception>
#include <string>

namespace torch_ops {
// The message of this thread's last failing call.
extern thread_local std::string last_error;

template <typename F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}
}  // namespace torch_ops
