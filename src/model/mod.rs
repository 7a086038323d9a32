//! The U-Net: configuration, parameters, forward and backward.

pub mod config;
pub mod param;
pub mod unet;

pub use config::{LayerInfo, UNetConfig};
pub use param::Param;
pub use unet::{Activations, Mode, UNet};
