//! `unet export` end to end: ONNX and BioImage Model Zoo packages (folder and zip) from a
//! trained run (whose folder also has metrics.csv and the curves as SVG), and one-line errors that leave nothing half-written for a missing
//! checkpoint, an unknown format and an output that cannot be written.

mod common;

use std::path::Path;

use common::cli::{fails, ok, s, scratch, text, unet};

/// A U-Net trained for one step on synthetic cells; its checkpoint.
fn trained(dir: &Path) -> std::path::PathBuf {
    let run = dir.join("run");
    let out = unet(&[
        "train",
        "--data",
        "synthetic",
        "--tile",
        "100",
        "--steps",
        "1",
        "--no-augment",
        "--out",
        s(&run),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The run folder logs every value and draws the curves as PNG and SVG.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().collect::<Vec<_>>()[..1],
        ["step,loss,lr,val_pixel_error,val_iou"]
    );
    assert!(
        metrics.lines().nth(1).unwrap().starts_with("0,"),
        "{metrics}"
    );
    assert!(run.join("loss.svg").is_file() && run.join("loss.png").is_file());
    run.join("checkpoint.safetensors")
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn export_writes_onnx_and_bioimageio_packages() {
    let dir = scratch("export");
    let checkpoint = trained(&dir);
    let help = ok(&["export", "--help"]);
    assert!(
        help.contains("Example") && help.contains("bioimageio"),
        "{help}"
    );

    let onnx = dir.join("model.onnx");
    let said = ok(&[
        "export",
        "--checkpoint",
        s(&checkpoint),
        "--format",
        "onnx",
        "--out",
        s(&onnx),
    ]);
    assert!(
        said.contains("92 + k * 8") && said.contains("probabilities"),
        "{said}"
    );
    let bytes = std::fs::read(&onnx).unwrap();
    assert!(bytes.len() > 100_000, "{} bytes", bytes.len());

    for out in ["package", "package.zip"] {
        let out = dir.join(out);
        ok(&[
            "export",
            "--checkpoint",
            s(&checkpoint),
            "--format",
            "bioimageio",
            "--out",
            s(&out),
            "--author",
            "A Tester",
        ]);
        assert!(out.exists(), "{}", out.display());
    }
    assert!(dir.join("package").join("bioimageio.yaml").is_file());
    // Exporting again replaces an earlier package.
    ok(&[
        "export",
        "--checkpoint",
        s(&checkpoint),
        "--format",
        "bioimageio",
        "--out",
        s(&dir.join("package")),
    ]);
    assert_eq!(
        listing(&dir),
        ["model.onnx", "package", "package.zip", "run"],
        "no temporary files are left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_refuses_bad_input_in_one_line_and_writes_nothing() {
    let dir = scratch("export-errors");
    let checkpoint = trained(&dir);
    let before = listing(&dir);
    let export = |format: &str, out: &Path, checkpoint: &Path| {
        fails(&[
            "export",
            "--checkpoint",
            s(checkpoint),
            "--format",
            format,
            "--out",
            s(out),
        ])
    };
    let missing = export("onnx", &dir.join("m.onnx"), &dir.join("nope.safetensors"));
    assert!(missing.contains("nope.safetensors"), "{missing}");
    let unknown = export("tflite", &dir.join("m.tflite"), &checkpoint);
    assert!(
        unknown.contains("tflite") && unknown.contains("onnx"),
        "{unknown}"
    );
    let nowhere = dir.join("no-such-folder");
    for format in ["onnx", "bioimageio"] {
        let line = export(format, &nowhere.join("m.onnx"), &checkpoint);
        assert!(line.contains("no-such-folder"), "{format}: {line}");
    }
    let line = export("bioimageio", &nowhere.join("pkg.zip"), &checkpoint);
    assert!(line.contains("no-such-folder"), "{line}");
    // A folder that is not a package is not replaced.
    let taken = dir.join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("keep.txt"), "mine").unwrap();
    let line = export("bioimageio", &taken, &checkpoint);
    assert!(line.contains("not a BioImage Model Zoo package"), "{line}");
    assert_eq!(listing(&taken), ["keep.txt"]);
    std::fs::remove_dir_all(&taken).unwrap();
    // A name the zoo refuses, before anything is written.
    let line = fails(&[
        "export",
        "--checkpoint",
        s(&checkpoint),
        "--format",
        "bioimageio",
        "--out",
        s(&dir.join("pkg")),
        "--name",
        "bad/name",
    ]);
    assert!(line.contains("--name"), "{line}");
    assert_eq!(listing(&dir), before, "nothing half-written is left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}
