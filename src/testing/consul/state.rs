//! The registry's state: the catalog of instances and their checks, and the
//! index that changes with them.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::render::RenderCache;

/// The one node every instance runs on: its name, ID and datacenter.
pub(super) const NODE: &str = "meshguard-test-node";
pub(super) const NODE_ID: &str = "8f246b77-f3e1-ff88-5b48-8ec93abf3e05";
pub(super) const DATACENTER: &str = "dc1";

/// Health of a check, as Consul spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// `passing`
    Passing,
    /// `warning`
    Warning,
    /// `critical`
    Critical,
}

impl CheckStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
        }
    }
}

/// Everything the registry knows, behind one lock.
#[derive(Debug, Default)]
pub(super) struct Registry {
    pub(super) index: u64,
    /// Bumped by every write access (`ConsulRegistry::lock`), whether or
    /// not it moved the index: what a rendered answer is valid for.
    pub(super) version: u64,
    /// Health answers rendered at `version`.
    pub(super) rendered: RenderCache,
    pub(super) instances: BTreeMap<String, Instance>,
    pub(super) fail_with_500: bool,
    pub(super) malformed: bool,
}

/// A registered service instance.
#[derive(Debug, Clone)]
pub(super) struct Instance {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) address: String,
    pub(super) port: u16,
    pub(super) tags: Vec<String>,
    pub(super) meta: BTreeMap<String, String>,
    pub(super) weights: (u32, u32),
    pub(super) checks: Vec<Check>,
    pub(super) create_index: u64,
    pub(super) modify_index: u64,
}

/// A service check.
#[derive(Debug, Clone)]
pub(super) struct Check {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) status: CheckStatus,
    pub(super) notes: String,
    pub(super) output: String,
    pub(super) kind: CheckKind,
    pub(super) critical_since: Option<Instant>,
    pub(super) deregister_after: Option<Duration>,
    /// Bumped by every TTL update; an expiry timer of an older epoch is stale.
    pub(super) ttl_epoch: u64,
    pub(super) create_index: u64,
    pub(super) modify_index: u64,
}

/// What a check does.
#[derive(Debug, Clone)]
pub(super) enum CheckKind {
    Http {
        url: String,
        method: String,
        interval: Duration,
        timeout: Duration,
    },
    Ttl {
        ttl: Duration,
    },
    Maintenance,
}

/// Sets a check's status; a change moves its `ModifyIndex` and starts or
/// ends its critical period.
pub(super) fn set_status(c: &mut Check, status: CheckStatus, index: u64) {
    if c.status != status {
        c.modify_index = index;
        c.critical_since = (status == CheckStatus::Critical).then(Instant::now);
    }
    c.status = status;
}
