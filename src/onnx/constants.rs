//! Constant tensors of an ONNX graph: initializers and `Constant` nodes read (inline or from
//! external data files), and the constant-only operations exporters emit around weights
//! (`ConstantOfShape`, `Unsqueeze`, `Squeeze`, `Reshape`, `Cast`, element-wise arithmetic)
//! folded at import.

use super::proto::{TensorProto, data_location, data_type};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// A constant: dims and values (floats; integers converted).
#[derive(Clone, Debug)]
pub(super) struct Constant {
    /// Dimensions (empty for a scalar).
    pub dims: Vec<usize>,
    /// Elements, row-major.
    pub values: Vec<f64>,
    /// Integer element type (division truncates, as ONNX's integer `Div` does).
    pub integer: bool,
}

/// The product of `dims`, or `None` when it overflows.
pub(super) fn checked_product(dims: impl IntoIterator<Item = usize>) -> Option<usize> {
    dims.into_iter().try_fold(1usize, |a, d| a.checked_mul(d))
}

/// Where external data files are found: the model file's folder, or nowhere when the model
/// came as bytes. Files are read once.
pub(super) struct ExternalData {
    folder: Option<PathBuf>,
    files: HashMap<String, Vec<u8>>,
}

impl ExternalData {
    /// External data relative to `folder` (`None`: the model has no file, so none is read).
    pub fn new(folder: Option<&Path>) -> Self {
        ExternalData {
            folder: folder.map(Path::to_path_buf),
            files: HashMap::new(),
        }
    }

    /// The bytes a tensor's `external_data` entries point to.
    fn read(&mut self, t: &TensorProto) -> Result<Vec<u8>, String> {
        let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
        let location = entry("location").ok_or("stored as external data without a `location`")?;
        let number = |key: &str| -> Result<Option<usize>, String> {
            entry(key)
                .map(|v| {
                    v.parse::<usize>()
                        .map_err(|_| format!("external data `{key}` = {v:?} is not a byte count"))
                })
                .transpose()
        };
        let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
        let Some(folder) = &self.folder else {
            return Err(format!(
                "stored in the external file `{location}`; load the model from its file so that `{location}` can be found beside it"
            ));
        };
        let relative = Path::new(location);
        if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!(
                "external data file `{location}` must be a plain path inside the model's folder"
            ));
        }
        let path = folder.join(relative);
        if !self.files.contains_key(location) {
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("external data file {} (named by the model) cannot be read: {e}", path.display()))?;
            self.files.insert(location.to_string(), bytes);
        }
        let file = &self.files[location];
        let end = match length {
            Some(n) => offset.checked_add(n),
            None => Some(file.len()),
        };
        match end {
            Some(end) if offset <= end && end <= file.len() => Ok(file[offset..end].to_vec()),
            _ => Err(format!(
                "external data at offset {offset}, length {length:?} lies outside {} ({} bytes)",
                path.display(),
                file.len()
            )),
        }
    }
}

/// Reads a tensor (floats and integers, inline or external).
pub(super) fn constant(t: &TensorProto, external: &mut ExternalData) -> Result<Constant, String> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let count = checked_product(dims.iter().copied()).ok_or("dimensions overflow")?;
    let raw = if t.data_location == data_location::EXTERNAL {
        external.read(t)?
    } else {
        t.raw_data.clone()
    };
    fn decode<const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<f64> {
        raw.chunks_exact(N).map(|b| f(b.try_into().expect("N bytes"))).collect()
    }
    let values: Vec<f64> = match t.data_type {
        data_type::FLOAT if !raw.is_empty() => decode(&raw, |b| f32::from_le_bytes(b) as f64),
        data_type::FLOAT => t.float_data.iter().map(|&v| v as f64).collect(),
        data_type::DOUBLE if !raw.is_empty() => decode(&raw, f64::from_le_bytes),
        data_type::DOUBLE => t.double_data.clone(),
        data_type::INT64 if !raw.is_empty() => decode(&raw, |b| i64::from_le_bytes(b) as f64),
        data_type::INT64 => t.int64_data.iter().map(|&v| v as f64).collect(),
        data_type::INT32 if !raw.is_empty() => decode(&raw, |b| i32::from_le_bytes(b) as f64),
        data_type::INT32 => t.int32_data.iter().map(|&v| v as f64).collect(),
        other => {
            return Err(format!(
                "element type {other} (float32, float64, int32 and int64 constants are read)"
            ));
        }
    };
    if values.len() != count {
        return Err(format!("{} values for dimensions {dims:?}", values.len()));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "value {} at flat index {i} (dimensions {dims:?}); weights must be finite",
            values[i]
        ));
    }
    let integer = matches!(t.data_type, data_type::INT64 | data_type::INT32);
    Ok(Constant { dims, values, integer })
}

impl Constant {
    /// A float scalar.
    pub fn scalar(value: f64) -> Constant {
        Constant::vector(vec![value], false).squeeze(&[]).expect("one element")
    }

    /// A one-dimensional constant.
    pub fn vector(values: Vec<f64>, integer: bool) -> Constant {
        Constant {
            dims: vec![values.len()],
            values,
            integer,
        }
    }

    /// The constant's values as a list of dimensions (e.g. a shape operand).
    pub fn as_dims(&self) -> Result<Vec<usize>, String> {
        self.values
            .iter()
            .map(|&v| {
                (v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64)
                    .then_some(v as usize)
                    .ok_or_else(|| format!("{v} is not a dimension"))
            })
            .collect()
    }

    /// A tensor of `dims` filled with this (one-element) constant: `ConstantOfShape`.
    pub fn filled(&self, dims: Vec<usize>) -> Result<Constant, String> {
        let count = checked_product(dims.iter().copied())
            .filter(|&n| n <= crate::ir::MAX_ACTIVATION)
            .ok_or_else(|| format!("dimensions {dims:?} are too large"))?;
        let [value] = self.values[..] else {
            return Err(format!("the fill value has {} elements, one was expected", self.values.len()));
        };
        Ok(Constant {
            dims,
            values: vec![value; count],
            integer: self.integer,
        })
    }

    /// Axes counted from the end (negative) made absolute for a result of `rank` axes.
    fn axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
        let mut out: Vec<usize> = axes
            .iter()
            .map(|&a| {
                let a = if a < 0 { a + rank as i64 } else { a };
                usize::try_from(a)
                    .ok()
                    .filter(|&a| a < rank)
                    .ok_or_else(|| format!("axis {a} out of range"))
            })
            .collect::<Result<_, _>>()?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// `Unsqueeze`: size-1 axes inserted at `axes` (positions in the result).
    pub fn unsqueeze(self, axes: &[i64]) -> Result<Constant, String> {
        let rank = self.dims.len() + axes.len();
        let axes = Self::axes(axes, rank)?;
        let mut source = self.dims.iter();
        let dims = (0..rank)
            .map(|i| if axes.contains(&i) { 1 } else { *source.next().unwrap_or(&1) })
            .collect();
        Ok(Constant { dims, ..self })
    }

    /// `Squeeze`: the size-1 axes `axes` removed (all size-1 axes when `axes` is empty).
    pub fn squeeze(self, axes: &[i64]) -> Result<Constant, String> {
        let axes = Self::axes(axes, self.dims.len())?;
        if let Some(&a) = axes.iter().find(|&&a| self.dims[a] != 1) {
            return Err(format!("axis {a} has size {}, only size-1 axes are squeezed", self.dims[a]));
        }
        let dims = self
            .dims
            .iter()
            .enumerate()
            .filter(|&(i, &d)| if axes.is_empty() { d != 1 } else { !axes.contains(&i) })
            .map(|(_, &d)| d)
            .collect();
        Ok(Constant { dims, ..self })
    }

    /// `Reshape` to `shape` (0 copies the dimension, −1 is inferred).
    pub fn reshape(self, shape: &[f64]) -> Result<Constant, String> {
        let total = self.values.len();
        let copied = |i: usize, d: f64| {
            if d == 0.0 {
                self.dims.get(i).map(|&d| d as f64).unwrap_or(0.0)
            } else {
                d
            }
        };
        let shape: Vec<f64> = shape.iter().enumerate().map(|(i, &d)| copied(i, d)).collect();
        let known = checked_product(shape.iter().filter(|&&d| d > 0.0).map(|&d| d as usize)).unwrap_or(0);
        let dims: Vec<usize> = shape
            .iter()
            .map(|&d| if d < 0.0 { total / known.max(1) } else { d as usize })
            .collect();
        if checked_product(dims.iter().copied()) != Some(total) {
            return Err(format!("cannot reshape {:?} to {shape:?}", self.dims));
        }
        Ok(Constant { dims, ..self })
    }

    /// An element-wise operation on two constants of one shape, or of which one is a scalar.
    pub fn zip(&self, other: &Constant, f: impl Fn(f64, f64) -> f64) -> Result<Constant, String> {
        let (dims, n) = match (self.values.len(), other.values.len()) {
            (a, b) if self.dims == other.dims => (self.dims.clone(), a.max(b)),
            (1, b) => (other.dims.clone(), b),
            (a, 1) => (self.dims.clone(), a),
            _ => {
                return Err(format!(
                    "constants of dimensions {:?} and {:?} (only equal shapes or a scalar are folded)",
                    self.dims, other.dims
                ));
            }
        };
        let at = |c: &Constant, i: usize| c.values[if c.values.len() == 1 { 0 } else { i }];
        let integer = self.integer && other.integer;
        let values: Vec<f64> = (0..n)
            .map(|i| f(at(self, i), at(other, i)))
            .map(|v| if integer { v.trunc() } else { v })
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err("folding gives a non-finite value".into());
        }
        Ok(Constant { dims, values, integer })
    }

    /// `Gather` along axis 0 of a one-dimensional constant (negative indices count from the
    /// end); a scalar index gives a scalar.
    pub fn gather(&self, indices: &Constant) -> Result<Constant, String> {
        if self.dims.len() != 1 {
            return Err(format!("gathering from a constant of dimensions {:?}", self.dims));
        }
        let n = self.values.len() as f64;
        let values = indices
            .values
            .iter()
            .map(|&i| {
                let i = if i < 0.0 { i + n } else { i };
                (i >= 0.0 && i < n)
                    .then(|| self.values[i as usize])
                    .ok_or_else(|| format!("index {i} out of {n} elements"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Constant {
            dims: indices.dims.clone(),
            values,
            integer: self.integer,
        })
    }

    /// One-dimensional constants joined end to end (`Concat` of shape vectors).
    pub fn concat(parts: &[Constant]) -> Result<Constant, String> {
        if let Some(p) = parts.iter().find(|p| p.dims.len() != 1) {
            return Err(format!("concatenating a constant of dimensions {:?}", p.dims));
        }
        let values = parts.iter().flat_map(|p| p.values.iter().copied()).collect();
        Ok(Constant::vector(values, parts.iter().all(|p| p.integer)))
    }

    /// The constant as one value per channel of a layer output of `rank` axes and `width`
    /// channels, when ONNX broadcasting applies it per channel: a scalar (every dimension 1)
    /// or, for a feature map, dimensions `[C, 1, 1]` / `[1, C, 1, 1]`; for a vector `[C]` /
    /// `[1, C]`.
    pub fn per_channel(&self, rank: usize, width: usize) -> Option<Vec<f64>> {
        if self.values.len() == 1 && self.dims.len() <= rank {
            return Some(vec![self.values[0]; width]);
        }
        if self.values.len() != width || self.dims.len() > rank {
            return None;
        }
        // Right-align the constant's dims with the layer output's `[N, C, ...]`.
        let channel_axis_from_end = rank - 2;
        let d = &self.dims;
        let ok = d.len() > channel_axis_from_end
            && d[d.len() - 1 - channel_axis_from_end] == width
            && d.iter().rev().take(channel_axis_from_end).all(|&x| x == 1);
        ok.then(|| self.values.clone())
    }
}
