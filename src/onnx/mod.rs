//! ONNX interchange: sacp networks written as ONNX models (opset 14) that ONNX Runtime,
//! TensorRT or OpenVINO load, and ONNX models read into sacp networks at run time.

mod constants;
mod export;
mod import;
pub mod proto;

pub use export::{OPSET, to_bytes, to_model};
pub use import::{OnnxError, from_bytes, from_file};
