//! Page-aligned byte buffers for `O_DIRECT` writes made outside the DMA
//! path (the spare-segment zero fill, the benchmark's floor probes).
#![allow(unsafe_code)] // An aligned allocation for O_DIRECT: unsafe at the edge.

use std::alloc::Layout;
use std::ptr::NonNull;

/// The alignment `O_DIRECT` needs on every filesystem ordo supports.
pub const DIRECT_IO_ALIGN: usize = 4096;

/// A heap buffer aligned to [`DIRECT_IO_ALIGN`], filled with one byte.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the buffer is plain owned memory, like a `Box<[u8]>`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access is read-only (`as_slice`).
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `len` bytes (rounded up to a whole page, at least one), each `fill`.
    pub fn filled(len: usize, fill: u8) -> Self {
        let len = len.max(1).next_multiple_of(DIRECT_IO_ALIGN);
        let layout = match Layout::from_size_align(len, DIRECT_IO_ALIGN) {
            Ok(layout) => layout,
            Err(_) => std::alloc::handle_alloc_error(
                Layout::from_size_align(DIRECT_IO_ALIGN, DIRECT_IO_ALIGN).expect("one page"),
            ),
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe {
            if fill == 0 {
                std::alloc::alloc_zeroed(layout)
            } else {
                std::alloc::alloc(layout)
            }
        };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        if fill != 0 {
            // SAFETY: `ptr` points to `layout.size()` bytes we own.
            unsafe { std::ptr::write_bytes(ptr.as_ptr(), fill, layout.size()) };
        }
        Self { ptr, layout }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: allocated and initialised in `filled`, freed only in `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Never true (a buffer holds at least one page).
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `filled` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_page_aligned_whole_pages_and_filled() {
        for (len, fill) in [(1, 0u8), (4096, 0xA5), (5000, 7), (0, 0)] {
            let buf = AlignedBuf::filled(len, fill);
            assert_eq!(buf.as_slice().as_ptr() as usize % DIRECT_IO_ALIGN, 0);
            assert_eq!(buf.len() % DIRECT_IO_ALIGN, 0);
            assert!(buf.len() >= len.max(1));
            assert!(buf.as_slice().iter().all(|&b| b == fill));
        }
    }
}
