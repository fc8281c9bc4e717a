//! Fault injection for the storage engine's writes, truncations and fsyncs, so unit tests can make exactly one
//! I/O operation fail with ENOSPC or EIO and check what the log does about it.
//!
//! Owned by the log module. In normal builds [`check`] is an empty inline function; under `cfg(test)` it
//! consults a plan kept per thread (each test runs on its own thread, so tests never see each other's faults;
//! I/O on other threads, such as the fsync after a roll, is never failed).

use std::io;

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    /// Writing batches to a segment's `.log` file.
    SegmentWrite,
    /// Writing an entry to an offset or time index.
    IndexWrite,
    /// fsync of a segment's files.
    Fsync,
    /// Truncating a segment or index file (rollback after a failed append).
    Truncate,
    /// Writing a recovery-point or log-start-offset file.
    Checkpoint,
}

/// Ok, or the injected error for `point`.
#[inline]
pub(crate) fn check(point: Point) -> io::Result<()> {
    #[cfg(test)]
    {
        plan::take(point)
    }
    #[cfg(not(test))]
    {
        let _ = point;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod plan {
    use std::cell::RefCell;
    use std::io;

    use super::Point;

    thread_local! {
        /// (point, hits to let through before failing, errno, failures left)
        static PLAN: RefCell<Vec<(Point, u32, i32, u32)>> = const { RefCell::new(Vec::new()) };
    }

    /// Lets `skip` operations at `point` succeed, then fails the next `times` with `errno`.
    pub(crate) fn fail(point: Point, skip: u32, errno: i32, times: u32) {
        PLAN.with(|p| p.borrow_mut().push((point, skip, errno, times)));
    }

    /// Removes every planned fault of this thread.
    pub(crate) fn clear() {
        PLAN.with(|p| p.borrow_mut().clear());
    }

    pub(super) fn take(point: Point) -> io::Result<()> {
        PLAN.with(|p| {
            let mut plan = p.borrow_mut();
            let Some(entry) = plan.iter_mut().find(|e| e.0 == point && e.3 > 0) else {
                return Ok(());
            };
            if entry.1 > 0 {
                entry.1 -= 1;
                return Ok(());
            }
            entry.3 -= 1;
            Err(io::Error::from_raw_os_error(entry.2))
        })
    }
}
