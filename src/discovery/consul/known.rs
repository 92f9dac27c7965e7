//! The endpoints the stream has yielded, and the diff that takes them to
//! the next answer's: removals for instances gone, inserts for new ones and
//! for ones whose address, port or tags changed.

use std::collections::HashMap;

use rs_consul::ServiceNode;

use crate::discovery::{Change, Endpoint, Scheme};

/// The last good endpoint set, by instance id.
#[derive(Debug)]
pub(super) struct Known {
    slots: HashMap<String, Slot>,
    /// Bumped by each update; a slot not seen in it is gone.
    generation: u64,
    scheme: Scheme,
}

#[derive(Debug)]
struct Slot {
    endpoint: Endpoint,
    seen: u64,
}

impl Known {
    pub(super) fn new(scheme: Scheme) -> Known {
        Known {
            slots: HashMap::new(),
            generation: 0,
            scheme,
        }
    }

    /// Instances in the set.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Makes the set `nodes`' endpoints, in place (no second map, an id
    /// copied only for a new instance); the changes, removals first. The
    /// address is `Service.Address`, or `Node.Address` when that is empty
    /// (§6).
    pub(super) fn update(&mut self, nodes: Vec<ServiceNode>) -> Vec<Change> {
        self.generation += 1;
        let generation = self.generation;
        let mut inserts = Vec::new();
        self.slots
            .reserve(nodes.len().saturating_sub(self.slots.len()));
        for n in nodes {
            let host = if n.service.address.is_empty() {
                n.node.address
            } else {
                n.service.address
            };
            let endpoint = Endpoint::new(n.service.id, self.scheme, host, n.service.port)
                .with_tags(n.service.tags);
            match self.slots.get_mut(endpoint.id()) {
                Some(slot) => {
                    slot.seen = generation;
                    if slot.endpoint != endpoint {
                        inserts.push(Change::Insert(endpoint.id().to_owned(), endpoint.clone()));
                        slot.endpoint = endpoint;
                    }
                }
                None => {
                    let id = endpoint.id().to_owned();
                    inserts.push(Change::Insert(id.clone(), endpoint.clone()));
                    self.slots.insert(
                        id,
                        Slot {
                            endpoint,
                            seen: generation,
                        },
                    );
                }
            }
        }
        let mut changes = Vec::with_capacity(inserts.len());
        self.slots.retain(|id, slot| {
            let kept = slot.seen == generation;
            if !kept {
                changes.push(Change::Remove(id.clone()));
            }
            kept
        });
        changes.append(&mut inserts);
        changes
    }
}

#[cfg(test)]
mod tests {
    use rs_consul::{Node, Service};

    use super::*;

    fn node(id: &str, address: &str, port: u16) -> ServiceNode {
        ServiceNode {
            node: Node {
                address: "10.9.9.9".into(),
                ..Node::default()
            },
            service: Service {
                id: id.into(),
                address: address.into(),
                port,
                ..Service::default()
            },
        }
    }

    fn keys(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Insert(k, e) => format!("+{k} {}", e.base_url()),
                Change::Remove(k) => format!("-{k}"),
            })
            .collect()
    }

    #[test]
    fn the_first_answer_inserts_every_instance() {
        let mut known = Known::new(Scheme::Http);
        let changes = known.update(vec![node("a", "10.0.0.1", 80), node("b", "", 81)]);
        let mut got = keys(&changes);
        got.sort();
        assert_eq!(got, ["+a http://10.0.0.1:80", "+b http://10.9.9.9:81"]);
        assert_eq!(known.len(), 2);
    }

    #[test]
    fn an_unchanged_answer_changes_nothing() {
        let mut known = Known::new(Scheme::Http);
        known.update(vec![node("a", "10.0.0.1", 80)]);
        assert!(known.update(vec![node("a", "10.0.0.1", 80)]).is_empty());
    }

    #[test]
    fn removals_come_first_then_new_and_moved_instances() {
        let mut known = Known::new(Scheme::Http);
        known.update(vec![node("a", "10.0.0.1", 80), node("b", "10.0.0.2", 80)]);
        let changes = known.update(vec![node("b", "10.0.0.2", 81), node("c", "10.0.0.3", 80)]);
        assert_eq!(
            keys(&changes),
            ["-a", "+b http://10.0.0.2:81", "+c http://10.0.0.3:80"]
        );
        assert_eq!(known.len(), 2);
    }
}
