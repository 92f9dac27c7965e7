//! The ACL token, kept out of logs and `Debug` output.

use std::fmt;

/// An ACL token: sent as `X-Consul-Token`, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsulToken(String);

impl ConsulToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        ConsulToken(token.into())
    }

    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConsulToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConsulToken(<redacted>)")
    }
}
