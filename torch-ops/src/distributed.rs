//! PyTorch's c10d, compiled from `cpp/distributed.cpp` and `cpp/nccl.cpp`:
//! a TCP key-value [`Store`] where ranks meet, process [`Group`]s over it
//! (Gloo on CPU tensors, NCCL on CUDA ones) with the collectives data
//! parallelism needs, and a [`Reducer`] that sums a model's gradients over
//! the ranks in buckets while the backward pass is still running, as
//! PyTorch's DistributedDataParallel does.
use super::{check, pointers, Error, Result};
use std::ffi::{c_int, CString};
use std::time::Duration;
use tch::Tensor;
use torch_sys::C_tensor;

#[repr(C)]
struct StoreHandle {
    _private: [u8; 0],
}

#[repr(C)]
struct GroupHandle {
    _private: [u8; 0],
}

#[repr(C)]
struct ReducerHandle {
    _private: [u8; 0],
}

extern "C" {
    fn torch_ops_has_gloo() -> c_int;
    fn torch_ops_has_nccl() -> c_int;
    fn torch_ops_store_tcp(host: *const i8, port: c_int, is_server: c_int, timeout_ms: i64, out: *mut *mut StoreHandle) -> c_int;
    fn torch_ops_store_port(store: *mut StoreHandle, port: *mut c_int) -> c_int;
    fn torch_ops_store_prefixed(store: *mut StoreHandle, prefix: *const i8, out: *mut *mut StoreHandle) -> c_int;
    fn torch_ops_store_free(store: *mut StoreHandle);
    fn torch_ops_store_set(store: *mut StoreHandle, key: *const i8, bytes: *const u8, len: usize) -> c_int;
    fn torch_ops_store_get(store: *mut StoreHandle, key: *const i8, timeout_ms: i64, bytes: *mut *mut u8, len: *mut usize) -> c_int;
    fn torch_ops_bytes_free(bytes: *mut u8);
    fn torch_ops_store_check(store: *mut StoreHandle, key: *const i8, found: *mut c_int) -> c_int;
    fn torch_ops_store_add(store: *mut StoreHandle, key: *const i8, delta: i64, value: *mut i64) -> c_int;
    fn torch_ops_group_gloo(store: *mut StoreHandle, rank: c_int, size: c_int, timeout_ms: i64, out: *mut *mut GroupHandle) -> c_int;
    fn torch_ops_group_nccl(store: *mut StoreHandle, rank: c_int, size: c_int, device: c_int, timeout_ms: i64, out: *mut *mut GroupHandle) -> c_int;
    fn torch_ops_group_free(group: *mut GroupHandle);
    fn torch_ops_group_all_reduce(group: *mut GroupHandle, tensor: *mut C_tensor) -> c_int;
    fn torch_ops_group_broadcast(group: *mut GroupHandle, tensor: *mut C_tensor, root: c_int) -> c_int;
    fn torch_ops_group_all_gather(group: *mut GroupHandle, input: *mut C_tensor, outputs: *const *mut C_tensor, n: c_int) -> c_int;
    fn torch_ops_reducer_new(
        group: *mut GroupHandle,
        params: *const *mut C_tensor,
        n: c_int,
        first_bucket_bytes: i64,
        bucket_bytes: i64,
        out: *mut *mut ReducerHandle,
    ) -> c_int;
    fn torch_ops_reducer_arm(reducer: *mut ReducerHandle) -> c_int;
    fn torch_ops_reducer_finish(reducer: *mut ReducerHandle) -> c_int;
    fn torch_ops_reducer_free(reducer: *mut ReducerHandle);
}

/// Whether this build has Gloo's process groups (compiled with Gloo's
/// headers): without them no group can be made.
pub fn has_gloo() -> bool {
    // SAFETY: returns a constant.
    unsafe { torch_ops_has_gloo() != 0 }
}

/// Whether this build has NCCL's process groups (compiled with NCCL's and
/// CUDA's headers from the nvidia wheels).
pub fn has_nccl() -> bool {
    // SAFETY: returns a constant.
    unsafe { torch_ops_has_nccl() != 0 }
}

fn c_string(text: &str) -> Result<CString> {
    CString::new(text).map_err(|_| Error(format!("{text:?} holds a NUL byte")))
}

fn millis(timeout: Duration) -> i64 {
    timeout.as_millis().min(i64::MAX as u128) as i64
}

/// A c10d key-value store: where ranks find each other and agree on small
/// things. Its methods may be called from several threads.
pub struct Store(*mut StoreHandle);

// SAFETY: c10d stores lock internally; the handle is only freed on drop.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// A TCPStore server on `host:port` (port 0: one the system picks, see
    /// [`Store::port`]); `timeout` bounds each wait on it.
    pub fn serve(host: &str, port: u16, timeout: Duration) -> Result<Store> {
        Store::tcp(host, port, true, timeout)
    }

    /// A client of the TCPStore at `host:port`, connecting for up to `timeout`.
    pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<Store> {
        Store::tcp(host, port, false, timeout)
    }

    fn tcp(host: &str, port: u16, server: bool, timeout: Duration) -> Result<Store> {
        let host = c_string(host)?;
        let mut out = std::ptr::null_mut();
        // SAFETY: a live C string; on success `out` is a new handle we own.
        check(unsafe { torch_ops_store_tcp(host.as_ptr(), c_int::from(port), c_int::from(server), millis(timeout), &mut out) })?;
        Ok(Store(out))
    }

    /// The port of a TCPStore (the one picked for a server asked for 0).
    pub fn port(&self) -> Result<u16> {
        let mut port = 0;
        // SAFETY: a live handle; writes one integer.
        check(unsafe { torch_ops_store_port(self.0, &mut port) })?;
        Ok(port as u16)
    }

    /// The same store with every key under `prefix` (as `prefix/key`).
    pub fn prefixed(&self, prefix: &str) -> Result<Store> {
        let prefix = c_string(prefix)?;
        let mut out = std::ptr::null_mut();
        // SAFETY: a live handle and C string; `out` is a new handle we own.
        check(unsafe { torch_ops_store_prefixed(self.0, prefix.as_ptr(), &mut out) })?;
        Ok(Store(out))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let key = c_string(key)?;
        // SAFETY: live handle, C string and slice borrowed for the call.
        check(unsafe { torch_ops_store_set(self.0, key.as_ptr(), value.as_ptr(), value.len()) })
    }

    /// The value at `key`, waiting up to `timeout` for someone to set it.
    pub fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>> {
        let key = c_string(key)?;
        let (mut bytes, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: on success `bytes` holds `len` bytes we free below.
        check(unsafe { torch_ops_store_get(self.0, key.as_ptr(), millis(timeout), &mut bytes, &mut len) })?;
        // SAFETY: as above; copied before the buffer is freed.
        let value = unsafe { std::slice::from_raw_parts(bytes, len) }.to_vec();
        unsafe { torch_ops_bytes_free(bytes) };
        Ok(value)
    }

    /// Whether `key` is set, without waiting.
    pub fn has(&self, key: &str) -> Result<bool> {
        let key = c_string(key)?;
        let mut found = 0;
        // SAFETY: live handle and C string; writes one integer.
        check(unsafe { torch_ops_store_check(self.0, key.as_ptr(), &mut found) })?;
        Ok(found != 0)
    }

    /// Adds `delta` to the counter at `key` (0 when unset); the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        let key = c_string(key)?;
        let mut value = 0;
        // SAFETY: live handle and C string; writes one integer.
        check(unsafe { torch_ops_store_add(self.0, key.as_ptr(), delta, &mut value) })?;
        Ok(value)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and freed once.
        unsafe { torch_ops_store_free(self.0) }
    }
}

/// A process group: `size` ranks that run the same collectives in the
/// same order. Every collective waits for its result (on a GPU: the
/// current stream waits, not the host) and fails when a peer is gone or
/// does not answer within the group's timeout.
pub struct Group {
    handle: *mut GroupHandle,
    size: usize,
}

// SAFETY: c10d backends are used from one thread at a time by bertlab
// (the training loop), and their own threads synchronise internally.
unsafe impl Send for Group {}

impl Group {
    /// A Gloo group (CPU tensors) of rank `rank` among `size`, meeting
    /// through `store`; collectives fail after `timeout` without a peer.
    pub fn gloo(store: &Store, rank: usize, size: usize, timeout: Duration) -> Result<Group> {
        let mut out = std::ptr::null_mut();
        // SAFETY: a live store; on success `out` is a new handle we own.
        check(unsafe { torch_ops_group_gloo(store.0, rank as c_int, size as c_int, millis(timeout), &mut out) })?;
        Ok(Group { handle: out, size })
    }

    /// An NCCL group (CUDA tensors), this rank's on CUDA device `device`.
    pub fn nccl(store: &Store, rank: usize, size: usize, device: usize, timeout: Duration) -> Result<Group> {
        let mut out = std::ptr::null_mut();
        // SAFETY: as in `gloo`.
        check(unsafe { torch_ops_group_nccl(store.0, rank as c_int, size as c_int, device as c_int, millis(timeout), &mut out) })?;
        Ok(Group { handle: out, size })
    }

    /// Sums `tensor` over the ranks, in place.
    pub fn all_reduce(&self, tensor: &Tensor) -> Result<()> {
        // SAFETY: a live handle and tensor borrowed for the call.
        check(unsafe { torch_ops_group_all_reduce(self.handle, tensor.as_ptr() as *mut C_tensor) })
    }

    /// Copies rank `root`'s `tensor` into every rank's.
    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<()> {
        // SAFETY: as in `all_reduce`.
        check(unsafe { torch_ops_group_broadcast(self.handle, tensor.as_ptr() as *mut C_tensor, root as c_int) })
    }

    /// Every rank's `input` (one shape on all of them), in rank order.
    pub fn all_gather(&self, input: &Tensor) -> Result<Vec<Tensor>> {
        let outputs: Vec<Tensor> = (0..self.size).map(|_| input.empty_like()).collect();
        let out = pointers(&outputs.iter().collect::<Vec<_>>());
        // SAFETY: live tensors borrowed for the call.
        check(unsafe { torch_ops_group_all_gather(self.handle, input.as_ptr() as *mut C_tensor, out.as_ptr(), out.len() as c_int) })?;
        Ok(outputs)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and freed once.
        unsafe { torch_ops_group_free(self.handle) }
    }
}

/// Sums the gradients of a set of parameters over a group's ranks, bucket
/// by bucket as the backward pass makes them final, so communication
/// overlaps the rest of the backward pass. Per step: [`Reducer::arm`]
/// before the step's last backward pass (earlier passes of gradient
/// accumulation only accumulate), [`Reducer::finish`] after it.
pub struct Reducer(*mut ReducerHandle);

impl Reducer {
    /// Hooks onto `params` (all on one device). Buckets hold up to
    /// `bucket_bytes` of gradients, the first `first_bucket_bytes`, so the
    /// first all-reduce starts early (DDP: 1 MiB, then 25 MiB).
    pub fn new(group: &Group, params: &[&Tensor], first_bucket_bytes: usize, bucket_bytes: usize) -> Result<Reducer> {
        let p = pointers(params);
        let mut out = std::ptr::null_mut();
        // SAFETY: live tensors; the reducer keeps its own references to
        // them and to the group.
        check(unsafe { torch_ops_reducer_new(group.handle, p.as_ptr(), p.len() as c_int, first_bucket_bytes as i64, bucket_bytes as i64, &mut out) })?;
        Ok(Reducer(out))
    }

    /// The next backward pass is the step's last: reduce as it goes.
    pub fn arm(&self) -> Result<()> {
        // SAFETY: a live handle.
        check(unsafe { torch_ops_reducer_arm(self.0) })
    }

    /// After the armed backward pass: waits until every gradient is the
    /// sum over the ranks.
    pub fn finish(&self) -> Result<()> {
        // SAFETY: a live handle.
        check(unsafe { torch_ops_reducer_finish(self.0) })
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and freed once; takes its hooks off.
        unsafe { torch_ops_reducer_free(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    const TIMEOUT: Duration = Duration::from_secs(20);

    /// Runs `f(rank, store)` on `size` threads, each a rank of a group
    /// meeting through a fresh store.
    fn ranks<T: Send>(size: usize, f: impl Fn(usize, &Store) -> T + Sync) -> Vec<T> {
        let server = Store::serve("127.0.0.1", 0, TIMEOUT).unwrap();
        let port = server.port().unwrap();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..size)
                .map(|rank| {
                    let f = &f;
                    scope.spawn(move || f(rank, &Store::connect("127.0.0.1", port, TIMEOUT).unwrap()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn a_store_counts_and_hands_values_between_clients() {
        let server = Store::serve("127.0.0.1", 0, TIMEOUT).unwrap();
        let port = server.port().unwrap();
        assert_ne!(port, 0);
        let client = Store::connect("127.0.0.1", port, TIMEOUT).unwrap().prefixed("trial").unwrap();
        assert!(!client.has("config").unwrap());
        client.set("config", b"{}").unwrap();
        assert_eq!(server.get("trial/config", TIMEOUT).unwrap(), b"{}");
        assert_eq!((client.add("joined", 1).unwrap(), client.add("joined", 2).unwrap()), (1, 3));
        assert!(client.get("never", Duration::from_millis(50)).is_err(), "a wait runs out");
    }

    #[test]
    fn gloo_sums_gathers_and_broadcasts() {
        assert!(has_gloo(), "built without Gloo's headers (apt-get install libgloo-dev)");
        let results = ranks(3, |rank, store| {
            let group = Group::gloo(store, rank, 3, TIMEOUT).unwrap();
            let t = Tensor::from_slice(&[rank as f32 + 1.0, 10.0]);
            group.all_reduce(&t).unwrap();
            let gathered = group.all_gather(&Tensor::from_slice(&[rank as i64])).unwrap();
            let b = Tensor::from_slice(&[rank as f64]);
            group.broadcast(&b, 2).unwrap();
            (Vec::<f32>::try_from(&t).unwrap(), gathered.iter().map(|g| g.int64_value(&[0])).collect::<Vec<_>>(), b.double_value(&[0]))
        });
        for (sum, gathered, broadcast) in results {
            assert_eq!(sum, vec![6.0, 30.0]);
            assert_eq!(gathered, vec![0, 1, 2]);
            assert_eq!(broadcast, 2.0);
        }
    }

    #[test]
    fn a_collective_fails_soon_when_a_peer_is_gone() {
        let results = ranks(2, |rank, store| {
            let group = Group::gloo(store, rank, 2, Duration::from_secs(3)).unwrap();
            if rank == 1 {
                return Ok(Duration::ZERO);
            }
            drop(store.get("never", Duration::from_millis(200)));
            group.all_reduce(&Tensor::from_slice(&[1.0f32])).map(|_| Duration::ZERO)
        });
        assert!(results[0].is_err(), "rank 0's sum without rank 1");
    }

    /// Two ranks train a linear model on halves of a batch: with the
    /// reducer their summed gradients are the whole batch's, bucket by
    /// bucket, from the first step (no overlap yet) and the later ones.
    #[test]
    fn reduced_gradients_are_the_whole_batchs() {
        // Plain numbers cross to the rank threads (tensors are not Sync).
        let draw = |shape: &[i64]| Vec::<f32>::try_from(Tensor::randn(shape, (Kind::Float, Device::Cpu)).reshape([-1])).unwrap();
        let (x, y, w0, b0) = (draw(&[8, 6]), draw(&[8, 3]), draw(&[6, 3]), draw(&[3]));
        let tensors = || {
            let t = |v: &[f32], shape: &[i64]| Tensor::from_slice(v).reshape(shape);
            (t(&x, &[8, 6]), t(&y, &[8, 3]), t(&w0, &[6, 3]).set_requires_grad(true), t(&b0, &[3]).set_requires_grad(true))
        };
        let loss = |w: &Tensor, b: &Tensor, x: &Tensor, y: &Tensor| (x.matmul(w) + b - y).square().sum(Kind::Float) / 8.0;
        let flat = |w: &Tensor, b: &Tensor| Vec::<f32>::try_from(Tensor::cat(&[w.grad().reshape([-1]), b.grad()], 0)).unwrap();
        let whole = {
            let (x, y, w, b) = tensors();
            loss(&w, &b, &x, &y).backward();
            flat(&w, &b)
        };
        let results = ranks(2, |rank, store| {
            let group = Group::gloo(store, rank, 2, TIMEOUT).unwrap();
            let (x, y, w, b) = tensors();
            // Tiny buckets: one per parameter.
            let reducer = Reducer::new(&group, &[&w, &b], 4, 4).unwrap();
            let (xs, ys) = (x.narrow(0, 4 * rank as i64, 4), y.narrow(0, 4 * rank as i64, 4));
            let mut grads = Vec::new();
            for _ in 0..3 {
                crate::clear_grads(&[&w, &b]).unwrap();
                // Two micro-batches: only the last backward pass is armed.
                loss(&w, &b, &xs.narrow(0, 0, 2), &ys.narrow(0, 0, 2)).backward();
                reducer.arm().unwrap();
                loss(&w, &b, &xs.narrow(0, 2, 2), &ys.narrow(0, 2, 2)).backward();
                reducer.finish().unwrap();
                grads.push(flat(&w, &b));
            }
            grads
        });
        for grads in results {
            for step in grads {
                for (a, b) in step.iter().zip(&whole) {
                    assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{step:?} against {whole:?}");
                }
            }
        }
    }
}
