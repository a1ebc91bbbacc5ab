use super::*;
use proptest::prelude::*;

fn ids() -> IdSet {
    IdSet::new((7, 9), 86_400_000, 1_000_000)
}

fn batch(n: usize, tag: &str) -> Batch {
    let mut ob = Outbox::starting_at(1, 0);
    Batch {
        at_ms: 1_700_000_000_000,
        changes: (0..n)
            .map(|i| {
                let v = (i % 3 != 0).then(|| Bytes::from(format!("{{\"v\":\"{tag}{i}\"}}")));
                (format!("contact.c-{i}"), v)
            })
            .collect(),
        outbox: (0..n)
            .map(|i| {
                ob.number(
                    format!("omni.offer.a{i}"),
                    format!("off-{tag}{i}"),
                    Bytes::from(vec![b'x'; 40]),
                )
            })
            .collect(),
        published_through: 0,
        ids: (0..n as u64).map(|i| i * 7919 + 1).collect(),
    }
}

fn joined(parts: &[Vec<u8>]) -> Batch {
    let mut all = Batch::default();
    for p in parts {
        let Entry::Part { batch, .. } = decode_entry(p).expect("decodes") else {
            panic!("not a part")
        };
        all.at_ms = batch.at_ms;
        all.published_through = batch.published_through;
        all.changes.extend(batch.changes);
        all.outbox.extend(batch.outbox);
        all.ids.extend(batch.ids);
    }
    all
}

#[test]
fn a_batch_splits_into_parts_under_the_limit_and_joins_back() {
    let b = batch(200, "a");
    let parts = encode_batch(&b, 2_000);
    assert!(parts.len() > 5, "{} parts", parts.len());
    assert!(parts.iter().all(|p| p.len() <= 2_000 + 64), "each part near the limit");
    for (i, p) in parts.iter().enumerate() {
        let Entry::Part { part, last, .. } = decode_entry(p).expect("decodes") else {
            panic!()
        };
        assert_eq!((part as usize, last), (i, i + 1 == parts.len()));
    }
    assert_eq!(joined(&parts), b);
    assert_eq!(encode_batch(&b, 1 << 20).len(), 1);
}

#[test]
fn a_batch_is_applied_only_when_its_last_part_is_read() {
    let parts = encode_batch(&batch(50, "a"), 600);
    assert!(parts.len() >= 3);
    let mut d = Durable::new(ids());
    for (i, p) in parts[..parts.len() - 1].iter().enumerate() {
        d.apply_entry(i as u64 + 1, p).expect("applies");
    }
    assert!(d.records.is_empty() && d.outbox.is_empty() && d.ids.is_empty());
    // The writer died before its last part; the next writer starts a group.
    let next = encode_batch(&batch(2, "b"), 1 << 20);
    d.apply_entry(100, &next[0]).expect("applies");
    assert_eq!(d.records.len(), 1, "only the complete batch: {:?}", d.records.keys());
    assert_eq!(d.outbox.len(), 2);
    assert_eq!(d.tip, 100);
}

#[test]
fn snapshot_then_tail_equals_the_whole_journal() {
    let entries: Vec<Vec<u8>> = (0..6)
        .flat_map(|i| {
            let mut b = batch(30, &format!("r{i}"));
            for o in &mut b.outbox {
                o.seq += 30 * i as u64;
            }
            b.published_through = (30 * i as u64).saturating_sub(10);
            encode_batch(&b, 3_000)
        })
        .collect();
    let mut whole = Durable::new(ids());
    for (i, e) in entries.iter().enumerate() {
        whole.apply_entry(i as u64 + 1, e).expect("applies");
    }
    // A snapshot after the first half, then the rest replayed.
    let mut half = Durable::new(ids());
    let cut = entries.len() / 2;
    for (i, e) in entries[..cut].iter().enumerate() {
        half.apply_entry(i as u64 + 1, e).expect("applies");
    }
    // (a cut in the middle of a group is fine: the group is whole on replay)
    let records: Vec<(String, Vec<u8>)> = half.records.iter().map(|(k, v)| (k.clone(), v.to_vec())).collect();
    let chunks = half.snapshot_chunks(records.into_iter(), cut as u64, 1_000);
    assert!(chunks.len() > 3);
    let n = chunks.len() as u32;
    let mut restored = from_snapshot(
        chunks.into_iter().map(Bytes::from),
        cut as u64,
        n,
        86_400_000,
        1_000_000,
    )
    .expect("snapshot reads");
    assert_eq!(restored.ids.key(), (7, 9));
    // Replay from the start of the group the cut fell in.
    let group_start = (0..cut)
        .rev()
        .find(|i| matches!(decode_entry(&entries[*i]), Ok(Entry::Part { part: 0, .. })))
        .unwrap_or(0);
    for (i, e) in entries.iter().enumerate().skip(group_start) {
        restored.apply_entry(i as u64 + 1, e).expect("applies");
    }
    assert_eq!(restored.records, whole.records);
    let pend = |d: &Durable| d.outbox.pending().map(|o| o.seq).collect::<Vec<_>>();
    assert_eq!(pend(&restored), pend(&whole));
    assert_eq!(restored.ids.len(), whole.ids.len());
    assert_eq!(restored.outbox.next_seq(), whole.outbox.next_seq());
}

#[test]
fn a_snapshot_missing_a_chunk_is_refused() {
    let mut d = Durable::new(ids());
    d.apply_entry(1, &encode_batch(&batch(40, "a"), 1 << 20)[0])
        .expect("applies");
    let records: Vec<(String, Vec<u8>)> = d.records.iter().map(|(k, v)| (k.clone(), v.to_vec())).collect();
    let mut chunks = d.snapshot_chunks(records.into_iter(), 1, 500);
    let n = chunks.len() as u32;
    chunks.remove(1);
    let e = from_snapshot(chunks.into_iter().map(Bytes::from), 1, n, 1000, 10)
        .err()
        .expect("refused");
    assert!(e.0.contains("expected"), "{e}");
}

#[test]
fn markers_round_trip() {
    let m = Marker {
        covers: 42,
        first_chunk: 7,
        chunks: 3,
    };
    assert_eq!(decode_entry(&encode_marker(&m)), Ok(Entry::Marker(m)));
}

#[test]
fn an_unknown_version_says_so() {
    let mut e = encode_marker(&Marker {
        covers: 1,
        first_chunk: 1,
        chunks: 1,
    });
    e[1] = 9;
    let err = decode_entry(&e).expect_err("refused");
    assert!(err.0.contains("version 9"), "{err}");
}

proptest! {
    /// The decoders are fed what is on the state stream; whatever is there
    /// (truncated, corrupted, foreign) gives a value or an error, no panic.
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_entry(&bytes);
        let _ = decode_chunk(&bytes);
    }

    #[test]
    fn corrupting_a_valid_entry_never_panics(n in 1usize..20, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut e = encode_batch(&batch(n, "p"), 1 << 20).remove(0);
        for (at, v) in flips {
            let i = at % e.len();
            e[i] = v;
        }
        let _ = decode_entry(&e);
        let c = cut % (e.len() + 1);
        let _ = decode_entry(&e[..c]);
    }
}

#[test]
fn parts_are_compressed_and_read_back_and_plain_parts_are_still_read() {
    let b = batch(200, "z");
    let packed = encode_batch(&b, 1 << 20);
    assert_eq!(packed.len(), 1);
    assert_eq!(packed[0][2], KIND_PART_LZ4, "compressed");
    assert_eq!(joined(&packed), b);
    // The same part as an earlier release wrote it (plain, kind 1).
    let plain_len = u32::from_le_bytes([packed[0][3], packed[0][4], packed[0][5], packed[0][6]]) as usize;
    let body = lz4_flex::block::decompress(&packed[0][7..], plain_len).expect("inflates");
    let mut plain = vec![MAGIC, VERSION, KIND_PART];
    plain.extend_from_slice(&body);
    assert!(
        packed[0].len() * 2 < plain.len(),
        "{} vs {}",
        packed[0].len(),
        plain.len()
    );
    assert_eq!(joined(&[plain]), b);
    // A claimed length the packed bytes cannot hold is refused unallocated.
    let mut bomb = vec![MAGIC, VERSION, KIND_PART_LZ4];
    bomb.extend_from_slice(&(200u32 << 20).to_le_bytes());
    bomb.extend_from_slice(&[0u8; 8]);
    let err = decode_entry(&bomb).expect_err("refused");
    assert!(err.0.contains("cannot hold"), "{err}");
}

#[test]
fn the_messages_after_a_number_are_found_in_order() {
    let mut ob = Outbox::starting_at(1, 0);
    for i in 0..10 {
        let m = ob.number(format!("s{i}"), format!("id{i}"), Bytes::from_static(b"{}"));
        ob.restore(m);
    }
    ob.mark_published(3);
    let seqs = |after: u64| ob.pending_after(after).map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(seqs(0), (4..=10).collect::<Vec<_>>());
    assert_eq!(seqs(7), vec![8, 9, 10]);
    assert_eq!(seqs(10), Vec::<u64>::new());
    assert_eq!(ob.pending_after(5).next_back().map(|m| m.seq), Some(10));
}
