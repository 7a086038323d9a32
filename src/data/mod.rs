//! Image I/O, tiling and mirroring, augmentation, weight maps, synthetic data.
