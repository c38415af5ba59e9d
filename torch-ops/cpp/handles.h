// The c10d objects Rust holds, as opaque pointers to these: a store and a
// process group, shared by distributed.cpp and nccl.cpp.
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

struct StoreHandle {
  c10::intrusive_ptr<c10d::Store> store;
};

struct GroupHandle {
  c10::intrusive_ptr<c10d::Backend> group;
};
