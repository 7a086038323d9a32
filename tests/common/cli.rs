//! Running the `unet` binary from tests: success, or a clean failure (non-zero exit, one
//! `error:` line as the last line of stderr, no panic, no backtrace).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `unet` command with `args`, ready to run (add environment or limits first).
pub fn unet_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_unet"));
    // The default kernels, whatever the user's environment or cache says.
    command.args(args).env("UNET_AUTOTUNE", "off");
    command
}

pub fn unet(args: &[&str]) -> Output {
    unet_command(args).output().expect("the unet binary runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `unet args`, asserting success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = unet(args);
    assert!(
        out.status.success(),
        "unet {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `command` to the end, killing it and failing the test if it takes longer than
/// `limit` (a hang).
pub fn output_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the unet binary runs");
    let start = Instant::now();
    while child.try_wait().expect("waiting works").is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?} (a hang?); stderr:\n{}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Asserts that `out` is a clean failure and returns its one error line: non-zero exit,
/// no panic or backtrace, exactly one line starting with `error:`, and it is the last
/// line (lines before it are progress, such as the adapter in use).
pub fn clean_failure(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "should fail; stderr:\n{stderr}");
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(bad), "{bad}:\n{stderr}");
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert_eq!(
        lines.last(),
        errors.first().copied(),
        "the error comes last:\n{stderr}"
    );
    errors[0].to_string()
}

/// Runs `unet args` and returns its one error line (see [`clean_failure`]).
pub fn fails(args: &[&str]) -> String {
    clean_failure(&unet(args))
}

/// A fresh, empty scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("unet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A dataset folder `dir/data` (images/, labels/) of `count` synthetic EM-like images of
/// `size` x `size` pixels with their instance labels, made from `seed`.
pub fn synthetic_folder(dir: &Path, count: usize, size: usize, seed: u64) -> PathBuf {
    use unet_wgpu::data::{synthetic_dataset, write_dataset, SynthConfig};
    let data = dir.join("data");
    let dataset = synthetic_dataset(count, size, size, seed, &SynthConfig::default()).unwrap();
    write_dataset(&data, &dataset).unwrap();
    data
}

/// The header metadata of the checkpoint in run folder `run` (step, optimiser, ...).
pub fn checkpoint_metadata(run: &Path) -> HashMap<String, String> {
    let bytes = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    header.metadata().clone().unwrap()
}
