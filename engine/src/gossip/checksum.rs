//! A stand-in for tokens in tests and the simulator: a keyed checksum over
//! everything a token covers. It is **not** cryptographic (anyone who knows
//! a key can forge, and the keys are in the verifier); it only lets tests
//! tell a faithful message from an altered one or from one "signed" with a
//! key the verifier does not hold, the way the real token verifier will.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::{GossipMessage, Verify};

/// Token length: key id then checksum, both little-endian `u64`.
const TOKEN_BYTES: usize = 16;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn checksum(key: u64, message: &GossipMessage) -> u64 {
    let mut h = mix(key ^ 0x6F72_646F);
    for field in [
        message.id,
        message.index,
        message.term,
        message.ts,
        message.payload.len() as u64,
    ] {
        h = mix(h ^ field);
    }
    for chunk in message.payload.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    h
}

/// Signs messages with one key, as a voter would.
#[derive(Clone, Debug)]
pub struct ChecksumSigner {
    key_id: u64,
    key: u64,
}

impl ChecksumSigner {
    /// A signer holding key `key` under the name `key_id`.
    pub fn new(key_id: u64, key: u64) -> Self {
        Self { key_id, key }
    }

    /// The token for `message` (its own `token` is ignored).
    pub fn token(&self, message: &GossipMessage) -> Bytes {
        let mut token = BytesMut::with_capacity(TOKEN_BYTES);
        token.put_u64_le(self.key_id);
        token.put_u64_le(checksum(self.key, message));
        token.freeze()
    }

    /// `message` with its token set.
    pub fn sign(&self, mut message: GossipMessage) -> GossipMessage {
        message.token = self.token(&message);
        message
    }
}

/// Accepts messages whose checksum was made with one of its keys.
#[derive(Clone, Debug, Default)]
pub struct ChecksumVerifier {
    keys: BTreeMap<u64, u64>,
}

impl ChecksumVerifier {
    /// A verifier that knows `(key_id, key)` pairs.
    pub fn new(keys: impl IntoIterator<Item = (u64, u64)>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
        }
    }
}

/// Why a [`ChecksumVerifier`] refused a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    /// The token is not a checksum token.
    #[error("token is {len} bytes, expected {TOKEN_BYTES}")]
    Length {
        /// The token's length.
        len: usize,
    },
    /// The token names a key the verifier does not know.
    #[error("token signed by unknown key {0}")]
    UnknownKey(u64),
    /// The checksum does not match the message.
    #[error("token does not match message {0} (altered?)")]
    Mismatch(u64),
}

impl Verify for ChecksumVerifier {
    type Error = ChecksumError;

    fn verify(&mut self, message: &GossipMessage) -> Result<(), ChecksumError> {
        let token = &message.token[..];
        if token.len() != TOKEN_BYTES {
            return Err(ChecksumError::Length { len: token.len() });
        }
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&token[..8]);
        let key_id = u64::from_le_bytes(key_id);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&token[8..]);
        let Some(&key) = self.keys.get(&key_id) else {
            return Err(ChecksumError::UnknownKey(key_id));
        };
        if checksum(key, message) != u64::from_le_bytes(sum) {
            return Err(ChecksumError::Mismatch(message.id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> GossipMessage {
        GossipMessage {
            id: 7,
            index: 12,
            term: 2,
            ts: 1_000,
            payload: Bytes::from_static(b"hello gossip"),
            token: Bytes::new(),
        }
    }

    #[test]
    fn signed_message_verifies_and_any_alteration_fails() {
        let signer = ChecksumSigner::new(1, 0xABCD);
        let mut verifier = ChecksumVerifier::new([(1, 0xABCD)]);
        let good = signer.sign(message());
        verifier.verify(&good).unwrap();
        let alterations: [fn(&mut GossipMessage); 5] = [
            |m| m.id += 1,
            |m| m.index += 1,
            |m| m.term += 1,
            |m| m.ts += 1,
            |m| m.payload = Bytes::from_static(b"hello gossiP"),
        ];
        for alter in alterations {
            let mut bad = good.clone();
            alter(&mut bad);
            assert!(verifier.verify(&bad).is_err(), "{bad:?} verified");
        }
        let mut truncated = good.clone();
        truncated.token = good.token.slice(..5);
        assert!(verifier.verify(&truncated).is_err());
    }

    #[test]
    fn unknown_key_is_rejected() {
        let forger = ChecksumSigner::new(9, 0x1234);
        let mut verifier = ChecksumVerifier::new([(1, 0xABCD)]);
        let err = verifier.verify(&forger.sign(message())).unwrap_err();
        assert_eq!(err, ChecksumError::UnknownKey(9));
        assert!(err.to_string().contains("unknown key"), "{err}");
        // A known key id with the wrong key is a forgery too.
        let impostor = ChecksumSigner::new(1, 0x1234);
        assert!(verifier.verify(&impostor.sign(message())).is_err());
    }
}
