//! Where a client's endpoints come from: a static list, a Consul watch or
//! any stream of changes, and whether its first answer is in.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use crate::discovery::{Change, StaticDiscovery};

/// Where a client's endpoints come from.
pub(crate) enum SourceKind {
    Static(StaticDiscovery),
    #[cfg(feature = "consul")]
    Consul(crate::discovery::consul::ConsulDiscovery),
    Custom(Pin<Box<dyn futures_core::Stream<Item = Result<Change, Infallible>> + Send>>),
}

/// A discovery stream that also says when its first answer is in.
pub(crate) struct Source {
    kind: SourceKind,
    settled: Arc<AtomicBool>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

impl Source {
    pub(crate) fn new(kind: SourceKind) -> Self {
        let settled = match &kind {
            // Its endpoints are all known (and yielded at the first poll).
            SourceKind::Static(_) => Arc::new(AtomicBool::new(true)),
            #[cfg(feature = "consul")]
            SourceKind::Consul(c) => c.settled(),
            SourceKind::Custom(_) => Arc::new(AtomicBool::new(false)),
        };
        Source { kind, settled }
    }

    pub(crate) fn settled(&self) -> Arc<AtomicBool> {
        self.settled.clone()
    }
}

impl futures_core::Stream for Source {
    type Item = Result<Change, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match &mut this.kind {
            SourceKind::Static(s) => Pin::new(s).poll_next(cx),
            #[cfg(feature = "consul")]
            SourceKind::Consul(c) => Pin::new(c).poll_next(cx),
            SourceKind::Custom(s) => {
                let next = s.as_mut().poll_next(cx);
                if next.is_ready() {
                    // A custom stream's first change (or end) settles it.
                    this.settled.store(true, Ordering::Release);
                }
                next
            }
        }
    }
}
