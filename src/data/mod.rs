//! Data sets: readers for IDX (MNIST, Fashion-MNIST), CIFAR-10/100 binary, image folders
//! and a synthetic generator; a seeded held-out split carved from the training set;
//! per-data-set normalisation, training augmentation and batching onto a burn device.
//!
//! A data set is named `kind:path`, e.g. `fashion-mnist:/usr/share/datasets/fashion-mnist`,
//! `cifar10:data/cifar-10-batches-bin`, `folder:tiny-imagenet-200` or `synthetic:2000`.

mod batch;
mod cifar;
mod folder;
mod idx;
mod synthetic;

pub use batch::{Augment, Batch, Batcher};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::sync::Arc;

/// A data set that cannot be read, named by file and with what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file is missing, truncated or malformed.
    #[error("{file}: {message}")]
    File {
        /// The offending file (or folder).
        file: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The `kind:path` name is malformed or does not fit the model.
    #[error("data set `{spec}`: {message}")]
    Spec {
        /// The data set name as given.
        spec: String,
        /// What is wrong and what would be valid.
        message: String,
    },
}

pub(crate) fn file_error(file: &std::path::Path, message: impl Into<String>) -> DataError {
    DataError::File {
        file: file.display().to_string(),
        message: message.into(),
    }
}

/// Decodes an IDX images file and its labels file (both already decompressed; the paths
/// name them in errors) into one split, as `mnist:`/`fashion-mnist:` data sets read them.
pub fn decode_idx(
    images_path: &std::path::Path,
    images: &[u8],
    labels_path: &std::path::Path,
    labels: &[u8],
) -> Result<InMemory, DataError> {
    idx::decode(images_path, images, labels_path, labels)
}

/// Decodes one CIFAR binary file (`label_bytes` = 1 for CIFAR-10, 2 for CIFAR-100) into
/// a split, as `cifar10:`/`cifar100:` data sets read them.
pub fn decode_cifar(path: &std::path::Path, bytes: &[u8], label_bytes: usize, classes: usize) -> Result<InMemory, DataError> {
    cifar::decode(path, bytes, label_bytes, classes)
}

/// Checks that `split` holds at least one batch of `batch_size` images; the error names
/// the data set and the split (`what`) and ends with `advice`.
pub fn require_batch(data: &DataSet, split: &Split, batch_size: usize, what: &str, advice: &str) -> Result<(), DataError> {
    if split.len() >= batch_size.max(1) {
        return Ok(());
    }
    Err(DataError::Spec {
        spec: data.name.clone(),
        message: format!(
            "the {what} split holds {} images, fewer than one batch of {batch_size}; {advice}",
            split.len()
        ),
    })
}

/// One split of images (train or test), each `C × H × W` bytes with a class label.
pub trait ImageSource: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// True when the split holds no image.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `[channels, height, width]` of every image this source delivers.
    fn shape(&self) -> [usize; 3];
    /// The class of image `index`.
    fn label(&self, index: usize) -> usize;
    /// Writes image `index` as `C·H·W` bytes (channel-major) into `out`.
    fn pixels(&self, index: usize, out: &mut [u8]) -> Result<(), DataError>;
}

/// Images held in memory as bytes.
pub struct InMemory {
    shape: [usize; 3],
    images: Vec<u8>,
    labels: Vec<u16>,
}

impl InMemory {
    /// Wraps `labels.len()` images of `shape` stored back to back in `images`.
    pub fn new(shape: [usize; 3], images: Vec<u8>, labels: Vec<u16>) -> Self {
        debug_assert_eq!(images.len(), labels.len() * shape.iter().product::<usize>());
        InMemory { shape, images, labels }
    }
}

impl ImageSource for InMemory {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn label(&self, index: usize) -> usize {
        self.labels[index] as usize
    }
    fn pixels(&self, index: usize, out: &mut [u8]) -> Result<(), DataError> {
        let n = out.len();
        out.copy_from_slice(&self.images[index * n..(index + 1) * n]);
        Ok(())
    }
}

/// A subset of a source's images, in a fixed order.
#[derive(Clone)]
pub struct Split {
    /// The images.
    pub source: Arc<dyn ImageSource>,
    /// Which of them belong to the split.
    pub indices: Vec<usize>,
}

impl Split {
    /// Number of images in the split.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when the split is empty.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// A data set: train and test images, classes, normalisation and augmentation.
pub struct DataSet {
    /// The name it was opened with.
    pub name: String,
    /// The training images (the held-out split is carved from these).
    pub train: Arc<dyn ImageSource>,
    /// The test images: reported, never used to steer a search.
    pub test: Arc<dyn ImageSource>,
    /// Number of classes.
    pub num_classes: usize,
    /// Per-channel mean subtracted from pixels scaled to `[0, 1]`.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation the centred pixels are divided by.
    pub std: Vec<f32>,
    /// Training augmentation that suits the data set.
    pub augment: Augment,
}

impl DataSet {
    /// Splits the training images into (train, held-out) with a seeded shuffle; the
    /// held-out part has `heldout` images (fewer when the set is small: at most a fifth).
    pub fn split(&self, heldout: usize, seed: u64) -> (Split, Split) {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let heldout = heldout.min(self.train.len() / 5);
        let held = order.split_off(order.len() - heldout);
        order.sort_unstable();
        let mut held = held;
        held.sort_unstable();
        (
            Split {
                source: self.train.clone(),
                indices: order,
            },
            Split {
                source: self.train.clone(),
                indices: held,
            },
        )
    }

    /// The whole test split.
    pub fn test_split(&self) -> Split {
        Split {
            source: self.test.clone(),
            indices: (0..self.test.len()).collect(),
        }
    }

    /// Checks that the data set's classes match a network with `outputs` outputs (`model`
    /// names the network in the error).
    pub fn require_classes(&self, outputs: usize, model: &str) -> Result<(), DataError> {
        if self.num_classes == outputs {
            return Ok(());
        }
        Err(DataError::Spec {
            spec: self.name.clone(),
            message: format!(
                "has {} classes but {model} has {outputs} outputs; use a data set with {outputs} classes or a network with {} outputs",
                self.num_classes, self.num_classes
            ),
        })
    }

    /// A batcher for this data set's normalisation and augmentation.
    pub fn batcher(&self) -> Batcher {
        Batcher::new(self.mean.clone(), self.std.clone(), self.augment)
    }
}

/// Train and test images, classes, mean, std and augmentation of a freshly opened set.
type Opened = (Arc<dyn ImageSource>, Arc<dyn ImageSource>, usize, Vec<f32>, Vec<f32>, Augment);

/// The data set kinds `open` accepts.
pub const KINDS: &[&str] = &["mnist", "fashion-mnist", "cifar10", "cifar100", "folder", "synthetic"];

/// Opens a data set named `kind:path` for a model whose input is `input` (`[C, H, W]`).
/// Image-folder data are resized to the input; other kinds must match it.
pub fn open(name: &str, input: [usize; 3]) -> Result<DataSet, DataError> {
    let spec_error = |message: String| DataError::Spec {
        spec: name.to_string(),
        message,
    };
    let (kind, path) = name
        .split_once(':')
        .ok_or_else(|| spec_error(format!("expected KIND:PATH with KIND one of {}", KINDS.join(", "))))?;
    let path = std::path::Path::new(path);
    let (train, test, num_classes, mean, std, augment): Opened = match kind {
        "mnist" | "fashion-mnist" => {
            let (train, test) = idx::open(path)?;
            let (mean, std) = if kind == "mnist" { (0.1307, 0.3081) } else { (0.2860, 0.3530) };
            let augment = Augment {
                crop_padding: 0,
                flip: kind == "fashion-mnist",
            };
            (Arc::new(train), Arc::new(test), 10, vec![mean], vec![std], augment)
        }
        "cifar10" | "cifar100" => {
            let classes = if kind == "cifar10" { 10 } else { 100 };
            let (train, test) = cifar::open(path, classes)?;
            let (mean, std) = if classes == 10 {
                (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616])
            } else {
                (vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762])
            };
            (
                Arc::new(train),
                Arc::new(test),
                classes,
                mean,
                std,
                Augment {
                    crop_padding: 4,
                    flip: true,
                },
            )
        }
        "folder" => {
            let (train, test, classes) = folder::open(path, input)?;
            let crop_padding = input[1] / 8;
            (
                Arc::new(train),
                Arc::new(test),
                classes,
                vec![0.485, 0.456, 0.406],
                vec![0.229, 0.224, 0.225],
                Augment { crop_padding, flip: true },
            )
        }
        "synthetic" => {
            let count = if path.as_os_str().is_empty() {
                2000
            } else {
                path.to_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| spec_error("synthetic takes a number of training images, e.g. synthetic:2000".into()))?
            };
            let (train, test) = synthetic::generate(input, 10, count, 7);
            (
                Arc::new(train),
                Arc::new(test),
                10,
                vec![0.5; input[0]],
                vec![0.5; input[0]],
                Augment {
                    crop_padding: 0,
                    flip: false,
                },
            )
        }
        other => return Err(spec_error(format!("unknown kind `{other}`; valid: {}", KINDS.join(", ")))),
    };
    if train.shape() != input {
        return Err(spec_error(format!(
            "images are {:?} (C, H, W) but the model takes {input:?}",
            train.shape()
        )));
    }
    for (what, source) in [("training", &train), ("test", &test)] {
        if source.is_empty() {
            return Err(spec_error(format!(
                "the {what} split holds no images; a data set needs at least one in each"
            )));
        }
    }
    let mean = if mean.len() == 1 { vec![mean[0]; input[0]] } else { mean };
    let std = if std.len() == 1 { vec![std[0]; input[0]] } else { std };
    Ok(DataSet {
        name: name.to_string(),
        train,
        test,
        num_classes,
        mean,
        std,
        augment,
    })
}
