//! [`Window`]: which calls the rates are computed over.

use std::time::Duration;

use super::{MAX_BUCKETS, MAX_WINDOW_CALLS};
use crate::ConfigError;

/// Which calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `size` calls, kept in `buckets` buckets of `size / buckets`
    /// calls. The window slides one bucket at a time, so it holds between
    /// `size` and `size + size / buckets - 1` calls; with `buckets == size`
    /// it is exact.
    Count {
        /// Calls in the window.
        size: u32,
        /// Buckets the window is kept in; must divide `size`.
        buckets: u32,
    },
    /// The calls completed in the last `duration`, kept in `buckets` buckets
    /// of `duration / buckets`. The window slides one bucket at a time, so it
    /// covers between `duration - duration / buckets` and `duration`.
    Time {
        /// How far back the window reaches.
        duration: Duration,
        /// Buckets the window is kept in.
        buckets: u32,
    },
}

impl Window {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Window::Count { size, buckets } => {
                if !(1..=MAX_WINDOW_CALLS).contains(&size) {
                    return Err(ConfigError::new(
                        "window.size",
                        format!("must be in [1, {MAX_WINDOW_CALLS}], got {size}"),
                    ));
                }
                if !(1..=size.min(MAX_BUCKETS)).contains(&buckets) || size % buckets != 0 {
                    return Err(ConfigError::new(
                        "window.buckets",
                        format!(
                            "must divide window.size ({size}) and be in [1, {}], got {buckets}",
                            size.min(MAX_BUCKETS)
                        ),
                    ));
                }
            }
            Window::Time { duration, buckets } => {
                if duration < Duration::from_millis(1) || duration > Duration::from_secs(86_400) {
                    return Err(ConfigError::new(
                        "window.duration",
                        format!("must be in [1ms, 24h], got {duration:?}"),
                    ));
                }
                if !(1..=MAX_BUCKETS).contains(&buckets)
                    || duration.as_nanos() / (buckets as u128) < 1_000_000
                {
                    return Err(ConfigError::new(
                        "window.buckets",
                        format!(
                            "must be in [1, {MAX_BUCKETS}] with buckets of at least 1ms, got {buckets}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
