//! `cargo xtask report` end to end on a seeded synthetic results folder:
//! the files exist, the HTML is self-contained (every image a PNG data
//! URI), its numbers agree with an independent NumPy/SciPy recomputation
//! (`xtask/scripts/check_report.py`), and it renders in headless Chromium
//! (`tools/report-screenshot.sh`). Python and Chromium are skipped with a
//! notice when missing, unless `CI` is set.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const HEADER: &str = "case_id,connectivity,voxel_ml,dice,fpv_ml,fnv_ml,tp_c1,fp_c1,fn_c1,f1_c1,tp_c2,fp_c2,fn_c2,f1_c2,tp_c3,fp_c3,fn_c3,f1_c3,tp_1to1,fp_1to1,fn_1to1,f1_1to1,n_gt_lesions,n_pred_lesions,gt_tmtv_ml,pred_tmtv_ml,gt_suvmax,gt_suvmean,gt_tla,pred_suvmax,pred_suvmean,pred_tla,dmax_cm,pred_dmax_cm";

/// One synthetic case: its GT is shared by all losses of a network.
struct Truth {
    id: String,
    n_gt: u64,
    tmtv_ml: f64,
    /// MTV of each GT lesion (ml), summing to about `tmtv_ml`.
    lesion_mtv_ml: Vec<f64>,
    dmax_cm: f64,
    base_dice: f64,
    has_pet: bool,
}

fn f1(tp: u64, fp: u64, fn_: u64) -> String {
    let d = 2 * tp + fp + fn_;
    if d == 0 {
        String::new()
    } else {
        format!("{}", 2.0 * tp as f64 / d as f64)
    }
}

fn row(t: &Truth, shift: f64, decimals: usize, rng: &mut ChaCha8Rng) -> String {
    let dice = if t.n_gt == 0 {
        String::new()
    } else {
        // Few decimals make ties between losses (SciPy's other methods).
        let d = (t.base_dice + shift + rng.random_range(-0.08..0.08)).clamp(0.0, 1.0);
        format!("{d:.decimals$}")
    };
    let tp = rng.random_range(0..=t.n_gt);
    let fp = rng.random_range(0..3u64);
    let fn_ = t.n_gt - tp;
    let (c3, f1c3) = if t.has_pet {
        (format!("{tp},{fp},{fn_}"), f1(tp, fp, fn_))
    } else {
        (",,".to_string(), String::new())
    };
    let f = f1(tp, fp, fn_);
    format!(
        "{id},18,0.064,{dice},{fpv:.3},{fnv:.3},{tp},{fp},{fn_},{f},{tp},{fp},{fn_},{f},{c3},{f1c3},{tp},{fp},{fn_},{f},{n},{np},{tmtv:.2},{ptmtv:.2},8.5,4.1,40.2,8.1,4.0,38.0,{dmax:.2},{dmax:.2}\n",
        id = t.id,
        fpv = rng.random_range(0.0..5.0),
        fnv = rng.random_range(0.0..5.0),
        n = t.n_gt,
        np = tp + fp,
        tmtv = t.tmtv_ml,
        ptmtv = t.tmtv_ml * rng.random_range(0.7..1.3),
        dmax = t.dmax_cm,
    )
}

const LESION_HEADER: &str = "case_id,kind,gt_label,pred_labels,dice,gt_mtv_ml,gt_suvmax,gt_suvmean,gt_tla,pred_mtv_ml,pred_suvmax,pred_suvmean,pred_tla";

/// The `lesions.csv` rows of one case: its GT lesions (one in five missed:
/// no predicted label, DSC 0) and up to two unmatched predictions.
fn lesion_rows(t: &Truth, decimals: usize, rng: &mut ChaCha8Rng) -> String {
    let mut out = String::new();
    let mut next_pred = 1;
    for (k, &mtv) in t.lesion_mtv_ml.iter().enumerate() {
        if rng.random_range(0..5) == 0 {
            writeln!(
                out,
                "{},gt,{},,0,{mtv:.3},6,3,{:.3},0,,,",
                t.id,
                k + 1,
                mtv * 3.0
            )
            .unwrap();
        } else {
            let d = rng.random_range(0.05..0.95f64);
            let p = mtv * rng.random_range(0.5..1.5);
            writeln!(
                out,
                "{},gt,{},{next_pred},{d:.decimals$},{mtv:.3},6,3,{:.3},{p:.3},5,3,{:.3}",
                t.id,
                k + 1,
                mtv * 3.0,
                p * 3.0
            )
            .unwrap();
            next_pred += 1;
        }
    }
    for _ in 0..rng.random_range(0..3) {
        writeln!(
            out,
            "{},unmatched_pred,,{next_pred},0,,,,,0.5,2.5,2,1",
            t.id
        )
        .unwrap();
        next_pred += 1;
    }
    out
}

/// Writes `results/` with four networks × three losses, chosen so that
/// every p-value method of SciPy's `method="auto"` is used: `segresnet`
/// (70 cases: normal approximation), `attention_unet` (30 cases in two
/// folds, DSC to 3 decimals: ties, normal approximation), `unet_mid` (20
/// cases, full precision: exact), `unet_tiny` (12 cases, 1 decimal:
/// ties, permutation).
fn synthetic_results(dir: &Path, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (network, n_cases, folds, decimals) in [
        ("attention_unet", 30usize, 2usize, 3usize),
        ("segresnet", 70, 1, 3),
        ("unet_mid", 20, 1, 12),
        ("unet_tiny", 12, 1, 1),
    ] {
        let truths: Vec<Truth> = (0..n_cases)
            .map(|i| {
                let n_gt = [0u64, 1, 1, 2, 3, 5][rng.random_range(0..6usize)];
                let tmtv_ml = rng.random_range(1.0..800.0);
                let w: Vec<f64> = (0..n_gt).map(|_| rng.random_range(0.1..1.0)).collect();
                let total: f64 = w.iter().sum();
                Truth {
                    id: format!("{network}_case{i:03}"),
                    n_gt,
                    tmtv_ml,
                    lesion_mtv_ml: w.iter().map(|x| tmtv_ml * x / total).collect(),
                    dmax_cm: if n_gt > 1 {
                        rng.random_range(1.0..40.0)
                    } else {
                        0.0
                    },
                    base_dice: rng.random_range(0.3..0.9),
                    has_pet: rng.random_range(0..10) != 0,
                }
            })
            .collect();
        for (loss, shift) in [("dice", 0.0), ("dicefocal", 0.01), ("l1dfl", 0.03)] {
            for fold in 0..folds {
                let name = if folds == 1 {
                    format!("{network}__{loss}")
                } else {
                    format!("{network}__{loss}__fold{fold}")
                };
                let cell = dir.join(name);
                std::fs::create_dir_all(&cell).unwrap();
                let mut csv = format!("{HEADER}\n");
                let mut lesions = format!("{LESION_HEADER}\n");
                for t in truths.iter().skip(fold).step_by(folds) {
                    csv.push_str(&row(t, shift, decimals, &mut rng));
                    lesions.push_str(&lesion_rows(t, decimals, &mut rng));
                }
                std::fs::write(cell.join("patients.csv"), csv).unwrap();
                // One cell without lesions.csv: its MTV table is skipped.
                if (network, loss) != ("unet_tiny", "dicefocal") {
                    std::fs::write(cell.join("lesions.csv"), lesions).unwrap();
                }
            }
        }
    }
}

fn xtask_report(results: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["report", "--results"])
        .arg(results)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn skip_or_panic(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required when CI is set");
    }
    eprintln!("SKIPPED part of the test: {what} is not available");
}

/// Minimal standard base64 decoder (the test's own, independent of the
/// encoder under test).
fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("invalid base64 byte {c}"),
        }
    };
    let bytes = s.as_bytes();
    assert_eq!(bytes.len() % 4, 0, "base64 length");
    let mut out = Vec::new();
    for q in bytes.chunks(4) {
        let pad = q.iter().filter(|&&c| c == b'=').count();
        let n = q
            .iter()
            .take(4 - pad)
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (val(c) << (18 - 6 * i)));
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..3 - pad]);
    }
    out
}

/// Decodes a PNG into (width, height, number of distinct RGB colours,
/// fraction of non-white pixels).
fn png_stats(bytes: &[u8]) -> (u32, u32, usize, f64) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().expect("a valid PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("valid PNG data");
    let ch = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut non_white = 0usize;
    for p in px.chunks(ch) {
        let rgb = if ch >= 3 {
            [p[0], p[1], p[2]]
        } else {
            [p[0]; 3]
        };
        colours.insert(rgb);
        if rgb.iter().any(|&v| v < 245) {
            non_white += 1;
        }
    }
    let total = (info.width * info.height) as f64;
    (
        info.width,
        info.height,
        colours.len(),
        non_white as f64 / total,
    )
}

fn img_sources(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<img") {
        rest = &rest[i..];
        let end = rest.find('>').expect("closed <img> tag");
        let tag = &rest[..end];
        let s = tag.find("src=\"").expect("<img> with a src") + 5;
        let e = tag[s..].find('"').expect("quoted src") + s;
        out.push(tag[s..e].to_string());
        rest = &rest[end..];
    }
    out
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("xtask-report")
        .tempdir()
        .unwrap()
}

#[test]
fn report_is_complete_self_contained_and_agrees_with_scipy() {
    let tmp = tempdir();
    let results = tmp.path().join("results");
    synthetic_results(&results, 9);
    let out = tmp.path().join("report");
    let o = xtask_report(&results, &out);
    assert!(
        o.status.success(),
        "xtask report failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for f in [
        "report.md",
        "report.json",
        "report.html",
        "dsc_boxplots.png",
        "tmtv_threshold.png",
        "mtv_threshold.png",
        "dmax_groups.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| segresnet | l1dfl | 70 |"), "{md}");
    assert!(md.contains("| attention_unet | dice | 30 |"), "{md}");
    assert!(
        md.contains("## Median lesion DSC below GT lesion MTV thresholds")
            && md.contains(
                "Not computed for unet_tiny / dicefocal (a cell folder has no lesions.csv)."
            ),
        "{md}"
    );

    // Self-contained HTML: every image is a PNG data URI with content.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let srcs = img_sources(&html);
    assert_eq!(srcs.len(), 4);
    for s in &srcs {
        let b64 = s
            .strip_prefix("data:image/png;base64,")
            .expect("a PNG data URI");
        let bytes = decode_base64(b64);
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let (w, h, colours, ink) = png_stats(&bytes);
        assert!(w >= 800 && h >= 500, "{w}x{h}");
        assert!(
            colours > 10 && ink > 0.01,
            "figure looks blank: {colours} colours, {ink} ink"
        );
    }
    assert!(
        !html.contains("src=\"http") && !html.contains("<link"),
        "external resources"
    );

    // Every p-value method is exercised.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let methods: std::collections::BTreeSet<String> = json["table1"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["wilcoxon"].as_array().unwrap().clone())
        .map(|t| t["test"]["method"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        methods.into_iter().collect::<Vec<_>>(),
        ["asymptotic", "exact", "permutation"]
    );

    // Independent recomputation with NumPy/SciPy.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/check_report.py");
    match Command::new("python3")
        .arg("-c")
        .arg("import numpy, scipy")
        .status()
    {
        Ok(s) if s.success() => {
            let o = Command::new("python3")
                .arg(&script)
                .arg(&results)
                .arg(out.join("report.json"))
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "check_report.py disagrees:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let msg = String::from_utf8_lossy(&o.stdout);
            assert!(
                msg.contains("12 cells, 8 Wilcoxon tests, 44 lesion MTV threshold rows"),
                "{msg}"
            );
        }
        _ => skip_or_panic("python3 with numpy and scipy"),
    }
}

#[test]
fn report_renders_in_headless_chromium() {
    let has_chromium = ["chromium", "chromium-browser"].iter().any(|b| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {b}"))
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !has_chromium {
        skip_or_panic("chromium");
        return;
    }
    let tmp = tempdir();
    let results = tmp.path().join("results");
    synthetic_results(&results, 3);
    let out = tmp.path().join("report");
    assert!(xtask_report(&results, &out).status.success());
    let shot = tmp.path().join("shot.png");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/report-screenshot.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg(out.join("report.html"))
        .arg(&shot)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "screenshot failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (w, h, colours, ink) = png_stats(&std::fs::read(&shot).unwrap());
    assert_eq!((w, h), (1200, 3000));
    // Text, table borders and the three figures' colours.
    assert!(colours > 50, "screenshot looks blank: {colours} colours");
    assert!(
        ink > 0.05,
        "screenshot looks blank: {ink:.4} of pixels not white"
    );
}

#[test]
fn bad_input_fails_without_partial_output() {
    let tmp = tempdir();
    let results = tmp.path().join("results");
    let cell = results.join("segresnet__dice");
    std::fs::create_dir_all(&cell).unwrap();
    let mut csv = format!("{HEADER}\n");
    writeln!(csv, "c1,18,0.064,zero{}", ",0".repeat(30)).unwrap();
    std::fs::write(cell.join("patients.csv"), csv).unwrap();
    let out = tmp.path().join("report");
    let o = xtask_report(&results, &out);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("patients.csv") && err.contains("dice") && err.contains("\"zero\""),
        "{err}"
    );
    assert!(!out.exists());

    // A lesions.csv that disagrees with its patients.csv.
    let bad = tmp.path().join("bad-lesions");
    synthetic_results(&bad, 4);
    let lesions = bad.join("segresnet__dice/lesions.csv");
    let mut text = std::fs::read_to_string(&lesions).unwrap();
    text.push_str("segresnet_case000,gt,99,,0,1.0,6,3,3,0,,,\n");
    std::fs::write(&lesions, text).unwrap();
    let o = xtask_report(&bad, &out);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("segresnet__dice/lesions.csv")
            && err.contains("case segresnet_case000: ")
            && err.contains("GT lesion rows, but patients.csv says n_gt_lesions"),
        "{err}"
    );
    assert!(!out.exists());

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("not_a_cell")).unwrap();
    let o = xtask_report(&empty, &out);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no cell folder"));
}

/// A cube of `value` at `lo..lo+4` in a 16×8×16 volume.
fn cube(lo: [usize; 3], value: f32, background: f32) -> petseg_io::volume::Volume<f32> {
    let shape = [16, 8, 16];
    let mut v = vec![background; 16 * 8 * 16];
    for z in lo[2]..lo[2] + 4 {
        for y in lo[1]..lo[1] + 4 {
            for x in lo[0]..lo[0] + 4 {
                v[x + 16 * (y + 8 * z)] = value;
            }
        }
    }
    let affine = petseg_io::Affine::from_spacing_origin([4.0; 3], [0.0; 3]).unwrap();
    petseg_io::volume::Volume::from_raster(shape, v, affine).unwrap()
}

#[test]
fn overlays_drawn_from_cell_json_and_skipped_without_it() {
    use petseg_io::nifti::write_nifti;
    let tmp = tempdir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let ids = ["c0", "c1", "c2"];
    let mut cases = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        write_nifti(
            data.join(format!("{id}_pet.nii.gz")),
            &cube([4, 2, 4 + i], 9.0, 0.5),
        )
        .unwrap();
        write_nifti(
            data.join(format!("{id}_ct.nii.gz")),
            &cube([0, 0, 0], 0.0, 0.0),
        )
        .unwrap();
        write_nifti(
            data.join(format!("{id}_gt.nii.gz")),
            &cube([4, 2, 4 + i], 1.0, 0.0),
        )
        .unwrap();
        cases.push(serde_json::json!({
            "id": id, "patient_id": id, "ct": format!("{id}_ct.nii.gz"),
            "pet": format!("{id}_pet.nii.gz"), "label": format!("{id}_gt.nii.gz")
        }));
    }
    let manifest = data.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({"name": "toy", "cases": cases}).to_string(),
    )
    .unwrap();
    let results = tmp.path().join("results");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (loss, with_images) in [("dice", false), ("l1dfl", true)] {
        let cell = results.join(format!("segresnet__{loss}"));
        let preds = cell.join("preds");
        std::fs::create_dir_all(&preds).unwrap();
        let mut csv = format!("{HEADER}\n");
        for id in ids {
            let t = Truth {
                id: id.to_string(),
                n_gt: 1,
                tmtv_ml: 4.0,
                lesion_mtv_ml: vec![4.0],
                dmax_cm: 0.0,
                base_dice: 0.5,
                has_pet: true,
            };
            csv.push_str(&row(&t, 0.0, 3, &mut rng));
            // Shifted prediction: partly overlapping the GT.
            write_nifti(
                preds.join(format!("{id}.nii.gz")),
                &cube([6, 2, 6], 1.0, 0.0),
            )
            .unwrap();
        }
        std::fs::write(cell.join("patients.csv"), csv).unwrap();
        if with_images {
            let meta = serde_json::json!({
                "network": "segresnet", "loss": loss,
                "eval_manifest": manifest, "predictions": preds,
            });
            std::fs::write(cell.join("cell.json"), meta.to_string()).unwrap();
        }
    }
    let out = tmp.path().join("report");
    let o = xtask_report(&results, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(out.join("overlay_segresnet.png")).expect("overlay drawn");
    let mut dec = png::Decoder::new(std::io::Cursor::new(&png[..]));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let has = |rgb: [u8; 3]| buf.chunks(ch).any(|p| p[..3] == rgb);
    assert!(has([0, 170, 0]), "no GT outline");
    assert!(has([220, 0, 0]), "no prediction outline");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(img_sources(&html).len(), 5);

    // Without cell.json paths: no overlay, and the report says why.
    std::fs::remove_file(results.join("segresnet__l1dfl/cell.json")).unwrap();
    let o = xtask_report(&results, &out);
    assert!(o.status.success());
    assert!(!out.join("overlay_segresnet.png").exists());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("PET MIP overlays of segresnet / l1dfl skipped"),
        "{md}"
    );
}
