//! Property tests: random advances verify and reject alterations; the
//! decoder never panics on random input.

use proptest::prelude::*;

use super::*;

/// A random advance: `count` entries from `first_index`, random payloads
/// (0..=96 bytes), ids and timestamps increasing.
fn arbitrary_advance() -> impl Strategy<Value = Vec<Entry>> {
    (
        1u64..1 << 40,
        1u64..1 << 40,
        1u64..1 << 50,
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=96), 1..=150),
    )
        .prop_map(|(first_index, first_id, first_ts, payloads)| {
            payloads
                .into_iter()
                .enumerate()
                .map(|(i, payload)| Entry {
                    kind: BatchKind::Entries,
                    index: first_index + i as u64,
                    term: TERM,
                    id: first_id + i as u64,
                    ts: first_ts + 3 * i as u64,
                    payload,
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_advances_verify_and_reject_alterations(
        entries in arbitrary_advance(),
        pick in any::<prop::sample::Index>(),
        field in 0usize..6,
        delta in 1u64..1000,
    ) {
        let proof = sign(&signer(2), &entries);
        let mut verifier = Verifier::new(cluster_keys());
        for entry in &entries {
            let token = proof.token(entry.index).unwrap();
            let decoded = Token::from_text(&token.to_text()).unwrap();
            prop_assert_eq!(&decoded, &token);
            prop_assert_eq!(verify(&mut verifier, &decoded, entry), Ok(()));
        }
        prop_assert_eq!(verifier.cached_statements(), 1);

        let entry = pick.get(&entries);
        let token = proof.token(entry.index).unwrap();
        let mut altered = entry.clone();
        match field {
            0 => altered.id = altered.id.wrapping_add(delta),
            1 => altered.index = altered.index.wrapping_add(delta),
            2 => altered.term = altered.term.wrapping_sub(delta),
            3 => altered.ts = altered.ts.wrapping_add(delta),
            4 => altered.payload.push(delta as u8),
            _ => match altered.payload.first_mut() {
                Some(byte) => *byte ^= (delta as u8) | 1,
                None => altered.payload.push(0),
            },
        }
        prop_assert!(verify(&mut verifier, &token, &altered).is_err());
    }

    #[test]
    fn any_change_to_a_token_byte_fails(
        entries in arbitrary_advance(),
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let entry = pick.get(&entries);
        let token = sign(&signer(1), &entries).token(entry.index).unwrap();
        let mut bytes = token.to_bytes();
        let at = at.index(bytes.len());
        bytes[at] ^= flip;
        let mut verifier = Verifier::new(cluster_keys());
        if let Ok(altered) = Token::from_bytes(&bytes) {
            prop_assert!(verify(&mut verifier, &altered, entry).is_err());
        }
        prop_assert_eq!(verify(&mut verifier, &token, entry), Ok(()));
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let _ = Token::from_bytes(&bytes);
    }

    #[test]
    fn decoding_random_text_never_panics(text in ".{0,400}|[A-Za-z0-9_-]{140,3000}") {
        let _ = Token::from_text(&text);
    }

    #[test]
    fn decoding_near_valid_bytes_never_panics(
        path_len in 0u8..=255,
        extra in prop::collection::vec(any::<u8>(), 0..2200),
        header in prop::collection::vec(any::<u8>(), TOKEN_HEADER_LEN - 1),
    ) {
        let mut bytes = vec![TOKEN_VERSION, TokenHash::ID];
        bytes.extend_from_slice(&header[2..]);
        bytes.push(path_len);
        bytes.extend_from_slice(&extra);
        if let Ok(token) = Token::from_bytes(&bytes) {
            prop_assert_eq!(token.to_bytes(), bytes);
        }
    }

    #[test]
    fn decoding_random_links_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        payload_len in 0u32..2000,
        text in ".{0,400}|[A-Za-z0-9_-]{50,3000}",
    ) {
        let _ = ConfigLink::from_bytes(&bytes);
        let _ = ConfigLink::from_text(&text);
        // Near valid: a version byte, a header, a claimed payload length.
        let mut near = vec![1u8];
        near.extend_from_slice(&[0u8; 32]);
        near.extend_from_slice(&payload_len.to_le_bytes());
        near.extend_from_slice(&bytes);
        if let Ok(link) = ConfigLink::from_bytes(&near) {
            prop_assert_eq!(link.to_bytes(), near);
            // Learning it never panics either (it proves nothing).
            let _ = Verifier::new(cluster_keys()).learn(&link);
        }
    }
}
