//! The gossip simulation's named invariants, checked on every delivery and
//! every message a node sends.

use ordo_engine::gossip::{ChecksumVerifier, GossipMessage, Verify, Wire};
use ordo_storage::MessageId;

/// What every node must uphold, against the ledger of published messages.
#[derive(Debug)]
pub struct Checker {
    /// Published messages; id `n` at `n - 1`.
    ledger: Vec<GossipMessage>,
    verifier: ChecksumVerifier,
}

impl Checker {
    /// A checker that verifies with the voters' keys.
    pub fn new(verifier: ChecksumVerifier) -> Self {
        Self {
            ledger: Vec::new(),
            verifier,
        }
    }

    /// A voter published the next message.
    pub fn published(&mut self, message: GossipMessage) {
        assert_eq!(message.id, self.ledger.len() as u64 + 1);
        self.ledger.push(message);
    }

    /// The published message with `id`.
    pub fn message(&self, id: MessageId) -> Option<&GossipMessage> {
        self.ledger.get(id.checked_sub(1)? as usize)
    }

    /// Messages published so far.
    pub fn published_count(&self) -> u64 {
        self.ledger.len() as u64
    }

    /// `delivered-in-order-exactly-once` and `delivered-only-committed`: a
    /// node whose store ends at `*last` delivered `messages`.
    pub fn delivered(
        &self,
        node: &str,
        last: &mut MessageId,
        messages: &[GossipMessage],
    ) -> Result<(), String> {
        for message in messages {
            if message.id != *last + 1 {
                return Err(format!(
                    "delivered-in-order-exactly-once: {node} delivered id {} after {}",
                    message.id, last
                ));
            }
            match self.message(message.id) {
                Some(published) if published == message => {}
                Some(_) => {
                    return Err(format!(
                        "delivered-only-committed: {node} delivered an altered message {}",
                        message.id
                    ));
                }
                None => {
                    return Err(format!(
                        "delivered-only-committed: {node} delivered id {} which was never published",
                        message.id
                    ));
                }
            }
            *last = message.id;
        }
        Ok(())
    }

    /// `forgeries-never-forwarded`: every message a node sends on verifies
    /// and is the published one.
    pub fn sent(&mut self, node: &str, wire: &Wire) -> Result<(), String> {
        let messages: &[GossipMessage] = match wire {
            Wire::Push { message, .. } => std::slice::from_ref(message),
            Wire::PullReply { messages, .. } => messages,
            _ => return Ok(()),
        };
        for message in messages {
            if let Err(reason) = self.verifier.verify(message) {
                return Err(format!(
                    "forgeries-never-forwarded: {node} sent message {} that fails verification: {reason}",
                    message.id
                ));
            }
            if self.message(message.id) != Some(message) {
                return Err(format!(
                    "forgeries-never-forwarded: {node} sent a message {} that was never published",
                    message.id
                ));
            }
        }
        Ok(())
    }
}
