//! Errors shared by every part of the crate.

/// A boxed error, as tower middleware passes them between layers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An invalid configuration value, found when a policy is built or
/// deserialized. Names the offending field and the allowed range.
///
/// ```
/// use meshguard::circuit_breaker::CircuitBreakerConfig;
///
/// let err = CircuitBreakerConfig::builder()
///     .failure_rate_threshold(150.0)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "failure_rate_threshold");
/// assert_eq!(
///     err.to_string(),
///     "invalid `failure_rate_threshold`: must be in (0, 100], got 150"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {message}")]
pub struct ConfigError {
    field: String,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Prefixes the field with the name of the section that contains it
    /// (`max` becomes `open_duration.max`).
    pub(crate) fn within(mut self, section: &str) -> Self {
        self.field = format!("{section}.{}", self.field);
        self
    }

    /// The dotted path of the invalid field, as it is spelled in configuration
    /// files (`window.size`, `open_duration.max`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it: the allowed range and the value given.
    pub fn message(&self) -> &str {
        &self.message
    }
}
