//! The ISBI 2012 challenge metrics and IoU.
