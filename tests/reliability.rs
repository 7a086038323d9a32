//! A long run must survive what happens to it: a stop signal leaves a checkpoint that
//! resumes, a kill -9 at any moment leaves a loadable checkpoint, a diverging loss stops the
//! run with advice and keeps the last good checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use unet_wgpu::data::{synthetic_dataset, write_dataset, SynthConfig};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("unet-rel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny dataset on disk and the arguments of a long training run on it.
fn long_run(dir: &Path, out: &Path, steps: u64, extra: &[&str]) -> Command {
    let data = dir.join("data");
    if !data.exists() {
        let dataset = synthetic_dataset(2, 64, 64, 3, &SynthConfig::default()).unwrap();
        write_dataset(&data, &dataset).unwrap();
    }
    let steps = steps.to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_unet"));
    command
        .env("UNET_AUTOTUNE", "off")
        .args([
            "train",
            "--data",
            s(&data),
            "--mask",
            "instance",
            "--tile",
            "124",
        ])
        .args([
            "--steps",
            &steps,
            "--checkpoint-every",
            "1",
            "--validate-every",
            "100000",
        ])
        .args(["--out", s(out)])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Waits until `path` exists (the run has written its first checkpoint).
fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {}",
            path.display()
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no {} after 5 minutes",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn checkpoint_step(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
    meta.metadata().as_ref().unwrap()["step"].parse().unwrap()
}

#[test]
fn sigterm_leaves_a_checkpoint_that_resumes() {
    let dir = scratch("sigterm");
    let out = dir.join("run");
    let mut child = long_run(&dir, &out, 100_000, &[]).spawn().unwrap();
    let checkpoint = out.join("checkpoint.safetensors");
    wait_for(&checkpoint, &mut child);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "a stopped run exits cleanly: {stderr}"
    );
    assert!(stderr.contains("stopped at step"), "{stderr}");
    let stopped_at = checkpoint_step(&checkpoint);
    assert!(stopped_at >= 1);

    let resumed = long_run(&dir, &out, stopped_at + 1, &["--resume", s(&out)])
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(checkpoint_step(&checkpoint), stopped_at + 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kill_9_at_any_moment_leaves_a_loadable_checkpoint() {
    let dir = scratch("kill9");
    let out = dir.join("run");
    let checkpoint = out.join("checkpoint.safetensors");
    // Each round resumes the run, waits until it has written a newer checkpoint (one per
    // step, so writes follow each other closely), then kills it at a moment spread over the
    // next writes. Every time, the checkpoint on disk must load.
    let mut last_step = 0;
    for (round, delay_ms) in [0u64, 13, 37, 71, 110, 190].into_iter().enumerate() {
        let resume: &[&str] = if round == 0 {
            &[]
        } else {
            &["--resume", s(&out)]
        };
        let mut child = long_run(&dir, &out, 100_000, resume).spawn().unwrap();
        wait_for(&checkpoint, &mut child);
        let start = Instant::now();
        while checkpoint_step(&checkpoint) <= last_step {
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: the run ended"
            );
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "round {round}: no progress"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        last_step = checkpoint_step(&checkpoint); // panics if the file does not load
    }
    assert!(last_step >= 6, "each round advanced the run");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_diverging_run_stops_with_advice_and_keeps_its_checkpoint() {
    let dir = scratch("diverge");
    let out = dir.join("run");
    // A learning rate this large overflows the weights to infinity within a step or two.
    let output = long_run(&dir, &out, 50, &["--lr", "1e30"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(line.contains("Lower the learning rate"), "{line}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Whatever checkpoint the run left holds finite weights: the last good one.
    let checkpoint = out.join("checkpoint.safetensors");
    if checkpoint.exists() {
        let bytes = std::fs::read(&checkpoint).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in file.tensors() {
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
            assert!(values.iter().all(|v| v.is_finite()), "{name} is not finite");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
