//! Bytes -> the checkpoint loader's host side, `checkpoint::parse`: the safetensors header,
//! the metadata (format, version, config, optimiser settings) and the check of every
//! tensor's name, dtype and shape against the config. What it accepts, `checkpoint::load`
//! builds on the GPU without further checks, so it must never accept a file whose config
//! would make the network fail to build (or build one larger than the file).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use unet_wgpu::train::checkpoint;

fuzz_target!(|bytes: &[u8]| {
    match checkpoint::parse(bytes, Path::new("fuzz.safetensors")) {
        Ok(file) => {
            // Every parameter the config implies is in the file, so the network is no
            // larger than the file.
            let params = checkpoint::expected_params(&file.config).expect("parse checked it");
            let elements: usize = params
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            assert!(2 * 4 * elements <= bytes.len());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
