//! The C allocator's settings for a sacp process. Training and candidate evaluation allocate
//! and free megabyte-sized buffers (activations, gradients, unfolded images) at every step;
//! by default glibc hands blocks above its adaptive threshold to the kernel as separate
//! mappings and trims its heaps' tops, so the next step pays the page faults and the
//! kernel's zeroing of fresh pages again (ResNet-56 training, 2 threads: about 6% of the
//! time in page faults).

/// Lets glibc's allocator keep freed memory for reuse: blocks up to 32 MiB (its largest
/// setting) come from its heaps, and a heap's free top is not returned to the kernel below
/// 1 GiB. The process's peak memory is unchanged; memory freed by one step is what the next
/// one reuses. Call once, at the start of the process. A no-op where the C library is not
/// glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets two of glibc's allocator parameters, under its own lock;
    // a rejected value (it returns 0) leaves the default in place, which is harmless.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
