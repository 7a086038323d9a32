//! Writes synthetic datasets of every style, to see what the generator makes or to train on
//! them as on a folder of files:
//! `cargo run --example synthetic_styles -- OUT_DIR [COUNT] [SIZE]` writes
//! `OUT_DIR/STYLE/images/NNN.png` (8-bit) and `OUT_DIR/STYLE/labels/NNN.png` (16-bit
//! instance labels) for each style (defaults: `synthetic-styles/`, 4 images of 256 x 256).

use std::path::PathBuf;

use unet_wgpu::data::{synthetic_dataset, write_dataset, SynthConfig, SynthStyle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or("synthetic-styles".into()));
    let count = args.next().map_or(Ok(4), |n| n.parse())?;
    let size = args.next().map_or(Ok(256), |n| n.parse())?;
    for style in SynthStyle::ALL {
        let data = synthetic_dataset(count, size, size, 1, &SynthConfig::for_style(style))?;
        let folder = out.join(style.name());
        write_dataset(&folder, &data)?;
        println!("{}", folder.display());
    }
    Ok(())
}
