//! Compiles `cpp/ops.cpp` against the headers of the libtorch torch-sys links,
//! with the same flags torch-sys uses for its own C++ (C++17, libtorch's C++
//! ABI), so both halves agree on every `at::Tensor` they pass.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=cpp/ops.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    // Set by torch-sys (`links = "tch"`): the folder with libtorch*.so.
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports its libtorch folder"));
    let include = lib.parent().expect("libtorch's lib folder has a parent").join("include");
    // For this crate's own tests; the binaries get theirs from link_libtorch.rs.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("cpp/ops.cpp")
        .compile("bertlab_torch_ops");
}
