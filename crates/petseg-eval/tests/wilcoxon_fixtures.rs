//! `wilcoxon` equals `scipy.stats.wilcoxon` (SciPy 1.17) to 1e-9 on
//! committed fixtures: exact (untied), permutation (ties/zeros, n ≤ 13) and
//! normal approximation (ties/zeros n > 13, any n > 50), every alternative,
//! with and without continuity correction.

mod common;

use petseg_eval::stats::{wilcoxon, Alternative, WilcoxonMethod};

fn alt(s: &str) -> Alternative {
    match s {
        "greater" => Alternative::Greater,
        "less" => Alternative::Less,
        _ => Alternative::TwoSided,
    }
}

#[test]
fn p_values_equal_scipy() {
    let cases = common::fixture("wilcoxon.json");
    let mut methods = std::collections::HashSet::new();
    for c in cases.as_array().unwrap() {
        let v = |k: &str| -> Vec<f64> {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let r = wilcoxon(
            &v("x"),
            &v("y"),
            alt(c["alternative"].as_str().unwrap()),
            c["correction"].as_bool().unwrap(),
        )
        .unwrap();
        let want = c["pvalue"].as_f64().unwrap();
        assert!(
            (r.p_value - want).abs() < 1e-9,
            "{} {} corr={}: {} vs {want} ({:?})",
            c["name"],
            c["alternative"],
            c["correction"],
            r.p_value,
            r.method
        );
        assert!(
            (r.statistic - c["statistic"].as_f64().unwrap()).abs() < 1e-9,
            "{} statistic",
            c["name"]
        );
        methods.insert(format!("{:?}", r.method));
    }
    for m in [
        WilcoxonMethod::Exact,
        WilcoxonMethod::Permutation,
        WilcoxonMethod::Asymptotic,
    ] {
        assert!(
            methods.contains(&format!("{m:?}")),
            "fixtures do not exercise {m:?}"
        );
    }
}
