//! `cargo xtask split`: patient-grouped, stratified data splits (`docs/method/data.md` §6).
//!
//! Every case of a patient lands in the same partition. Patients are
//! stratified by lesion scenario (none / single / multiple: the patient's
//! case with the most lesions decides) and, optionally, by case tags (tracer,
//! centre…). Within each stratum the patients are shuffled by a ChaCha8
//! stream seeded with the user's seed, so the same seed and manifest give the
//! same split, byte for byte.
//!
//! * `--test N --val M`: N test cases, M validation cases, the rest train
//!   (one fold). Each stratum gets its share of N (and M) by largest
//!   remainder; patients are taken in shuffled order until the share is met.
//! * `--folds K [--test N]`: an optional test set first, then K folds: in each
//!   stratum, patients (largest first, ties in shuffled order) go to the fold
//!   that has the fewest cases of that stratum, then the fewest cases overall.
//!   With one case per patient this puts every stratum's count in each fold
//!   within one case of its target.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use petseg_io::manifest::{Fold, LesionScenario, Manifest, Split};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitPlan {
    /// A fixed number of test and validation cases; one fold.
    Holdout {
        /// Test cases.
        test: usize,
        /// Validation cases.
        val: usize,
    },
    /// K folds, after an optional test set.
    KFold {
        /// Number of folds (≥ 2).
        folds: usize,
        /// Test cases held out before the folds are made.
        test: usize,
    },
}

/// One patient: its case ids (sorted) and its stratum key.
#[derive(Debug, Clone)]
struct PatientGroup {
    cases: Vec<String>,
    stratum: String,
}

/// Computes the split of `manifest` and returns it (the manifest is not
/// modified). `stratify_tags` names case tags to stratify by in addition to
/// the lesion scenario.
pub fn make_split(
    manifest: &Manifest,
    plan: &SplitPlan,
    seed: u64,
    stratify_tags: &[String],
) -> Result<Split> {
    let groups = patient_groups(manifest, stratify_tags)?;
    let n_cases: usize = groups.iter().map(|g| g.cases.len()).sum();
    let (n_test, n_val) = match plan {
        SplitPlan::Holdout { test, val } => (*test, *val),
        SplitPlan::KFold { folds, test } => {
            if *folds < 2 {
                bail!("--folds must be at least 2, got {folds}");
            }
            (*test, 0)
        }
    };
    if n_test + n_val >= n_cases {
        bail!(
            "asked for {n_test} test + {n_val} validation cases but the manifest has only {n_cases}: nothing would be left to train on"
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut strata = shuffled_strata(groups, &mut rng);

    let test = take_stratified(&mut strata, n_test, n_cases);
    let folds = match plan {
        SplitPlan::Holdout { .. } => {
            let remaining: usize = strata.values().flatten().map(|g| g.cases.len()).sum();
            let val = take_stratified(&mut strata, n_val, remaining);
            let train = strata
                .into_values()
                .flatten()
                .flat_map(|g| g.cases)
                .collect();
            vec![Fold {
                train: sorted(train),
                val: sorted(val),
            }]
        }
        SplitPlan::KFold { folds, .. } => kfold(strata, *folds),
    };
    let split = Split {
        seed,
        test: sorted(test),
        folds,
    };
    if split.folds.iter().any(|f| f.train.is_empty()) {
        bail!("a fold would have no training case: use fewer folds or a smaller test set");
    }
    Ok(split)
}

/// Groups cases by patient and computes each patient's stratum key.
fn patient_groups(manifest: &Manifest, stratify_tags: &[String]) -> Result<Vec<PatientGroup>> {
    let mut out = Vec::new();
    for (patient, ids) in manifest.patients() {
        let cases: Vec<_> = ids
            .iter()
            .map(|id| manifest.case(id).expect("patients() lists known ids"))
            .collect();
        let scenario = cases
            .iter()
            .map(|c| {
                c.scenario().with_context(|| {
                    format!(
                        "case {}: no lesion count (n_lesions), cannot stratify",
                        c.id
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max()
            .unwrap_or(LesionScenario::None);
        let mut stratum = scenario.as_str().to_string();
        for tag in stratify_tags {
            let value = cases[0].tags.get(tag).map(String::as_str).unwrap_or("-");
            stratum.push('|');
            stratum.push_str(value);
        }
        let _ = patient;
        out.push(PatientGroup {
            cases: ids.iter().map(|s| s.to_string()).collect(),
            stratum,
        });
    }
    Ok(out)
}

/// Buckets patients by stratum, each bucket in a seeded shuffled order.
fn shuffled_strata(
    groups: Vec<PatientGroup>,
    rng: &mut ChaCha8Rng,
) -> BTreeMap<String, Vec<PatientGroup>> {
    let mut strata: BTreeMap<String, Vec<PatientGroup>> = BTreeMap::new();
    for g in groups {
        strata.entry(g.stratum.clone()).or_default().push(g);
    }
    for bucket in strata.values_mut() {
        shuffle(bucket, rng);
    }
    strata
}

/// Fisher–Yates with a ChaCha8 stream (stable across platforms and versions).
fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Removes about `n` cases from the strata, each stratum contributing in
/// proportion to its size (largest remainder), and returns their ids.
fn take_stratified(
    strata: &mut BTreeMap<String, Vec<PatientGroup>>,
    n: usize,
    total: usize,
) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let sizes: Vec<(String, usize)> = strata
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|g| g.cases.len()).sum()))
        .collect();
    let quotas = largest_remainder(&sizes, n, total);
    let mut taken = Vec::new();
    for (key, quota) in quotas {
        let bucket = strata.get_mut(&key).expect("quota keys come from strata");
        let mut got = 0;
        let mut keep = Vec::new();
        for g in bucket.drain(..) {
            if got < quota {
                got += g.cases.len();
                taken.extend(g.cases);
            } else {
                keep.push(g);
            }
        }
        *bucket = keep;
    }
    taken
}

/// Shares of `n` for each (key, size) proportional to size / total, rounded
/// by the largest-remainder method so that they add up to `n`.
fn largest_remainder(sizes: &[(String, usize)], n: usize, total: usize) -> Vec<(String, usize)> {
    let mut shares: Vec<(String, usize, f64)> = sizes
        .iter()
        .map(|(k, s)| {
            let exact = n as f64 * *s as f64 / total as f64;
            (k.clone(), exact.floor() as usize, exact - exact.floor())
        })
        .collect();
    let mut left = n - shares.iter().map(|s| s.1).sum::<usize>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| shares[b].2.total_cmp(&shares[a].2).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        shares[i].1 += 1;
        left -= 1;
    }
    shares.into_iter().map(|(k, q, _)| (k, q)).collect()
}

/// Distributes the remaining patients over `k` folds, balancing each
/// stratum, and returns the folds (val = the fold, train = the others).
fn kfold(strata: BTreeMap<String, Vec<PatientGroup>>, k: usize) -> Vec<Fold> {
    let mut members: Vec<Vec<String>> = vec![Vec::new(); k];
    let mut totals = vec![0usize; k];
    for (_, mut bucket) in strata {
        // Largest patients first so that they cannot unbalance the end.
        bucket.sort_by_key(|g| std::cmp::Reverse(g.cases.len()));
        let mut in_stratum = vec![0usize; k];
        for g in bucket {
            let f = (0..k)
                .min_by_key(|&f| (in_stratum[f], totals[f], f))
                .expect("k >= 2");
            in_stratum[f] += g.cases.len();
            totals[f] += g.cases.len();
            members[f].extend(g.cases);
        }
    }
    (0..k)
        .map(|f| Fold {
            train: sorted(
                (0..k)
                    .filter(|&o| o != f)
                    .flat_map(|o| members[o].iter().cloned())
                    .collect(),
            ),
            val: sorted(members[f].clone()),
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Case counts per partition and scenario, for the summary the command prints.
pub fn summary(manifest: &Manifest, split: &Split) -> String {
    let count = |ids: &[String]| {
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for id in ids {
            let s = manifest
                .case(id)
                .and_then(|c| c.scenario())
                .map(|s| s.as_str())
                .unwrap_or("unknown");
            *by.entry(s).or_default() += 1;
        }
        let parts: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("{} cases ({})", ids.len(), parts.join(", "))
    };
    let mut out = format!("seed {}\ntest: {}\n", split.seed, count(&split.test));
    for (i, f) in split.folds.iter().enumerate() {
        out.push_str(&format!(
            "fold {i}: train {} | val {}\n",
            count(&f.train),
            count(&f.val)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use petseg_io::manifest::CaseEntry;
    use std::collections::{BTreeSet, HashSet};

    /// A manifest of `n` cases; every 5th patient has two cases.
    fn cohort(n: usize) -> Manifest {
        let mut m = Manifest::new("t", ".");
        let mut patient = 0;
        for i in 0..n {
            if i % 5 != 1 {
                patient += 1;
            }
            m.cases.push(CaseEntry {
                id: format!("case_{i:03}"),
                patient_id: format!("p{patient:03}"),
                ct: format!("ct_{i}.nii.gz").into(),
                pet: format!("pet_{i}.nii.gz").into(),
                label: Some(format!("lab_{i}.nii.gz").into()),
                n_lesions: Some([0, 1, 1, 3, 2, 0, 1][i % 7]),
                tags: Default::default(),
            });
        }
        m
    }

    fn patient_of(m: &Manifest, id: &str) -> String {
        m.case(id).unwrap().patient_id.clone()
    }

    #[test]
    fn no_patient_in_two_partitions_holdout() {
        let m = cohort(60);
        let s = make_split(&m, &SplitPlan::Holdout { test: 10, val: 8 }, 3, &[]).unwrap();
        let parts = [&s.test, &s.folds[0].val, &s.folds[0].train];
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (p, ids) in parts.iter().enumerate() {
            for id in ids.iter() {
                let prev = seen.insert(patient_of(&m, id), p);
                assert!(
                    prev.is_none() || prev == Some(p),
                    "patient of {id} in two partitions"
                );
            }
        }
        let all: HashSet<&String> = parts.iter().flat_map(|v| v.iter()).collect();
        assert_eq!(all.len(), 60, "every case in exactly one partition");
        assert!((s.test.len() as i64 - 10).abs() <= 1);
        assert!((s.folds[0].val.len() as i64 - 8).abs() <= 1);
    }

    #[test]
    fn kfold_balances_each_scenario_within_one_case() {
        let mut m = cohort(53);
        // One case per patient so that the balance bound is exact.
        for (i, c) in m.cases.iter_mut().enumerate() {
            c.patient_id = format!("p{i}");
        }
        let s = make_split(&m, &SplitPlan::KFold { folds: 5, test: 0 }, 11, &[]).unwrap();
        assert_eq!(s.folds.len(), 5);
        for scen in ["none", "single", "multiple"] {
            let counts: Vec<usize> = s
                .folds
                .iter()
                .map(|f| {
                    f.val
                        .iter()
                        .filter(|id| m.case(id).unwrap().scenario().unwrap().as_str() == scen)
                        .count()
                })
                .collect();
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 1, "{scen}: {counts:?}");
        }
        let vals: BTreeSet<&String> = s.folds.iter().flat_map(|f| f.val.iter()).collect();
        assert_eq!(vals.len(), 53, "each case validated exactly once");
        for f in &s.folds {
            assert!(f.val.iter().all(|id| !f.train.contains(id)));
        }
    }

    #[test]
    fn same_seed_same_split_other_seed_differs() {
        let m = cohort(40);
        let plan = SplitPlan::KFold { folds: 4, test: 6 };
        let a = make_split(&m, &plan, 7, &[]).unwrap();
        let b = make_split(&m, &plan, 7, &[]).unwrap();
        let c = make_split(&m, &plan, 8, &[]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn tags_are_strata_too() {
        let mut m = cohort(40);
        for (i, c) in m.cases.iter_mut().enumerate() {
            c.patient_id = format!("p{i}");
            c.tags.insert(
                "centre".into(),
                if i < 10 { "A".into() } else { "B".into() },
            );
        }
        let s = make_split(
            &m,
            &SplitPlan::Holdout { test: 8, val: 0 },
            1,
            &["centre".into()],
        )
        .unwrap();
        let a = s
            .test
            .iter()
            .filter(|id| m.case(id).unwrap().tags["centre"] == "A")
            .count();
        assert_eq!(
            a, 2,
            "centre A is a quarter of the cohort, so a quarter of the test set"
        );
    }

    #[test]
    fn impossible_requests_are_refused() {
        let m = cohort(10);
        assert!(make_split(&m, &SplitPlan::Holdout { test: 6, val: 4 }, 1, &[]).is_err());
        assert!(make_split(&m, &SplitPlan::KFold { folds: 1, test: 0 }, 1, &[]).is_err());
        let mut unknown = cohort(10);
        unknown.cases[3].n_lesions = None;
        let err =
            make_split(&unknown, &SplitPlan::KFold { folds: 2, test: 0 }, 1, &[]).unwrap_err();
        assert!(format!("{err:#}").contains("case_003"));
    }

    #[test]
    fn largest_remainder_adds_up() {
        let q = largest_remainder(&[("a".into(), 7), ("b".into(), 7), ("c".into(), 6)], 5, 20);
        assert_eq!(q.iter().map(|x| x.1).sum::<usize>(), 5);
    }
}
