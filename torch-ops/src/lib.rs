//! Safe wrappers over the libtorch calls tch 0.24 does not bind (compiled
//! from `cpp/ops.cpp`): the fused multi-tensor AdamW step, gradient clipping
//! and loss-scale unscaling without host synchronisation, gradients dropped
//! rather than zeroed, pinned host memory, autocast on a given
//! device type with a given dtype (tch's `autocast` is CUDA-only and float16),
//! TF32 matmuls, an accelerator's peak-memory counter, and the state of
//! the default random generators (for exact resumes); and c10d's stores,
//! process groups and a bucketed gradient reducer ([`distributed`]).
pub mod distributed;

use std::ffi::{c_char, c_int, CStr};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

mod ffi {
    use super::*;
    extern "C" {
        pub fn torch_ops_error() -> *const c_char;
        pub fn torch_ops_autocast_enter(cuda: c_int, dtype: c_int, was_enabled: *mut c_int, previous_dtype: *mut c_int) -> c_int;
        pub fn torch_ops_autocast_exit(cuda: c_int, was_enabled: c_int, previous_dtype: c_int) -> c_int;
        pub fn torch_ops_fused_adamw(
            params: *const *mut C_tensor,
            grads: *const *mut C_tensor,
            exp_avgs: *const *mut C_tensor,
            exp_avg_sqs: *const *mut C_tensor,
            steps: *const *mut C_tensor,
            n: c_int,
            lr: f64,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
            found_inf: *mut C_tensor,
        ) -> c_int;
        pub fn torch_ops_clip_grad_norm(grads: *const *mut C_tensor, n: c_int, max_norm: f64, total: *mut *mut C_tensor) -> c_int;
        pub fn torch_ops_unscale(grads: *const *mut C_tensor, n: c_int, found_inf: *mut C_tensor, inv_scale: *mut C_tensor) -> c_int;
        pub fn torch_ops_allow_tf32(allow: c_int) -> c_int;
        pub fn torch_ops_rng_state(cuda: c_int, out: *mut *mut C_tensor) -> c_int;
        pub fn torch_ops_set_rng_state(cuda: c_int, state: *mut C_tensor) -> c_int;
        pub fn torch_ops_clear_grads(params: *const *mut C_tensor, n: c_int) -> c_int;
        pub fn torch_ops_pin_memory(t: *mut C_tensor, out: *mut *mut C_tensor) -> c_int;
        pub fn torch_ops_peak_memory(device: c_int, bytes: *mut i64) -> c_int;
        pub fn torch_ops_reset_peak_memory(device: c_int) -> c_int;
        pub fn torch_ops_empty_cache() -> c_int;
    }
}

/// A libtorch error, with libtorch's message.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn check(code: c_int) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: the C++ side returns a pointer to its thread-local message,
    // valid until the next failing call on this thread.
    let message = unsafe { CStr::from_ptr(ffi::torch_ops_error()) };
    Err(Error(message.to_string_lossy().into_owned()))
}

fn pointers(tensors: &[&Tensor]) -> Vec<*mut C_tensor> {
    tensors.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

fn is_cuda(device: Device) -> c_int {
    c_int::from(device.is_cuda())
}

/// c10's `ScalarType` code of the kinds autocast casts to.
fn scalar_type(kind: Kind) -> c_int {
    match kind {
        Kind::Half => 5,
        Kind::BFloat16 => 15,
        other => panic!("autocast casts to Half or BFloat16, not {other:?}"),
    }
}

/// Runs `f` with autocast on for `device`'s type, casting eligible ops to
/// `kind` (`Kind::BFloat16` or `Kind::Half`), as `torch.autocast` does: the
/// previous state comes back when `f` returns or panics.
pub fn autocast<T>(device: Device, kind: Kind, f: impl FnOnce() -> T) -> Result<T> {
    let _region = AutocastRegion::enter(device, kind)?;
    Ok(f())
}

/// An entered autocast region; leaving it (on drop, unwinding included)
/// restores the state it replaced and drops the cast-weight cache.
struct AutocastRegion {
    cuda: c_int,
    was_enabled: c_int,
    previous_dtype: c_int,
}

impl AutocastRegion {
    fn enter(device: Device, kind: Kind) -> Result<AutocastRegion> {
        let (mut was_enabled, mut previous_dtype) = (0, 0);
        let cuda = is_cuda(device);
        // SAFETY: plain calls on this thread's autocast state.
        check(unsafe { ffi::torch_ops_autocast_enter(cuda, scalar_type(kind), &mut was_enabled, &mut previous_dtype) })?;
        Ok(AutocastRegion { cuda, was_enabled, previous_dtype })
    }
}

impl Drop for AutocastRegion {
    fn drop(&mut self) {
        // Restoring a state read a moment ago cannot fail in a way to act on.
        // SAFETY: as in `enter`.
        let _ = check(unsafe { ffi::torch_ops_autocast_exit(self.cuda, self.was_enabled, self.previous_dtype) });
    }
}

/// The state of one parameter group of [`fused_adamw`].
pub struct AdamWGroup<'a> {
    pub params: Vec<&'a Tensor>,
    pub grads: Vec<&'a Tensor>,
    pub exp_avgs: Vec<&'a Tensor>,
    pub exp_avg_sqs: Vec<&'a Tensor>,
    /// One float scalar tensor per parameter, on its device.
    pub steps: Vec<&'a Tensor>,
}

pub struct AdamWHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// One step of libtorch's fused AdamW over a group whose tensors share a
/// device and dtype; skipped on the device when `found_inf` is non-zero.
pub fn fused_adamw(group: &AdamWGroup, hyper: &AdamWHyper, found_inf: Option<&Tensor>) -> Result<()> {
    let n = group.params.len();
    assert!([group.grads.len(), group.exp_avgs.len(), group.exp_avg_sqs.len(), group.steps.len()].iter().all(|&l| l == n));
    if n == 0 {
        return Ok(());
    }
    let (p, g, m, v, s) =
        (pointers(&group.params), pointers(&group.grads), pointers(&group.exp_avgs), pointers(&group.exp_avg_sqs), pointers(&group.steps));
    let found_inf = found_inf.map_or(std::ptr::null_mut(), |t| t.as_ptr() as *mut C_tensor);
    // SAFETY: every pointer is a live tensor borrowed for the call.
    check(unsafe {
        ffi::torch_ops_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n as c_int,
            hyper.lr,
            hyper.beta1,
            hyper.beta2,
            hyper.weight_decay,
            hyper.eps,
            found_inf,
        )
    })
}

/// Scales `grads` in place so their global L2 norm is at most `max_norm`
/// (no clipping when `max_norm` is 0); returns the norm before clipping as a
/// 0-dim tensor, computed on the device without reading it back.
pub fn clip_grad_norm(grads: &[&Tensor], max_norm: f64) -> Result<Tensor> {
    let g = pointers(grads);
    let mut total: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: live tensors; on success `total` is a new tensor we own.
    check(unsafe { ffi::torch_ops_clip_grad_norm(g.as_ptr(), g.len() as c_int, max_norm, &mut total) })?;
    Ok(unsafe { Tensor::from_ptr(total) })
}

/// Multiplies `grads` by `inv_scale` and sets `found_inf` to 1 if any
/// gradient holds an infinity or a NaN (`GradScaler.unscale_`).
pub fn unscale(grads: &[&Tensor], found_inf: &Tensor, inv_scale: &Tensor) -> Result<()> {
    let g = pointers(grads);
    // SAFETY: live tensors borrowed for the call.
    check(unsafe { ffi::torch_ops_unscale(g.as_ptr(), g.len() as c_int, found_inf.as_ptr() as *mut C_tensor, inv_scale.as_ptr() as *mut C_tensor) })
}

/// Drops the parameters' gradients, like PyTorch's
/// `zero_grad(set_to_none=True)`: the next backward pass writes fresh ones.
pub fn clear_grads(params: &[&Tensor]) -> Result<()> {
    let p = pointers(params);
    // SAFETY: live tensors borrowed for the call.
    check(unsafe { ffi::torch_ops_clear_grads(p.as_ptr(), p.len() as c_int) })
}

/// A copy of CPU tensor `t` in page-locked memory, for asynchronous copies
/// to a GPU.
pub fn pin_memory(t: &Tensor) -> Result<Tensor> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: a live tensor; on success `out` is a new tensor we own.
    check(unsafe { ffi::torch_ops_pin_memory(t.as_ptr() as *mut C_tensor, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// The default random generator of `device` (the CPU's, or a CUDA
/// device's), which dropout draws from.
fn generator_index(device: Device) -> Result<c_int> {
    match device {
        Device::Cpu => Ok(-1),
        Device::Cuda(index) => Ok(index as c_int),
        other => Err(Error(format!("no random generator state for {other:?}"))),
    }
}

/// The state of `device`'s default random generator, as the bytes (a
/// `uint8` CPU tensor) `torch.get_rng_state()` returns.
pub fn rng_state(device: Device) -> Result<Tensor> {
    let index = generator_index(device)?;
    let mut out: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: on success `out` is a new tensor we own.
    check(unsafe { ffi::torch_ops_rng_state(index, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Sets `device`'s default random generator to a state [`rng_state`] read.
pub fn set_rng_state(device: Device, state: &Tensor) -> Result<()> {
    let index = generator_index(device)?;
    // SAFETY: a live tensor borrowed for the call.
    check(unsafe { ffi::torch_ops_set_rng_state(index, state.as_ptr() as *mut C_tensor) })
}

/// Lets float32 matrix products and convolutions on CUDA use TF32.
pub fn allow_tf32(allow: bool) -> Result<()> {
    // SAFETY: sets a process-wide flag.
    check(unsafe { ffi::torch_ops_allow_tf32(c_int::from(allow)) })
}

/// Peak bytes allocated on CUDA device `index` since the last
/// [`reset_peak_memory`].
pub fn peak_memory(index: usize) -> Result<i64> {
    let mut bytes = 0i64;
    // SAFETY: writes one integer.
    check(unsafe { ffi::torch_ops_peak_memory(index as c_int, &mut bytes) })?;
    Ok(bytes)
}

pub fn reset_peak_memory(index: usize) -> Result<()> {
    // SAFETY: resets the allocator's counters.
    check(unsafe { ffi::torch_ops_reset_peak_memory(index as c_int) })
}

/// Frees the accelerator allocator's cached blocks (`torch.cuda.empty_cache()`);
/// only where there is an accelerator.
pub fn empty_cache() -> Result<()> {
    // SAFETY: no arguments; the allocator keeps what is in use.
    check(unsafe { ffi::torch_ops_empty_cache() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_generator_state_draws_the_same_dropout_again() {
        tch::manual_seed(7);
        let _ = Tensor::rand([10], (Kind::Float, Device::Cpu));
        let state = rng_state(Device::Cpu).unwrap();
        let x = Tensor::ones([1000], (Kind::Float, Device::Cpu));
        let first = x.dropout(0.5, true);
        let _ = Tensor::rand([77], (Kind::Float, Device::Cpu));
        set_rng_state(Device::Cpu, &state).unwrap();
        let again = x.dropout(0.5, true);
        assert!(first.equal(&again), "the same state draws the same mask");
        assert!(!first.equal(&x.dropout(0.5, true)), "and the generator moves on after it");
    }

    #[test]
    fn autocast_runs_cpu_matmuls_in_bfloat16() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let inside = autocast(Device::Cpu, Kind::BFloat16, || a.matmul(&a)).unwrap();
        assert_eq!(inside.kind(), Kind::BFloat16);
        assert_eq!(a.matmul(&a).kind(), Kind::Float, "autocast is off again after the region");
    }

    #[test]
    fn a_panic_inside_the_region_still_leaves_it() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let caught = std::panic::catch_unwind(|| autocast(Device::Cpu, Kind::BFloat16, || panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(a.matmul(&a).kind(), Kind::Float, "autocast is off after a panic inside it");
        let nested = autocast(Device::Cpu, Kind::BFloat16, || autocast(Device::Cpu, Kind::Half, || ()).map(|_| a.matmul(&a).kind())).unwrap();
        assert_eq!(nested.unwrap(), Kind::BFloat16, "an inner region gives back the outer one's state");
    }

    #[test]
    fn clipping_scales_to_the_max_norm_and_reports_the_norm_before() {
        let g1 = Tensor::from_slice(&[3.0f32, 0.0]);
        let g2 = Tensor::from_slice(&[4.0f32]);
        let total = clip_grad_norm(&[&g1, &g2], 1.0).unwrap();
        assert!((f64::try_from(&total).unwrap() - 5.0).abs() < 1e-5);
        assert!((f64::try_from(g1.get(0)).unwrap() - 0.6).abs() < 1e-5);
        assert!((f64::try_from(g2.get(0)).unwrap() - 0.8).abs() < 1e-5);
    }

    #[test]
    fn unscaling_flags_non_finite_gradients() {
        let g = Tensor::from_slice(&[2.0f32, f32::INFINITY]);
        let found_inf = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        unscale(&[&g], &found_inf, &Tensor::from_slice(&[0.5f32])).unwrap();
        assert_eq!(f64::try_from(&found_inf.sum(Kind::Float)).unwrap(), 1.0);
        assert_eq!(f64::try_from(g.get(0)).unwrap(), 1.0);
    }

    #[test]
    fn an_overflowed_step_changes_nothing_and_is_not_counted() {
        let p = Tensor::from_slice(&[2.0f32]);
        let g = Tensor::from_slice(&[3.0f32]);
        let (m, v) = (p.zeros_like(), p.zeros_like());
        let step = Tensor::zeros([], (Kind::Float, Device::Cpu));
        let group = AdamWGroup { params: vec![&p], grads: vec![&g], exp_avgs: vec![&m], exp_avg_sqs: vec![&v], steps: vec![&step] };
        let hyper = AdamWHyper { lr: 0.01, beta1: 0.9, beta2: 0.999, weight_decay: 0.0, eps: 1e-8 };
        fused_adamw(&group, &hyper, Some(&Tensor::ones([1], (Kind::Float, Device::Cpu)))).unwrap();
        assert_eq!((f64::try_from(&p.sum(Kind::Float)).unwrap(), f64::try_from(&step).unwrap()), (2.0, 0.0));
        fused_adamw(&group, &hyper, None).unwrap();
        assert!((f64::try_from(&p.sum(Kind::Float)).unwrap() - 1.99).abs() < 1e-6);
        assert_eq!(f64::try_from(&step).unwrap(), 1.0);
    }

    #[test]
    fn cleared_gradients_are_undefined_and_the_next_backward_writes_them() {
        let x = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        (&x * 2.0).sum(Kind::Float).backward();
        clear_grads(&[&x]).unwrap();
        assert!(!x.grad().defined());
        (&x * 3.0).sum(Kind::Float).backward();
        assert_eq!(f64::try_from(x.grad().sum(Kind::Float)).unwrap(), 6.0);
    }

    #[test]
    fn a_libtorch_error_is_an_error_not_an_abort() {
        let a = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let b = Tensor::ones([3], (Kind::Float, Device::Cpu));
        let group = AdamWGroup { params: vec![&a], grads: vec![&b], exp_avgs: vec![&a], exp_avg_sqs: vec![&a], steps: vec![&a] };
        let hyper = AdamWHyper { lr: 0.1, beta1: 0.9, beta2: 0.999, weight_decay: 0.0, eps: 1e-8 };
        assert!(fused_adamw(&group, &hyper, None).is_err());
    }
}
