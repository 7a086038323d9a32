//! The networks: configuration, parameters, and the forward and backward of the U-Net and
//! of U-Net++, behind one [`Network`] interface.

pub mod config;
mod layers;
pub mod network;
pub mod param;
pub mod unet;
pub mod unetpp;

pub use config::{Arch, LayerInfo, UNetConfig};
pub use network::{Heads, Network};
pub use param::Param;
pub use unet::{Activations, Mode, UNet};
pub use unetpp::UNetPlusPlus;
