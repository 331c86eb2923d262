//! ONNX interchange: sacp networks written as ONNX models (opset 13) that ONNX Runtime,
//! TensorRT or OpenVINO load.

mod export;
pub mod proto;

pub use export::{OPSET, to_bytes, to_model};
