//! One test per claim: round trips, each alteration, keys, cache, errors.

use super::*;

#[test]
fn every_entry_of_an_advance_verifies_and_round_trips() {
    for count in [1, 2, 3, 5, 64, 100] {
        let entries = advance(count);
        let proof = sign(&signer(1), &entries);
        let statement = proof.statement();
        assert_eq!(
            (statement.first_index, statement.last_index),
            (100, 100 + count as u64 - 1)
        );
        assert_eq!((statement.term, statement.leader_id), (TERM, 1));
        let mut verifier = Verifier::new(cluster_keys());
        for (entry, (index, token)) in entries.iter().zip(proof.tokens()) {
            assert_eq!(index, entry.index);
            assert_eq!(Token::from_bytes(&token.to_bytes()), Ok(token.clone()));
            assert_eq!(proof.token_bytes(index), Some(token.to_bytes()));
            let text = token.to_text();
            assert_eq!(text.parse::<Token>(), Ok(token.clone()));
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            verify(&mut verifier, &token, entry).unwrap();
            verifier
                .verify_text(
                    &text,
                    &entry.payload,
                    entry.id,
                    entry.index,
                    entry.term,
                    entry.ts,
                )
                .unwrap();
        }
        // One signature check for the whole advance.
        assert_eq!(verifier.cached_statements(), 1);
        assert!(proof.token(99).is_none());
        assert!(proof.token(100 + count as u64).is_none());
        assert!(proof.token_bytes(99).is_none());
        assert!(proof.token_bytes(100 + count as u64).is_none());
    }
}

#[test]
fn precomputed_leaves_sign_the_same_root() {
    let entries = advance(9);
    let leaves = entries
        .iter()
        .map(|entry| entry_leaf::<TokenHash>(&entry.view()))
        .collect();
    let from_leaves = signer(1).sign_leaves(TERM, 100, leaves).unwrap();
    assert_eq!(from_leaves.signed(), sign(&signer(1), &entries).signed());
}

#[test]
fn another_node_rebuilds_the_proof_from_the_signed_statement() {
    let entries = advance(23);
    let proof = sign(&signer(1), &entries);
    let views = || entries.iter().map(Entry::view);
    let rebuilt = CommitProof::rebuild(*proof.signed(), views()).unwrap();
    for (index, token) in proof.tokens() {
        assert_eq!(rebuilt.token(index), Some(token));
    }
    let mut altered = entries.clone();
    altered[5].payload[0] ^= 1;
    assert_eq!(
        CommitProof::rebuild(*proof.signed(), altered.iter().map(Entry::view)).unwrap_err(),
        ProofError::RootMismatch
    );
    assert_eq!(
        CommitProof::rebuild(*proof.signed(), views().skip(1)).unwrap_err(),
        ProofError::RangeMismatch {
            first_index: 101,
            last_index: 122,
            statement_first_index: 100,
            statement_last_index: 122
        }
    );
}

#[test]
fn altering_any_entry_field_fails() {
    let entries = advance(10);
    let proof = sign(&signer(1), &entries);
    for entry in &entries {
        let token = proof.token(entry.index).unwrap();
        let mut verifier = Verifier::new(cluster_keys());
        verify(&mut verifier, &token, entry).unwrap();
        let mut altered: Vec<(&str, Entry)> = Vec::new();
        let mut push = |name, change: &dyn Fn(&mut Entry)| {
            let mut copy = entry.clone();
            change(&mut copy);
            altered.push((name, copy));
        };
        push("payload byte", &|e| e.payload[0] ^= 1);
        push("payload longer", &|e| e.payload.push(0));
        push("payload shorter", &|e| {
            e.payload.pop();
        });
        push("id", &|e| e.id += 1);
        push("id zero", &|e| e.id = if e.id == 0 { 1 } else { 0 });
        push("index up", &|e| e.index += 1);
        push("index down", &|e| e.index -= 1);
        push("term", &|e| e.term += 1);
        push("ts", &|e| e.ts -= 1);
        for (name, altered) in altered {
            // The statement is cached by now: the entry check alone must fail.
            let result = verify(&mut verifier, &token, &altered);
            assert!(
                matches!(
                    result,
                    Err(VerifyError::EntryMismatch { .. }
                        | VerifyError::IndexOutOfRange { .. }
                        | VerifyError::WrongPathLength { .. })
                ),
                "{name} of entry {}: {result:?}",
                entry.index
            );
        }
    }
}

#[test]
fn precomputed_leaves_and_statements_alone_verify() {
    let entries = advance(12);
    let proof = sign(&signer(1), &entries);
    let mut verifier = Verifier::new(cluster_keys());
    let entry = &entries[7];
    let token = proof.token(entry.index).unwrap();
    let leaf = entry_leaf::<TokenHash>(&entry.view());
    verifier.verify_leaf(&token, entry.index, &leaf).unwrap();
    assert_eq!(
        verifier.verify_leaf(&token, entry.index, &[0; 32]),
        Err(VerifyError::EntryMismatch { index: entry.index })
    );
    // Without the entry: the statement and the token's shape only.
    verifier.verify_statement(&token, entry.index).unwrap();
    assert!(matches!(
        verifier.verify_statement(&token, 112),
        Err(VerifyError::IndexOutOfRange { .. })
    ));
    let mut forged = token.clone();
    forged.signed.statement.term += 1;
    assert_eq!(
        verifier.verify_statement(&forged, entry.index),
        Err(VerifyError::BadSignature { leader_id: 1 })
    );
}

#[test]
fn an_index_outside_the_statement_is_named() {
    let entries = advance(4);
    let token = sign(&signer(1), &entries).token(103).unwrap();
    let mut verifier = Verifier::new(cluster_keys());
    let mut outside = entries[3].clone();
    outside.index = 104;
    assert_eq!(
        verify(&mut verifier, &token, &outside),
        Err(VerifyError::IndexOutOfRange {
            index: 104,
            first_index: 100,
            last_index: 103
        })
    );
}

#[test]
fn altering_any_statement_field_fails() {
    let entries = advance(6);
    let entry = &entries[3];
    let good = sign(&signer(1), &entries).token(entry.index).unwrap();
    let mut verifier = Verifier::new(cluster_keys());
    verify(&mut verifier, &good, entry).unwrap();
    let alter = |change: &dyn Fn(&mut Statement)| {
        let mut token = good.clone();
        change(&mut token.signed.statement);
        token
    };
    let cases: Vec<(&str, Token)> = vec![
        ("term", alter(&|s| s.term += 1)),
        ("leader id", alter(&|s| s.leader_id = 2)),
        ("first index", alter(&|s| s.first_index -= 1)),
        ("first index up", alter(&|s| s.first_index += 1)),
        ("last index", alter(&|s| s.last_index += 1)),
        ("last index down", alter(&|s| s.last_index -= 1)),
        ("root", alter(&|s| s.root[31] ^= 0x80)),
    ];
    for (name, token) in cases {
        assert!(
            verify(&mut verifier, &token, entry).is_err(),
            "altered {name} verified"
        );
    }
    assert_eq!(
        verify(&mut verifier, &alter(&|s| s.term += 1), entry),
        Err(VerifyError::BadSignature { leader_id: 1 })
    );
    assert_eq!(
        verify(&mut verifier, &alter(&|s| s.root[0] ^= 1), entry),
        Err(VerifyError::EntryMismatch { index: entry.index })
    );
    let other_cluster = alter(&|s| s.cluster_id = ClusterId([0; 16]));
    assert_eq!(
        verify(&mut verifier, &other_cluster, entry),
        Err(VerifyError::WrongCluster {
            expected: CLUSTER,
            found: ClusterId([0; 16])
        })
    );
}

#[test]
fn altering_the_path_fails() {
    let entries = advance(37);
    let proof = sign(&signer(1), &entries);
    let mut verifier = Verifier::new(cluster_keys());
    for entry in &entries {
        let good = proof.token(entry.index).unwrap();
        verify(&mut verifier, &good, entry).unwrap();
        for level in 0..good.path.len() {
            for bit in [0u8, 7] {
                let mut token = good.clone();
                token.path[level][level % 32] ^= 1 << bit;
                assert_eq!(
                    verify(&mut verifier, &token, entry),
                    Err(VerifyError::EntryMismatch { index: entry.index })
                );
            }
            let mut swapped = good.clone();
            if level + 1 < good.path.len() && good.path[level] != good.path[level + 1] {
                swapped.path.swap(level, level + 1);
                assert!(verify(&mut verifier, &swapped, entry).is_err());
            }
        }
        let mut longer = good.clone();
        longer.path.push([0; 32]);
        assert!(matches!(
            verify(&mut verifier, &longer, entry),
            Err(VerifyError::WrongPathLength { .. })
        ));
        let mut shorter = good.clone();
        if shorter.path.pop().is_some() {
            assert!(matches!(
                verify(&mut verifier, &shorter, entry),
                Err(VerifyError::WrongPathLength { .. })
            ));
        }
    }
}

#[test]
fn altering_the_signature_fails_even_with_the_statement_cached() {
    let entries = advance(3);
    let entry = &entries[1];
    let good = sign(&signer(1), &entries).token(entry.index).unwrap();
    let mut verifier = Verifier::new(cluster_keys());
    verify(&mut verifier, &good, entry).unwrap();
    for byte in 0..SIGNATURE_LEN {
        for bit in [0u8, 5, 7] {
            let mut token = good.clone();
            token.signed.signature[byte] ^= 1 << bit;
            assert_eq!(
                verify(&mut verifier, &token, entry),
                Err(VerifyError::BadSignature { leader_id: 1 }),
                "signature byte {byte} bit {bit}"
            );
        }
    }
    // The good token is still accepted afterwards.
    verify(&mut verifier, &good, entry).unwrap();
}

#[test]
fn a_key_not_in_the_file_fails() {
    let entries = advance(4);
    let entry = &entries[2];
    let mut verifier = Verifier::new(cluster_keys());
    // Node 1's id, an outsider's key.
    let impostor = Signer::new(CLUSTER, 1, node_key(99));
    let token = sign(&impostor, &entries).token(entry.index).unwrap();
    assert_eq!(
        verify(&mut verifier, &token, entry),
        Err(VerifyError::BadSignature { leader_id: 1 })
    );
    // Another voter's key, claiming to be node 1.
    let token = sign(&Signer::new(CLUSTER, 1, node_key(2)), &entries)
        .token(entry.index)
        .unwrap();
    assert_eq!(
        verify(&mut verifier, &token, entry),
        Err(VerifyError::BadSignature { leader_id: 1 })
    );
    // A node the file does not list.
    let outsider = Signer::new(CLUSTER, 9, node_key(9));
    let token = sign(&outsider, &entries).token(entry.index).unwrap();
    assert_eq!(
        verify(&mut verifier, &token, entry),
        Err(VerifyError::UnknownSigner { leader_id: 9 })
    );
    // Any voter in the file may sign (whoever led that term).
    let token = sign(&signer(3), &entries).token(entry.index).unwrap();
    verify(&mut verifier, &token, entry).unwrap();
    assert_eq!(verifier.cached_statements(), 1);
}

#[test]
fn the_cache_is_bounded_and_optional() {
    let mut verifier = Verifier::with_cache_entries(cluster_keys(), 2);
    for first in 0..5u64 {
        let mut entries = advance(3);
        for entry in &mut entries {
            entry.index += 10 * first;
        }
        let proof = sign(&signer(1), &entries);
        for entry in &entries {
            verify(&mut verifier, &proof.token(entry.index).unwrap(), entry).unwrap();
        }
        assert!(verifier.cached_statements() <= 2);
    }
    let mut uncached = Verifier::with_cache_entries(cluster_keys(), 0);
    let entries = advance(2);
    let token = sign(&signer(1), &entries).token(101).unwrap();
    verify(&mut uncached, &token, &entries[1]).unwrap();
    assert_eq!(uncached.cached_statements(), 0);
}

#[test]
fn signing_rejects_bad_advances() {
    let signer = signer(1);
    let entries = advance(4);
    let views = || entries.iter().map(Entry::view);
    assert_eq!(
        signer.sign_entries(TERM, std::iter::empty()).unwrap_err(),
        ProofError::Empty
    );
    assert_eq!(
        signer
            .sign_entries(TERM, views().filter(|e| e.index != 102))
            .unwrap_err(),
        ProofError::NotContiguous {
            expected: 102,
            found: 103
        }
    );
    assert_eq!(
        signer.sign_entries(TERM - 1, views()).unwrap_err(),
        ProofError::TermAfterStatement {
            index: 101,
            entry_term: TERM,
            term: TERM - 1
        }
    );
    assert!(matches!(
        signer.sign_leaves(0, 1, vec![[0; 32]]),
        Err(ProofError::Malformed { .. })
    ));
    assert!(matches!(
        signer.sign_leaves(TERM, 0, vec![[0; 32]]),
        Err(ProofError::Malformed { .. })
    ));
    assert!(matches!(
        signer.sign_leaves(TERM, u64::MAX, vec![[0; 32]; 2]),
        Err(ProofError::Malformed { .. })
    ));
    assert!(matches!(
        Signer::new(CLUSTER, 0, node_key(1)).sign_leaves(TERM, 1, vec![[0; 32]]),
        Err(ProofError::Malformed { .. })
    ));
    let mut at_the_end = advance(3);
    for (i, entry) in at_the_end.iter_mut().enumerate() {
        entry.index = (u64::MAX - 1).wrapping_add(i as u64);
    }
    assert_eq!(
        signer
            .sign_entries(TERM, at_the_end.iter().map(Entry::view))
            .unwrap_err(),
        ProofError::IndexOverflow
    );
    assert_eq!(
        signer.sign_leaves(TERM, 1, Vec::new()).unwrap_err(),
        ProofError::Empty
    );
}

#[test]
fn decoding_names_what_is_wrong() {
    let entries = advance(5);
    let token = sign(&signer(1), &entries).token(102).unwrap();
    let bytes = token.to_bytes();
    assert_eq!(bytes.len(), TOKEN_HEADER_LEN + 32 * 3);
    let with = |at: usize, value: u8| {
        let mut copy = bytes.clone();
        copy[at] = value;
        Token::from_bytes(&copy)
    };
    assert_eq!(
        Token::from_bytes(&bytes[..10]),
        Err(TokenDecodeError::TooShort { len: 10 })
    );
    assert_eq!(with(0, 2), Err(TokenDecodeError::UnsupportedVersion(2)));
    let other_hash = if TokenHash::ID == 1 { 2 } else { 1 };
    assert_eq!(
        with(1, other_hash),
        Err(TokenDecodeError::UnsupportedHash { found: other_hash })
    );
    assert_eq!(
        with(TOKEN_HEADER_LEN - 1, 65),
        Err(TokenDecodeError::PathTooLong { len: 65 })
    );
    assert_eq!(
        with(TOKEN_HEADER_LEN - 1, 2),
        Err(TokenDecodeError::WrongLength {
            expected: TOKEN_HEADER_LEN + 64,
            actual: bytes.len()
        })
    );
    // term (offset 2 + 16) set to 0.
    let mut zero_term = bytes.clone();
    zero_term[18..26].fill(0);
    assert!(matches!(
        Token::from_bytes(&zero_term),
        Err(TokenDecodeError::MalformedStatement { term: 0, .. })
    ));
    let mut text = token.to_text();
    text.push('=');
    assert!(matches!(
        Token::from_text(&text),
        Err(TokenDecodeError::NotBase64(_))
    ));
    assert!(matches!(
        Token::from_text(&"A".repeat(TOKEN_TEXT_LEN_MAX + 1)),
        Err(TokenDecodeError::TextTooLong { .. })
    ));
    let mut verifier = Verifier::new(cluster_keys());
    assert!(matches!(
        verifier.verify_text("!!", b"", 0, 0, 0, 0),
        Err(VerifyError::Decode(TokenDecodeError::NotBase64(_)))
    ));
}

#[test]
fn the_longest_token_fits_the_text_bound() {
    let token = Token {
        signed: *sign(&signer(1), &advance(1)).signed(),
        path: vec![[0xff; 32]; TOKEN_PATH_LEN_MAX],
    };
    assert_eq!(token.to_bytes().len(), TOKEN_BYTES_MAX);
    assert!(token.to_text().len() <= TOKEN_TEXT_LEN_MAX);
    assert_eq!(Token::from_text(&token.to_text()), Ok(token));
}
