//! The free-agent index alone: walks in strategy order, updates that move
//! only what changed, list order under any insert order, fits and shares.

use super::*;

fn key(ix: u32, since_s: i64, load: u64, cap: u64) -> Entry {
    let since = nanos(DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(since_s));
    Entry {
        free: [true, true, false, false],
        idle: IdleKey { since, tie: tie(0, ix) },
        load: LoadKey {
            share: Share::new(load, cap),
            since,
            tie: tie(0, ix),
        },
        // Offered in the reverse order of their idle time.
        rr: RrKey {
            seq: 100 - since_s as u64,
            tie: tie(0, ix),
        },
    }
}

fn order(ix: &AgentIndex, need: &[(SkillIx, u8)], s: Strategy) -> Vec<u32> {
    let mut v = Vec::new();
    let primary = need.iter().max_by_key(|(_, l)| *l).copied();
    let (pool, walked) = ix.walk(Channel::Chat, need, s, primary, |a| {
        v.push(a);
        Step::Next
    });
    assert!(walked <= pool);
    v
}

#[test]
fn walks_only_holders_at_the_level_in_strategy_order() {
    let mut ix = AgentIndex::new([Strategy::LeastLoaded].into_iter(), true);
    // Agent 0: skill 1 at 3, idle since 10, load 1/2.
    ix.insert(&key(0, 10, 1, 2), &[(1, 3)]);
    // Agent 1: skill 1 at 7, idle since 20, load 0/4.
    ix.insert(&key(1, 20, 0, 4), &[(1, 7), (2, 5)]);
    // Agent 2: skill 2 only, idle since 5.
    ix.insert(&key(2, 5, 0, 1), &[(2, 9)]);
    assert_eq!(order(&ix, &[], Strategy::LongestIdle), [2, 0, 1]);
    assert_eq!(order(&ix, &[(1, 3)], Strategy::LongestIdle), [0, 1]);
    assert_eq!(order(&ix, &[(1, 3)], Strategy::LeastLoaded), [1, 0]);
    assert_eq!(order(&ix, &[(1, 4)], Strategy::LongestIdle), [1]);
    // Skill 2 has two holders, skill 1 at >= 4 only one: the walk uses skill 1.
    assert_eq!(order(&ix, &[(1, 4), (2, 1)], Strategy::LongestIdle), [1]);
    assert!(order(&ix, &[(3, 1)], Strategy::LongestIdle).is_empty());
    ix.remove(&key(1, 20, 0, 4), &[(1, 7), (2, 5)]);
    assert_eq!(order(&ix, &[(1, 3)], Strategy::LeastLoaded), [0]);
    assert_eq!(ix.any[Channel::Voice.index()].idle.len, 0);
}

#[test]
fn round_robin_and_most_skilled_walk_their_own_order() {
    let strategies = [Strategy::RoundRobin, Strategy::MostSkilled];
    let mut ix = AgentIndex::new(strategies.into_iter(), true);
    ix.insert(&key(0, 10, 1, 2), &[(1, 3)]);
    ix.insert(&key(1, 20, 0, 4), &[(1, 7), (2, 5)]);
    ix.insert(&key(2, 5, 0, 1), &[(1, 7), (2, 9)]);
    ix.insert(&key(3, 30, 0, 1), &[(1, 9)]);
    // Round robin: the oldest last offer first (here: the most recently idle).
    assert_eq!(order(&ix, &[(1, 1)], Strategy::RoundRobin), [3, 1, 0, 2]);
    // Most skilled: level 9, then the two at 7 by idle time, then 3.
    assert_eq!(order(&ix, &[(1, 1)], Strategy::MostSkilled), [3, 2, 1, 0]);
    // The primary skill is the one required at the highest level.
    assert_eq!(order(&ix, &[(1, 1), (2, 4)], Strategy::MostSkilled), [2, 1]);
    // Least loaded is not kept: its queues fall back to the idle order.
    assert_eq!(order(&ix, &[(1, 1)], Strategy::LeastLoaded), [2, 0, 1, 3]);
}

#[test]
fn an_update_moves_only_the_changed_keys_and_channels_and_keeps_every_order() {
    let strategies = [Strategy::LeastLoaded, Strategy::RoundRobin];
    let mut ix = AgentIndex::new(strategies.into_iter(), true);
    let skills = [(1, 3)];
    ix.insert(&key(0, 10, 1, 2), &skills);
    ix.insert(&key(1, 20, 0, 4), &skills);
    // Agent 0 frees its slot (load only), then agent 1 takes an offer
    // (idle, load and round robin at once) and stops being free on email.
    let before = key(0, 10, 1, 2);
    let freed = Entry {
        load: LoadKey {
            share: Share::new(0, 2),
            ..before.load
        },
        ..before
    };
    ix.update(Some(&before), Some(&freed), &skills);
    let mut busy = key(1, 30, 1, 4);
    busy.free = [false, true, false, false];
    ix.update(Some(&key(1, 20, 0, 4)), Some(&busy), &skills);
    // The same as building it afresh from the new entries.
    let mut fresh = AgentIndex::new(strategies.into_iter(), true);
    fresh.insert(&freed, &skills);
    fresh.insert(&busy, &skills);
    for s in [Strategy::LongestIdle, Strategy::LeastLoaded, Strategy::RoundRobin] {
        assert_eq!(order(&ix, &[(1, 1)], s), order(&fresh, &[(1, 1)], s), "{s:?}");
    }
    assert_eq!(order(&ix, &[(1, 1)], Strategy::LeastLoaded), [0, 1]);
    let email = |ix: &AgentIndex| {
        let t = &ix.any[Channel::Email.index()];
        (t.idle.len, t.load.len(), t.rr.len)
    };
    assert_eq!(email(&ix), (1, 1, 1), "agent 1 left the email tiers");
    assert_eq!(email(&ix), email(&fresh));
    assert_eq!(counts(&ix), counts(&fresh));
    assert_eq!(counts(&ix).iter().sum::<usize>(), 3, "two agents on chat, one on email");
    ix.update(Some(&freed), None, &skills);
    ix.update(Some(&busy), None, &skills);
    assert!(order(&ix, &[], Strategy::LongestIdle).is_empty());
    assert_eq!(counts(&ix).iter().sum::<usize>(), 0);
    assert_eq!(
        ix.walk(Channel::Chat, &[(1, 1)], Strategy::LongestIdle, None, |_| Step::Next),
        (0, 0)
    );
}

/// The tier counts, checked against the tiers' own lengths.
fn counts(ix: &AgentIndex) -> Vec<usize> {
    let mut out = Vec::new();
    for (tiers, counts) in ix.by_skill.iter().zip(&ix.counts) {
        for (i, n) in counts.0.iter().enumerate() {
            let len = tiers.as_ref().map_or(0, |t| t[i].len());
            assert_eq!(*n as usize, len, "count of a tier");
            out.push(len);
        }
    }
    out
}

/// The lists (and the least-loaded buckets) keep key order whatever the
/// order of inserts: keys that
/// go back in time (a clock stepped back), ties, a bulk load sorted at
/// its end, agents leaving and coming back with more skills (a block
/// moved).
#[test]
fn lists_keep_key_order_under_any_insert_order() {
    let strategies = [Strategy::LongestIdle, Strategy::RoundRobin, Strategy::LeastLoaded];
    let mut seed = 7u64;
    let mut rnd = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for bulk in [false, true] {
        let mut ix = AgentIndex::new(strategies.into_iter(), true);
        let mut have: Vec<Option<(Entry, Skills)>> = vec![None; 40];
        if bulk {
            ix.begin_bulk();
        }
        for step in 0..2_000 {
            let ax = rnd(40) as u32;
            let skills: Skills = (0..1 + rnd(4)).map(|s| (s as u32, 1 + rnd(3) as u8)).collect();
            let mut e = key(ax, rnd(50) as i64, rnd(4), 1 + rnd(3));
            e.rr.seq = rnd(30);
            e.free = [rnd(2) == 0, true, false, false];
            match have[ax as usize].take() {
                // Leave, or move under new keys with the same skills.
                Some((old, sk)) if rnd(3) == 0 => ix.remove(&old, &sk),
                Some((old, sk)) => {
                    ix.update(Some(&old), Some(&e), &sk);
                    have[ax as usize] = Some((e, sk));
                }
                None => {
                    ix.insert(&e, &skills);
                    have[ax as usize] = Some((e, skills));
                }
            }
            if bulk && step == 1_000 {
                ix.end_bulk();
            }
        }
        for need in [vec![], vec![(0, 1)], vec![(1, 2)], vec![(2, 3), (0, 1)]] {
            for s in strategies {
                let mut want: Vec<(Share, u64, i64, u64, u32)> = have
                    .iter()
                    .flatten()
                    .filter(|(e, sk)| e.free[Channel::Chat.index()] && fits(sk, &need))
                    .map(|(e, _)| match s {
                        Strategy::RoundRobin => (Share::new(0, 1), e.rr.seq, 0, e.rr.tie, e.rr.ix()),
                        Strategy::LeastLoaded => (e.load.share, 0, e.load.since, e.load.tie, e.load.ix()),
                        _ => (Share::new(0, 1), 0, e.idle.since, e.idle.tie, e.idle.ix()),
                    })
                    .collect();
                want.sort_unstable();
                let want: Vec<u32> = want.into_iter().map(|w| w.4).collect();
                let got: Vec<u32> = order(&ix, &need, s)
                    .into_iter()
                    .filter(|ax| have[*ax as usize].as_ref().is_some_and(|(_, sk)| fits(sk, &need)))
                    .collect();
                assert_eq!(got, want, "bulk {bulk}, need {need:?}, {s:?}");
            }
        }
    }
}

#[test]
fn fits_checks_every_requirement_and_level() {
    assert!(fits(&[(1, 3), (4, 9)], &[]));
    assert!(fits(&[(1, 3), (4, 9)], &[(4, 9)]));
    assert!(fits(&[(1, 3), (4, 9)], &[(1, 2), (4, 1)]));
    assert!(!fits(&[(1, 3), (4, 9)], &[(1, 4)]));
    assert!(!fits(&[(1, 3), (4, 9)], &[(2, 1)]));
    assert!(!fits(&[(1, 3)], &[(1, 3), (5, 1)]));
    assert!(!fits(&[], &[(0, 1)]));
}

#[test]
fn shares_compare_exactly() {
    let s = Share::new;
    assert_eq!(s(1, 2), s(2, 4));
    assert!(s(1, 4) < s(1, 2));
    assert!(s(0, 3) < s(1, 1000));
    // The closest distinct shares within the bounds stay apart.
    assert!(s(999_998, 999_999) < s(999_999, 1_000_000));
    assert!(s(1, 1_000_000) < s(1, 999_999));
    assert_eq!(s(3_000, 4_000), s(750_000, 1_000_000));
    assert!(s(4_000, 1) < s(4_001, 1));
}
