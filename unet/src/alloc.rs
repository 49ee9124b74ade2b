//! Keeping the network's buffers in the process between passes (training steps, inference
//! batches).
//!
//! burn Flex allocates fresh buffers for every operation of every pass, many above glibc's
//! mmap threshold (128 KiB at first, raised on its own only up to 32 MiB), and glibc trims
//! the heap whenever 128 KiB lie free at its top. So each step mapped, zeroed and unmapped
//! the same megabytes again: page faults, and TLB shootdowns between the rayon threads.
//! Raising both thresholds lets freed buffers be reused: the seed network's CPU step (batch
//! 8 of 128x128) went from 841 / 801 ms to 692 / 759 ms in two alternating pairs of runs on
//! the 2-core EPYC; inference of 512x512 slices went from 315 / 309 to 270 / 265 ms a
//! slice (alternating runs, `GLIBC_TUNABLES` with the same values). Blocks over 64 MiB
//! (whole CT volumes) are still mapped and given back when freed, and the heap is still
//! trimmed once 256 MiB lie free at its top. A process-wide setting, made by the first
//! training or inference of the process.

/// Raise glibc's mmap and trim thresholds for this process (once; no-op elsewhere).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_network_buffers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only changes allocator parameters and takes glibc's own lock;
        // a rejected value (return 0) leaves the default in place, which is harmless.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        }
    });
}

/// Raise glibc's mmap and trim thresholds for this process (once; no-op elsewhere).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_network_buffers() {}
