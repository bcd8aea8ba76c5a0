//! The chain of configuration links: whose key may sign what, and what a
//! verifier refuses once it knows a configuration change.

use super::*;
use crate::core::{Member, MemberRole, Membership};
use crate::node::members::MemberInfo;
use bytes::Bytes;

/// A configuration of `voters` (and `learners`), each member's
/// information naming its test key.
fn config(voters: &[u8], learners: &[u8]) -> Bytes {
    let member = |id: u8, role| Member {
        id: u64::from(id),
        role,
        info: MemberInfo {
            peer_addr: "127.0.0.1:1".parse().unwrap(),
            client_addr: "127.0.0.1:2".parse().unwrap(),
            gossip_addr: None,
            public_key: node_key(id).public_key().to_bytes(),
        }
        .encode(),
    };
    let members = voters
        .iter()
        .map(|&id| member(id, MemberRole::Voter))
        .chain(learners.iter().map(|&id| member(id, MemberRole::Learner)))
        .collect();
    Membership::new(members).unwrap().encode()
}

fn config_entry(index: u64, payload: Bytes) -> Entry {
    Entry {
        kind: BatchKind::Config,
        index,
        term: TERM,
        id: 0,
        ts: 1_000 + index,
        payload: payload.to_vec(),
    }
}

fn message(index: u64, id: u64) -> Entry {
    Entry {
        kind: BatchKind::Entries,
        index,
        term: TERM,
        id,
        ts: 1_000 + index,
        payload: format!("m{index}").into_bytes(),
    }
}

/// `entries` signed by `signer` in one statement.
fn sign(signer_id: u8, entries: &[Entry]) -> CommitProof {
    signer(signer_id)
        .sign_entries(TERM, entries.iter().map(Entry::view))
        .unwrap()
}

/// The link of the configuration entry that `proof` covers as its last.
fn link(entry: &Entry, proof: &CommitProof) -> ConfigLink {
    ConfigLink {
        index: entry.index,
        term: entry.term,
        id: entry.id,
        ts: entry.ts,
        payload: Bytes::from(entry.payload.clone()),
        token: proof.token(entry.index).unwrap(),
    }
}

fn verify(verifier: &mut Verifier, entry: &Entry, proof: &CommitProof) -> Result<(), VerifyError> {
    verifier.verify(
        &proof.token(entry.index).unwrap(),
        &entry.payload,
        entry.id,
        entry.index,
        entry.term,
        entry.ts,
    )
}

#[test]
fn a_node_added_later_signs_once_the_verifier_follows_its_link() {
    // Index 10 adds voter 4 (signed by voter 1 of cluster.keys); 11 is
    // signed by voter 4.
    let add = config_entry(10, config(&[1, 2, 3, 4], &[]));
    let add_proof = sign(1, std::slice::from_ref(&add));
    let after = message(11, 5);
    let after_proof = sign(4, std::slice::from_ref(&after));
    let mut verifier = Verifier::new(cluster_keys());
    assert_eq!(
        verify(&mut verifier, &after, &after_proof),
        Err(VerifyError::UnknownSigner { leader_id: 4 })
    );
    let link = link(&add, &add_proof);
    // The link round-trips through its text.
    assert_eq!(ConfigLink::from_text(&link.to_text()).unwrap(), link);
    assert_eq!(verifier.learn(&link), Ok(true));
    assert_eq!(verifier.learn(&link), Ok(false), "a known link is no news");
    verify(&mut verifier, &after, &after_proof).unwrap();
    // The configuration entry itself verifies as an entry too.
    verify(&mut verifier, &add, &add_proof).unwrap();
}

#[test]
fn a_removed_voters_key_is_refused_after_its_removal() {
    let remove = config_entry(10, config(&[1, 2], &[]));
    let remove_proof = sign(1, std::slice::from_ref(&remove));
    let before = message(9, 4);
    let before_proof = sign(3, std::slice::from_ref(&before));
    let after = message(11, 5);
    let forged = sign(3, std::slice::from_ref(&after));
    let mut verifier = Verifier::new(cluster_keys());
    verifier.learn(&link(&remove, &remove_proof)).unwrap();
    assert_eq!(
        verify(&mut verifier, &after, &forged),
        Err(VerifyError::NotAVoter {
            leader_id: 3,
            config_index: 10
        })
    );
    // What voter 3 signed while it was one still verifies.
    verify(&mut verifier, &before, &before_proof).unwrap();
    // A statement of the removed voter that runs past its removal, so as
    // to cover later entries under the old configuration, is refused too.
    let spanning = [message(9, 4), remove.clone(), message(11, 5)];
    let spanning_proof = sign(3, &spanning);
    assert_eq!(
        verify(&mut verifier, &spanning[2], &spanning_proof),
        Err(VerifyError::SpansConfiguration {
            first_index: 9,
            last_index: 11,
            config_index: 10
        })
    );
    // The remaining voters sign on.
    verify(
        &mut verifier,
        &after,
        &sign(2, std::slice::from_ref(&after)),
    )
    .unwrap();
}

#[test]
fn a_link_must_be_signed_under_the_configuration_before_it() {
    // Node 4 signs its own admission: not a voter before it.
    let add = config_entry(10, config(&[1, 2, 3, 4], &[]));
    let self_signed = sign(4, std::slice::from_ref(&add));
    let mut verifier = Verifier::new(cluster_keys());
    assert!(matches!(
        verifier.learn(&link(&add, &self_signed)),
        Err(ChainError::Unproven {
            index: 10,
            error: VerifyError::UnknownSigner { leader_id: 4 }
        })
    ));
    // A removed voter cannot extend the chain past its removal.
    let remove = config_entry(10, config(&[1, 2], &[]));
    verifier
        .learn(&link(&remove, &sign(1, std::slice::from_ref(&remove))))
        .unwrap();
    let readd = config_entry(12, config(&[1, 2, 3], &[]));
    assert!(matches!(
        verifier.learn(&link(&readd, &sign(3, std::slice::from_ref(&readd)))),
        Err(ChainError::Unproven {
            index: 12,
            error: VerifyError::NotAVoter { leader_id: 3, .. }
        })
    ));
    // A statement that runs past the configuration entry is no link.
    let entries = [config_entry(14, config(&[1, 2, 3], &[])), message(15, 6)];
    assert!(matches!(
        verifier.learn(&link(&entries[0], &sign(1, &entries))),
        Err(ChainError::Unproven {
            error: VerifyError::SpansConfiguration { .. },
            ..
        })
    ));
}

#[test]
fn a_link_that_contradicts_the_chain_or_is_no_configuration_is_refused() {
    let mut verifier = Verifier::new(cluster_keys());
    let remove = config_entry(10, config(&[1, 2], &[]));
    verifier
        .learn(&link(&remove, &sign(1, std::slice::from_ref(&remove))))
        .unwrap();
    // Another configuration at a known index, or one slipped in before
    // the newest known.
    let other = config_entry(10, config(&[1, 3], &[]));
    assert!(matches!(
        verifier.learn(&link(&other, &sign(1, std::slice::from_ref(&other)))),
        Err(ChainError::Conflict { index: 10, .. })
    ));
    let earlier = config_entry(8, config(&[1, 2, 3, 4], &[]));
    assert!(matches!(
        verifier.learn(&link(&earlier, &sign(1, std::slice::from_ref(&earlier)))),
        Err(ChainError::Conflict { index: 8, .. })
    ));
    // A client message whose payload is a configuration is not one.
    let mut forged = config_entry(12, config(&[1, 2, 9], &[]));
    forged.kind = BatchKind::Entries;
    forged.id = 77;
    assert!(matches!(
        verifier.learn(&link(&forged, &sign(1, std::slice::from_ref(&forged)))),
        Err(ChainError::NotConfiguration { index: 12, .. })
    ));
    // Learners do not sign.
    let learner = config_entry(13, config(&[1, 2], &[5]));
    verifier
        .learn(&link(&learner, &sign(2, std::slice::from_ref(&learner))))
        .unwrap();
    let after = message(14, 8);
    assert!(matches!(
        verify(
            &mut verifier,
            &after,
            &sign(5, std::slice::from_ref(&after))
        ),
        Err(VerifyError::NotAVoter { leader_id: 5, .. })
    ));
}

#[test]
fn link_decoding_never_panics_and_names_the_problem() {
    let add = config_entry(10, config(&[1, 2, 3, 4], &[]));
    let bytes = link(&add, &sign(1, std::slice::from_ref(&add))).to_bytes();
    for len in 0..bytes.len() {
        assert!(
            ConfigLink::from_bytes(&bytes[..len]).is_err(),
            "prefix {len}"
        );
    }
    let mut wrong_version = bytes.clone();
    wrong_version[0] = 9;
    assert_eq!(
        ConfigLink::from_bytes(&wrong_version),
        Err(ChainError::Malformed("unknown version 9".into()))
    );
    assert!(ConfigLink::from_text("!!").is_err());
    assert!(ConfigLink::from_text(&"A".repeat(LINK_BYTES_MAX)).is_err());
}

#[test]
fn a_schedule_cuts_statements_at_configuration_entries() {
    let mut schedule = KeySchedule::new(&cluster_keys());
    let membership = Membership::decode(&config(&[1, 2, 4], &[])).unwrap();
    assert!(schedule.push_trusted(10, &membership));
    assert!(!schedule.push_trusted(10, &membership));
    assert_eq!(schedule.cuts(5, 20), vec![10, 20]);
    assert_eq!(schedule.cuts(10, 20), vec![10, 20]);
    assert_eq!(schedule.cuts(11, 20), vec![20]);
    assert_eq!(schedule.cuts(5, 10), vec![10]);
    assert!(
        schedule.may_sign(3, 10),
        "3 signs the entries up to its removal"
    );
    assert!(!schedule.may_sign(3, 11));
    assert!(schedule.may_sign(4, 11));
    assert!(!schedule.may_sign(4, 10));
}
