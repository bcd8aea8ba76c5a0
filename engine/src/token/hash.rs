//! The hash behind every token digest: payload hashes, Merkle leaves and
//! inner nodes, and the verifier's statement cache keys.
//!
//! Both candidates sit behind [`TreeHash`] so the Merkle code, the tests and
//! the benchmark run unchanged over either; [`TokenHash`] is the one choice
//! the signer and verifier use. The choice is by measurement
//! (`docs/tokens.md`, `cargo bench -p ordo-bench --bench token`).
//!
//! Changing [`TokenHash`] changes the root of every statement. Its
//! [`TreeHash::ID`] is written into each token and into the signed statement
//! bytes, so a verifier built with one hash rejects tokens made with the
//! other by name ([`super::TokenDecodeError::UnsupportedHash`]) instead of
//! reporting a bad root.

use sha2::Digest as _;

/// A 32-byte digest (both candidates output 32 bytes).
pub type Digest = [u8; 32];

/// Length of the fixed leaf layout hashed by [`TreeHash::leaf`]:
/// `index, term, id, ts` as little-endian u64s, then the payload's hash.
pub const LEAF_FIELDS_LEN: usize = 4 * 8 + 32;

/// A hash function with the three domain-separated uses a token needs.
///
/// Implementations must keep the three domains apart: no leaf digest may
/// equal an inner-node digest for different inputs (second-preimage safety
/// of the Merkle tree, RFC 6962 §2.1).
pub trait TreeHash {
    /// Identifies the hash in token and statement bytes (never reused).
    const ID: u8;
    /// Lowercase name, for docs and errors.
    const NAME: &'static str;

    /// The plain hash of a payload, as standard tools print it
    /// (`sha256sum`, `b3sum`), so an operator can recompute it.
    fn payload(payload: &[u8]) -> Digest;

    /// A leaf over the fixed layout of [`LEAF_FIELDS_LEN`] bytes.
    fn leaf(fields: &[u8; LEAF_FIELDS_LEN]) -> Digest;

    /// An inner node over its two children.
    fn node(left: &Digest, right: &Digest) -> Digest;

    /// A digest of the concatenation of `parts`, for cache keys.
    fn concat(parts: &[&[u8]]) -> Digest;

    /// The payload hashes of many entries: `out[i] = payload(payloads[i])`.
    /// The same digests as [`TreeHash::payload`]; an implementation may
    /// hash several at once.
    fn payloads(payloads: &[&[u8]], out: &mut [Digest]) {
        debug_assert_eq!(payloads.len(), out.len());
        for (payload, out) in payloads.iter().zip(out) {
            *out = Self::payload(payload);
        }
    }

    /// Many leaves: `out[i] = leaf(fields[i])`.
    fn leaves(fields: &[[u8; LEAF_FIELDS_LEN]], out: &mut [Digest]) {
        debug_assert_eq!(fields.len(), out.len());
        for (fields, out) in fields.iter().zip(out) {
            *out = Self::leaf(fields);
        }
    }

    /// One level of inner nodes: `out[i] = node(children[2i], children[2i + 1])`.
    fn nodes(children: &[Digest], out: &mut [Digest]) {
        debug_assert_eq!(children.len(), 2 * out.len());
        for (pair, out) in children.chunks_exact(2).zip(out) {
            *out = Self::node(&pair[0], &pair[1]);
        }
    }
}

/// SHA-256 (RFC 6962 style): leaves are `SHA-256(0x00 ‖ fields)`, inner
/// nodes `SHA-256(0x01 ‖ left ‖ right)`. sha2 picks its SHA-NI backend at run
/// time when the CPU has it. The prefix byte costs nothing extra: 64 and 65
/// bytes both take two compressions once padded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sha256Tree;

/// Domain prefix of a SHA-256 leaf.
const SHA256_LEAF_PREFIX: u8 = 0x00;
/// Domain prefix of a SHA-256 inner node.
const SHA256_NODE_PREFIX: u8 = 0x01;

impl TreeHash for Sha256Tree {
    const ID: u8 = 1;
    const NAME: &'static str = "sha256";

    fn payload(payload: &[u8]) -> Digest {
        sha2::Sha256::digest(payload).into()
    }

    fn leaf(fields: &[u8; LEAF_FIELDS_LEN]) -> Digest {
        sha256_prefixed_64(SHA256_LEAF_PREFIX, fields, &[])
    }

    fn node(left: &Digest, right: &Digest) -> Digest {
        sha256_prefixed_64(SHA256_NODE_PREFIX, left, right)
    }

    fn concat(parts: &[&[u8]]) -> Digest {
        let mut hasher = sha2::Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }
}

/// SHA-256 of the 65 bytes `prefix ‖ first ‖ second` (`first` and `second`
/// 64 bytes together), padded by hand into its two blocks and compressed in
/// one call: the same digest as the streaming API without its buffering
/// (a leaf took ~118 ns through the streaming API, ~91 ns this way;
/// docs/tokens.md).
fn sha256_prefixed_64(prefix: u8, first: &[u8], second: &[u8]) -> Digest {
    debug_assert_eq!(first.len() + second.len(), 64);
    const INITIAL_STATE: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut blocks = [[0u8; 64]; 2];
    let mut message = [0u8; 65];
    message[0] = prefix;
    message[1..1 + first.len()].copy_from_slice(first);
    message[1 + first.len()..].copy_from_slice(second);
    blocks[0].copy_from_slice(&message[..64]);
    blocks[1][0] = message[64];
    // Padding (FIPS 180-4 §5.1.1): a 1 bit, zeros, the length in bits.
    blocks[1][1] = 0x80;
    blocks[1][56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    let mut state = INITIAL_STATE;
    sha2::block_api::compress256(&mut state, &blocks);
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// BLAKE3: leaves and inner nodes are keyed hashes under two keys derived
/// from distinct contexts (BLAKE3's own domain separation), so a 64-byte
/// leaf or node is a single compression; payloads are plain `blake3(payload)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Blake3Tree;

/// `blake3::derive_key("ordo 2025 token merkle leaf v1", b"")`, checked by a
/// test (kept as a constant so hashing a leaf derives nothing).
const BLAKE3_LEAF_KEY: [u8; 32] = [
    0x82, 0xcc, 0x0e, 0xfd, 0x21, 0x33, 0x26, 0x23, 0x52, 0x6a, 0xdd, 0x40, 0xa0, 0x3e, 0x92, 0xcf,
    0x6b, 0x5f, 0xe5, 0x37, 0xff, 0x04, 0x67, 0xb6, 0x2f, 0x45, 0x2e, 0xd6, 0x70, 0x43, 0x42, 0x9a,
];
/// `blake3::derive_key("ordo 2025 token merkle node v1", b"")`.
const BLAKE3_NODE_KEY: [u8; 32] = [
    0xa8, 0x84, 0x45, 0x01, 0x46, 0x54, 0xcc, 0xb8, 0x5d, 0xbc, 0xae, 0x34, 0xef, 0x5a, 0x2a, 0xc2,
    0x60, 0xa5, 0x2a, 0xd9, 0x17, 0x89, 0x69, 0xbf, 0xec, 0x7c, 0x40, 0x48, 0xe1, 0x4f, 0xdc, 0x72,
];
/// Context of [`BLAKE3_LEAF_KEY`].
#[cfg(test)]
const BLAKE3_LEAF_CONTEXT: &str = "ordo 2025 token merkle leaf v1";
/// Context of [`BLAKE3_NODE_KEY`].
#[cfg(test)]
const BLAKE3_NODE_CONTEXT: &str = "ordo 2025 token merkle node v1";

impl TreeHash for Blake3Tree {
    const ID: u8 = 2;
    const NAME: &'static str = "blake3";

    fn payload(payload: &[u8]) -> Digest {
        if payload.is_empty() {
            // Internal entries and empty messages: no compression.
            return BLAKE3_EMPTY;
        }
        *blake3::hash(payload).as_bytes()
    }

    fn leaf(fields: &[u8; LEAF_FIELDS_LEN]) -> Digest {
        *blake3::keyed_hash(&BLAKE3_LEAF_KEY, fields).as_bytes()
    }

    fn node(left: &Digest, right: &Digest) -> Digest {
        let mut input = [0u8; 64];
        input[..32].copy_from_slice(left);
        input[32..].copy_from_slice(right);
        *blake3::keyed_hash(&BLAKE3_NODE_KEY, &input).as_bytes()
    }

    fn concat(parts: &[&[u8]]) -> Digest {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(part);
        }
        *hasher.finalize().as_bytes()
    }

    fn payloads(payloads: &[&[u8]], out: &mut [Digest]) {
        debug_assert_eq!(payloads.len(), out.len());
        // Payloads of exactly one block hash in SIMD lanes; a run of them
        // is gathered, any other length is hashed alone.
        let mut run: Vec<(usize, &[u8; BLAKE3_BLOCK_LEN])> = Vec::new();
        for (position, payload) in payloads.iter().enumerate() {
            match <&[u8; BLAKE3_BLOCK_LEN]>::try_from(*payload) {
                Ok(block) => run.push((position, block)),
                Err(_) => out[position] = Self::payload(payload),
            }
        }
        let mut hashed = vec![[0u8; 32]; run.len()];
        let blocks: Vec<&[u8; BLAKE3_BLOCK_LEN]> = run.iter().map(|(_, block)| *block).collect();
        blake3_single_blocks(&BLAKE3_IV, 0, &blocks, &mut hashed);
        for ((position, _), digest) in run.iter().zip(hashed) {
            out[*position] = digest;
        }
    }

    fn leaves(fields: &[[u8; LEAF_FIELDS_LEN]], out: &mut [Digest]) {
        debug_assert_eq!(fields.len(), out.len());
        let blocks: Vec<&[u8; BLAKE3_BLOCK_LEN]> = fields.iter().collect();
        blake3_single_blocks(&BLAKE3_LEAF_KEY, BLAKE3_KEYED_HASH, &blocks, out);
    }

    fn nodes(children: &[Digest], out: &mut [Digest]) {
        debug_assert_eq!(children.len(), 2 * out.len());
        // Two adjacent 32-byte children are the 64-byte block of their
        // parent: hash them where they lie.
        let blocks: Vec<&[u8; BLAKE3_BLOCK_LEN]> = children
            .as_flattened()
            .chunks_exact(BLAKE3_BLOCK_LEN)
            .map(|block| block.try_into().expect("chunks_exact"))
            .collect();
        blake3_single_blocks(&BLAKE3_NODE_KEY, BLAKE3_KEYED_HASH, &blocks, out);
    }
}

/// A BLAKE3 block.
const BLAKE3_BLOCK_LEN: usize = 64;
/// BLAKE3's domain flags (the BLAKE3 paper, Table 3).
const BLAKE3_CHUNK_START: u8 = 1 << 0;
/// See [`BLAKE3_CHUNK_START`].
const BLAKE3_CHUNK_END: u8 = 1 << 1;
/// See [`BLAKE3_CHUNK_START`].
const BLAKE3_ROOT: u8 = 1 << 3;
/// See [`BLAKE3_CHUNK_START`].
const BLAKE3_KEYED_HASH: u8 = 1 << 4;
/// BLAKE3's IV (SHA-256's), as key bytes: the key of the unkeyed hash.
const BLAKE3_IV: [u8; 32] = {
    const WORDS: [u32; 8] = [
        0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB,
        0x5BE0CD19,
    ];
    let mut bytes = [0u8; 32];
    let mut i = 0;
    while i < 8 {
        let word = WORDS[i].to_le_bytes();
        bytes[4 * i] = word[0];
        bytes[4 * i + 1] = word[1];
        bytes[4 * i + 2] = word[2];
        bytes[4 * i + 3] = word[3];
        i += 1;
    }
    bytes
};
/// `blake3::hash(b"")`, checked by a test.
const BLAKE3_EMPTY: Digest = [
    0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc, 0xc9, 0x49,
    0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca, 0xe4, 0x1f, 0x32, 0x62,
];

/// `out[i]` = the BLAKE3 hash (keyed with `key` when `flags` says so) of
/// the one-block message `blocks[i]`: each message is a whole chunk and
/// the root, so its hash is one compression, and `hash_many` runs up to
/// 16 of them in the SIMD lanes of the CPU (AVX-512, AVX2, SSE4.1) where
/// one `keyed_hash` call runs one. That is the only use of
/// `blake3::platform`, which the crate marks unstable: the blake3 version
/// is pinned in `engine/Cargo.toml` and the tests below check every batch
/// path against the plain hash functions (docs/dependencies.md).
fn blake3_single_blocks(
    key: &[u8; 32],
    flags: u8,
    blocks: &[&[u8; BLAKE3_BLOCK_LEN]],
    out: &mut [Digest],
) {
    debug_assert_eq!(blocks.len(), out.len());
    if blocks.is_empty() {
        return;
    }
    let key_words: [u32; 8] =
        std::array::from_fn(|i| u32::from_le_bytes(key[4 * i..4 * i + 4].try_into().unwrap()));
    blake3::platform::Platform::detect().hash_many(
        blocks,
        &key_words,
        0,
        blake3::IncrementCounter::No,
        flags,
        BLAKE3_CHUNK_START,
        BLAKE3_CHUNK_END | BLAKE3_ROOT,
        out.as_flattened_mut(),
    );
}

/// The hash tokens use: BLAKE3 hashes a 64-byte-payload entry (payload,
/// leaf, tree) ~1.2× faster than SHA-256 with SHA-NI on the reference
/// machine, three compressions against six (`docs/tokens.md`).
pub type TokenHash = Blake3Tree;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_keys_are_derived_from_their_contexts() {
        assert_eq!(
            blake3::derive_key(BLAKE3_LEAF_CONTEXT, b""),
            BLAKE3_LEAF_KEY
        );
        assert_eq!(
            blake3::derive_key(BLAKE3_NODE_CONTEXT, b""),
            BLAKE3_NODE_KEY
        );
    }

    fn domains_differ<H: TreeHash>() {
        let fields = [7u8; LEAF_FIELDS_LEN];
        let (left, right) = fields.split_at(32);
        let left: Digest = left.try_into().unwrap();
        let right: Digest = right.try_into().unwrap();
        assert_ne!(H::leaf(&fields), H::node(&left, &right));
        assert_ne!(H::leaf(&fields), H::concat(&[&fields]));
        assert_ne!(H::node(&left, &right), H::concat(&[&fields]));
    }

    #[test]
    fn leaf_and_node_domains_differ() {
        domains_differ::<Sha256Tree>();
        domains_differ::<Blake3Tree>();
    }

    #[test]
    fn sha256_fixed_size_path_is_plain_sha256() {
        let fields: [u8; 64] = std::array::from_fn(|i| i as u8 ^ 0xa5);
        let streamed = |prefix: u8| -> Digest {
            let mut hasher = sha2::Sha256::new();
            hasher.update([prefix]);
            hasher.update(fields);
            hasher.finalize().into()
        };
        assert_eq!(Sha256Tree::leaf(&fields), streamed(SHA256_LEAF_PREFIX));
        let (left, right) = fields.split_at(32);
        let (left, right): (Digest, Digest) = (left.try_into().unwrap(), right.try_into().unwrap());
        assert_eq!(
            Sha256Tree::node(&left, &right),
            streamed(SHA256_NODE_PREFIX)
        );
    }

    /// Payloads of every length class the batch path treats apart: empty,
    /// under a block, exactly one block, over a block.
    fn mixed_payloads(count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                let len = [64, 0, 64, 63, 65, 64, 1, 200, 64, 64, 1024][i % 11];
                (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
            })
            .collect()
    }

    fn batches_equal_single_calls<H: TreeHash>() {
        for count in [0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 100] {
            let payloads = mixed_payloads(count);
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let mut digests = vec![[0u8; 32]; count];
            H::payloads(&refs, &mut digests);
            for (payload, digest) in payloads.iter().zip(&digests) {
                assert_eq!(
                    *digest,
                    H::payload(payload),
                    "payload of {} bytes",
                    payload.len()
                );
            }

            let fields: Vec<[u8; LEAF_FIELDS_LEN]> = (0..count)
                .map(|i| std::array::from_fn(|j| (i * 13 + j) as u8))
                .collect();
            let mut leaves = vec![[0u8; 32]; count];
            H::leaves(&fields, &mut leaves);
            for (fields, leaf) in fields.iter().zip(&leaves) {
                assert_eq!(*leaf, H::leaf(fields));
            }

            let children: Vec<Digest> = (0..2 * count)
                .map(|i| std::array::from_fn(|j| (i * 5 + j * 3) as u8))
                .collect();
            let mut nodes = vec![[0u8; 32]; count];
            H::nodes(&children, &mut nodes);
            for (pair, node) in children.chunks_exact(2).zip(&nodes) {
                assert_eq!(*node, H::node(&pair[0], &pair[1]));
            }
        }
    }

    #[test]
    fn batch_hashing_equals_one_at_a_time() {
        batches_equal_single_calls::<Sha256Tree>();
        batches_equal_single_calls::<Blake3Tree>();
    }

    #[test]
    fn blake3_constants_are_the_crates() {
        assert_eq!(BLAKE3_EMPTY, *blake3::hash(b"").as_bytes());
        // The unkeyed hash is the hash keyed with the IV (BLAKE3 paper §2.1).
        let block = [9u8; 64];
        let mut out = [[0u8; 32]];
        blake3_single_blocks(&BLAKE3_IV, 0, &[&block], &mut out);
        assert_eq!(out[0], *blake3::hash(&block).as_bytes());
    }

    #[test]
    fn payload_hashes_are_the_standard_ones() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(Sha256Tree::payload(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(
            Blake3Tree::payload(b"abc"),
            *blake3::hash(b"abc").as_bytes()
        );
    }
}
