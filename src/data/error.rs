//! The one error type of the data module. Every message names the file (or the numbers) at
//! fault, what is wrong, and what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot {action} {path}: {source}; {}", io_advice(source))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not a readable PNG or TIFF image ({reason}); give an 8- or 16-bit PNG or TIFF file")]
    Decode { path: PathBuf, reason: String },

    #[error("{path}: unsupported pixel format {format}; convert it to 8- or 16-bit gray or RGB")]
    UnsupportedFormat { path: PathBuf, format: String },

    #[error("{path} is empty (0 x 0 pixels or no pages); give an image with at least one pixel")]
    EmptyImage { path: PathBuf },

    #[error("{path}: a mask must be single-channel gray, found {format}; save the mask as an 8- or 16-bit gray image")]
    MaskNotGray { path: PathBuf, format: String },

    #[error(
        "{path}: mask value {value} at (x={x}, y={y}) is not one of {expected}; \
         choose the mask format that matches the file (binary with the right foreground/background values, or instance labels)"
    )]
    UnexpectedMaskValue {
        path: PathBuf,
        value: u32,
        x: usize,
        y: usize,
        expected: String,
    },

    #[error(
        "image {image} is {image_width}x{image_height} but its mask {mask} is {mask_width}x{mask_height}; \
         an image and its mask must have the same size"
    )]
    SizeMismatch {
        image: PathBuf,
        image_width: usize,
        image_height: usize,
        mask: PathBuf,
        mask_width: usize,
        mask_height: usize,
    },

    #[error("{images} has {image_pages} pages but {masks} has {mask_pages}; the stacks must have one mask per image")]
    StackLengthMismatch {
        images: PathBuf,
        image_pages: usize,
        masks: PathBuf,
        mask_pages: usize,
    },

    #[error(
        "dataset {dir}: {} image(s) without a label ({}) and {} label(s) without an image ({}); \
         images/ and labels/ must hold files with the same stems (e.g. images/07.png and labels/07.png)",
        images_without_labels.len(), images_without_labels.join(", "),
        labels_without_images.len(), labels_without_images.join(", ")
    )]
    Unmatched {
        dir: PathBuf,
        images_without_labels: Vec<String>,
        labels_without_images: Vec<String>,
    },

    #[error("dataset {dir} holds no image/label pairs; put PNG or TIFF files in {dir}/images and {dir}/labels")]
    EmptyDataset { dir: PathBuf },

    #[error("invalid tiling: tile_in = {tile_in}, tile_out = {tile_out}: {reason}")]
    InvalidTiling {
        tile_in: usize,
        tile_out: usize,
        reason: &'static str,
    },

    #[error("invalid {what}: {reason}")]
    InvalidConfig { what: &'static str, reason: String },

    #[error(
        "{path}: label value {value} at (x={x}, y={y}) maps to no class of {expected}; the file \
         holds the values {found}: list every value with --class-values (in class order), \
         mark unlabelled pixels with --ignore-index, or pass --snap to map stray values to the \
         nearest listed one"
    )]
    UnknownClassValue {
        path: PathBuf,
        value: String,
        x: usize,
        y: usize,
        expected: String,
        found: String,
    },

    #[error(
        "{path} has {got} channel(s) but {expected} are needed{context}; read it with \
         --channels {expected} (gray <-> RGB) or use images with {expected} channel(s)"
    )]
    ChannelMismatch {
        path: PathBuf,
        got: usize,
        expected: usize,
        context: String,
    },

    #[error("image index {index} is out of range: the dataset has {len} images")]
    IndexOutOfRange { index: usize, len: usize },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// What to do about a failed file operation, by its kind: a full disk (or a file over the
/// size limit) needs space, a missing file a correct path.
pub fn io_advice(error: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match error.kind() {
        K::StorageFull | K::FileTooLarge | K::QuotaExceeded => {
            "the file could not be written because the disk is full (or the file is over \
             the size limit): free some space or write to another folder, then run the \
             command again"
        }
        K::NotFound => "check that the path exists",
        K::PermissionDenied | K::ReadOnlyFilesystem => "check the permissions, or use another path",
        _ => "check that the path exists and is accessible",
    }
}
