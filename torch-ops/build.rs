//! Compiles `cpp/` against the headers of the libtorch torch-sys links,
//! with the same flags torch-sys uses for its own C++ (C++17, libtorch's C++
//! ABI), so both halves agree on every `at::Tensor` they pass.
//!
//! c10d's process groups need more headers than libtorch ships: Gloo's
//! (Debian's `libgloo-dev`, which `make test` installs) for the CPU, and
//! the `nvidia-nccl` and CUDA wheels' for NCCL. Each is compiled in where
//! its headers are found; without them that group is an error at run time
//! that says what to install, and everything else builds as before.
use std::path::{Path, PathBuf};

/// Where Gloo's headers may be (`<dir>/gloo/config.h`).
const GLOO_INCLUDE_DIRS: [&str; 2] = ["/usr/include", "/usr/local/include"];

fn main() {
    for file in ["ops.cpp", "distributed.cpp", "nccl.cpp", "guarded.h", "handles.h"] {
        println!("cargo:rerun-if-changed=cpp/{file}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    // Set by torch-sys (`links = "tch"`): the folder with libtorch*.so.
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports its libtorch folder"));
    let include = lib.parent().expect("libtorch's lib folder has a parent").join("include");
    // For this crate's own tests; the binaries get theirs from link_libtorch.rs.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("cpp/ops.cpp")
        .file("cpp/distributed.cpp");

    match GLOO_INCLUDE_DIRS.iter().map(Path::new).find(|dir| dir.join("gloo/config.h").exists()) {
        Some(dir) => {
            println!("cargo:rerun-if-changed={}", dir.join("gloo/config.h").display());
            // A default include folder named with -I would change the order
            // in which the system's own headers are found.
            if dir != Path::new("/usr/include") {
                build.include(dir);
            }
            build.define("BERTLAB_GLOO", None);
        }
        None => {
            // Watched (cargo scans a folder's files) so that installing the
            // headers later rebuilds this; a missing file would rebuild always.
            for dir in GLOO_INCLUDE_DIRS.iter().filter(|dir| Path::new(dir).is_dir()) {
                println!("cargo:rerun-if-changed={dir}");
            }
            println!("cargo:warning=Gloo's headers not found (Debian: apt-get install libgloo-dev): train.devices > 1 is unavailable in this build");
        }
    }

    // torch/lib -> site-packages/nvidia/{nccl,cu*}/include, beside torch.
    let site_packages = lib.parent().and_then(Path::parent).expect("torch/lib sits in site-packages/torch");
    let nvidia = site_packages.join("nvidia");
    let nccl = nvidia.join("nccl/include");
    let cuda = std::fs::read_dir(&nvidia)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("include")))
        .find(|dir| dir.join("cuda_runtime_api.h").exists() && dir.join("crt/host_config.h").exists());
    match cuda.filter(|_| nccl.join("nccl.h").exists() && lib.join("libtorch_cuda.so").exists()) {
        Some(cuda) => {
            build.include(&nccl).include(cuda).define("BERTLAB_NCCL", None).file("cpp/nccl.cpp");
            // ProcessGroupNCCL lives in libtorch_cuda, set_device in
            // libc10_cuda: linked into everything that links this crate.
            println!("cargo:rustc-link-search=native={}", lib.display());
            println!("cargo:rustc-link-lib=dylib=torch_cuda");
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
        }
        None => println!("cargo:warning=NCCL's or CUDA's headers not found beside torch: train.devices > 1 on GPUs is unavailable in this build"),
    }
    build.compile("bertlab_torch_ops");
}
