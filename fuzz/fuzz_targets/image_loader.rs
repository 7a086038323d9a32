//! Bytes -> the image and mask loader: `read_image`, `read_stack` and `read_mask` all go
//! through `decode_pages`, then `to_gray` (images) or `to_mask_values` and
//! `mask_to_labels` (masks). Any input must give pages or an error, never a panic, a hang
//! or an allocation past libFuzzer's memory limit.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use unet_wgpu::data::{decode_pages, mask_to_labels, MaskFormat};

fuzz_target!(|bytes: &[u8]| {
    let path = Path::new("fuzz-input");
    let pages = match decode_pages(bytes, path) {
        Ok(pages) => pages,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for page in &pages {
        let gray = page.to_gray();
        assert_eq!(gray.data.len(), page.width * page.height);
        assert!(gray.data.iter().all(|v| (0.0..=1.0).contains(v)));
        if let Ok(values) = page.to_mask_values(path) {
            for format in [MaskFormat::BINARY_255, MaskFormat::Instance] {
                if let Err(e) = mask_to_labels(&values, format, path) {
                    let _ = e.to_string();
                }
            }
        }
    }
});
