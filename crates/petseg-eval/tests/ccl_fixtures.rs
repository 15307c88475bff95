//! Labelling equals SciPy's `ndimage.label` (and cc3d) on committed fixtures:
//! structured masks with edge- and corner-only contacts and random masks.

mod common;

use petseg_eval::{label, Connectivity};

#[test]
fn labels_equal_scipy_for_6_18_26() {
    let cases = common::fixture("ccl.json");
    let mut checked = 0;
    for case in cases.as_array().unwrap() {
        let shape = common::shape_of(&case["shape"]);
        let mask = common::mask_bits(&case["mask"]);
        for conn in [6u32, 18, 26] {
            let cc = label(&mask, shape, Connectivity::from_number(conn).unwrap()).unwrap();
            let want: Vec<u32> = case[format!("labels_{conn}")]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            // Same labels, not only the same partition: both number
            // components in raster order of first appearance.
            assert_eq!(cc.labels(), &want[..], "{} conn {conn}", case["name"]);
            assert_eq!(
                cc.count() as u64,
                case[format!("n_{conn}")].as_u64().unwrap()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 33);
}

#[test]
fn diagonal_contacts_separate_connectivities() {
    let cases = common::fixture("ccl.json");
    let case = &cases[0];
    assert_eq!(case["name"], "diagonal_contacts");
    let shape = common::shape_of(&case["shape"]);
    let mask = common::mask_bits(&case["mask"]);
    let n = |c| label(&mask, shape, c).unwrap().count();
    assert_eq!(n(Connectivity::Six), 7);
    assert_eq!(n(Connectivity::Eighteen), 5);
    assert_eq!(n(Connectivity::TwentySix), 4);
}

#[test]
fn stats_match_a_direct_count() {
    let shape = [9, 7, 5];
    let mask = common::random_mask(shape, 0.3, 7);
    let cc = label(&mask, shape, Connectivity::Eighteen).unwrap();
    for (l, st) in cc.stats().iter().enumerate() {
        let mut n = 0u64;
        let mut sum = [0.0f64; 3];
        let mut lo = [usize::MAX; 3];
        let mut hi = [0usize; 3];
        for (idx, &v) in cc.labels().iter().enumerate() {
            if v as usize == l + 1 {
                let p = [idx % 9, (idx / 9) % 7, idx / 63];
                n += 1;
                for a in 0..3 {
                    sum[a] += p[a] as f64;
                    lo[a] = lo[a].min(p[a]);
                    hi[a] = hi[a].max(p[a]);
                }
            }
        }
        assert_eq!(st.voxels, n);
        assert_eq!((st.bbox_min, st.bbox_max), (lo, hi));
        for a in 0..3 {
            assert!((st.centroid[a] - sum[a] / n as f64).abs() < 1e-12);
        }
    }
}

#[test]
fn empty_and_full_masks_and_bad_lengths() {
    let cc = label(&[0; 24], [2, 3, 4], Connectivity::Six).unwrap();
    assert_eq!(cc.count(), 0);
    let cc = label(&[1; 24], [2, 3, 4], Connectivity::Six).unwrap();
    assert_eq!(cc.count(), 1);
    assert!(cc.labels().iter().all(|&l| l == 1));
    assert!(label(&[0; 5], [2, 3, 4], Connectivity::Six).is_err());
    assert!(label(&[], [0, 3, 4], Connectivity::Six).is_err());
    assert!(Connectivity::from_number(8).is_err());
}
