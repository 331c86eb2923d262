//! Every reader on small files the test writes itself, plus the error cases.

use flate2::Compression;
use flate2::write::GzEncoder;
use sacp::data;
use std::io::Write;
use std::path::Path;

fn idx_images(count: u32, rows: u32, cols: u32, fill: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0x803u32.to_be_bytes());
    b.extend(count.to_be_bytes());
    b.extend(rows.to_be_bytes());
    b.extend(cols.to_be_bytes());
    b.extend((0..(count * rows * cols) as usize).map(fill));
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0x801u32.to_be_bytes());
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_idx(dir: &Path, compress: bool, labels: &[u8]) {
    for prefix in ["train", "t10k"] {
        let (images, labels) = (idx_images(labels.len() as u32, 4, 4, |i| (i % 251) as u8), idx_labels(labels));
        let (images, labels, ext) = if compress {
            (gz(&images), gz(&labels), ".gz")
        } else {
            (images, labels, "")
        };
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), labels).unwrap();
    }
}

fn open_err(name: &str, input: [usize; 3]) -> String {
    match data::open(name, input) {
        Ok(_) => panic!("{name} should not open"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn idx_gzip_and_raw_read_the_same_images() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_idx(a.path(), true, &[3, 1, 4, 1, 5]);
    write_idx(b.path(), false, &[3, 1, 4, 1, 5]);
    let gz = data::open(&format!("fashion-mnist:{}", a.path().display()), [1, 4, 4]).unwrap();
    let raw = data::open(&format!("mnist:{}", b.path().display()), [1, 4, 4]).unwrap();
    assert_eq!(gz.train.len(), 5);
    assert_eq!((gz.train.label(2), raw.test.label(4)), (4, 5));
    let (mut p, mut q) = ([0u8; 16], [0u8; 16]);
    gz.train.pixels(1, &mut p).unwrap();
    raw.train.pixels(1, &mut q).unwrap();
    assert_eq!(p, q);
    assert_eq!(p[0], 16);
}

#[test]
fn idx_errors_name_the_file_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("mnist:{}", dir.path().display());
    assert!(open_err(&name, [1, 4, 4]).contains("train-images-idx3-ubyte: missing"));
    write_idx(dir.path(), false, &[1, 2, 3]);
    // Wrong magic number.
    let mut bad = idx_images(3, 4, 4, |_| 0);
    bad[3] = 0x02;
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), &bad).unwrap();
    let e = open_err(&name, [1, 4, 4]);
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("magic") && e.contains("0x00000803"),
        "{e}"
    );
    // Truncated data.
    let good = idx_images(3, 4, 4, |_| 0);
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), &good[..good.len() - 5]).unwrap();
    let e = open_err(&name, [1, 4, 4]);
    assert!(e.contains("truncated") && e.contains("48 bytes"), "{e}");
    // Label out of range.
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), &good).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), idx_labels(&[1, 12, 3])).unwrap();
    let e = open_err(&name, [1, 4, 4]);
    assert!(e.contains("train-labels-idx1-ubyte") && e.contains("label 12 of image 1"), "{e}");
    // Images that do not fit the model.
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), idx_labels(&[1, 2, 3])).unwrap();
    let e = open_err(&name, [1, 28, 28]);
    assert!(e.contains("[1, 4, 4]") && e.contains("[1, 28, 28]"), "{e}");
    // Corrupt gzip.
    std::fs::remove_file(dir.path().join("train-labels-idx1-ubyte")).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let e = open_err(&name, [1, 4, 4]);
    assert!(e.contains("train-labels-idx1-ubyte.gz") && e.contains("gzip"), "{e}");
}

fn cifar_record(label_bytes: &[u8], seed: u8) -> Vec<u8> {
    let mut r = label_bytes.to_vec();
    r.extend((0..3072).map(|i| (i as u8).wrapping_add(seed)));
    r
}

#[test]
fn cifar10_and_cifar100_binaries() {
    let dir = tempfile::tempdir().unwrap();
    for b in 1..=5 {
        std::fs::write(
            dir.path().join(format!("data_batch_{b}.bin")),
            [cifar_record(&[b], b), cifar_record(&[9], 0)].concat(),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("test_batch.bin"), cifar_record(&[7], 1)).unwrap();
    let set = data::open(&format!("cifar10:{}", dir.path().display()), [3, 32, 32]).unwrap();
    assert_eq!((set.train.len(), set.test.len(), set.num_classes), (10, 1, 10));
    assert_eq!((set.train.label(2), set.train.label(3), set.test.label(0)), (2, 9, 7));
    let mut px = vec![0u8; 3072];
    set.train.pixels(2, &mut px).unwrap();
    assert_eq!((px[0], px[1024]), (2, 2));
    assert_eq!(
        set.augment,
        data::Augment {
            crop_padding: 4,
            flip: true
        }
    );

    std::fs::write(dir.path().join("data_batch_3.bin"), &cifar_record(&[1], 0)[..3000]).unwrap();
    let e = open_err(&format!("cifar10:{}", dir.path().display()), [3, 32, 32]);
    assert!(e.contains("data_batch_3.bin") && e.contains("3073-byte records"), "{e}");
    std::fs::write(dir.path().join("data_batch_3.bin"), cifar_record(&[10], 0)).unwrap();
    let e = open_err(&format!("cifar10:{}", dir.path().display()), [3, 32, 32]);
    assert!(e.contains("label 10 is out of range 0..10"), "{e}");

    let hundred = tempfile::tempdir().unwrap();
    std::fs::write(
        hundred.path().join("train.bin"),
        [cifar_record(&[3, 42], 0), cifar_record(&[1, 99], 0)].concat(),
    )
    .unwrap();
    std::fs::write(hundred.path().join("test.bin"), cifar_record(&[0, 5], 0)).unwrap();
    let set = data::open(&format!("cifar100:{}", hundred.path().display()), [3, 32, 32]).unwrap();
    assert_eq!((set.train.label(0), set.train.label(1), set.num_classes), (42, 99, 100));
    let e = open_err(&format!("cifar100:{}", dir.path().display()), [3, 32, 32]);
    assert!(e.contains("train.bin") && e.contains("missing"), "{e}");
}

#[test]
fn image_folders_decode_resize_and_map_classes() {
    let dir = tempfile::tempdir().unwrap();
    for (split, class, shade) in [("train", "cat", 10u8), ("train", "dog", 200), ("val", "dog", 100)] {
        let d = dir.path().join(split).join(class);
        std::fs::create_dir_all(&d).unwrap();
        let img = image::RgbImage::from_pixel(16, 16, image::Rgb([shade, 0, 255]));
        img.save(d.join("a.png")).unwrap();
        img.save(d.join("b.jpg")).unwrap();
    }
    std::fs::write(dir.path().join("train/cat/notes.txt"), "ignored").unwrap();
    let set = data::open(&format!("folder:{}", dir.path().display()), [3, 8, 8]).unwrap();
    assert_eq!((set.train.len(), set.test.len(), set.num_classes), (4, 2, 2));
    assert_eq!((set.train.label(0), set.train.label(3), set.test.label(0)), (0, 1, 1));
    let mut px = vec![0u8; 3 * 64];
    set.train.pixels(0, &mut px).unwrap();
    assert_eq!((px[0], px[64], px[128]), (10, 0, 255));

    std::fs::create_dir_all(dir.path().join("val/bird")).unwrap();
    std::fs::write(dir.path().join("val/bird/x.png"), b"not a png").unwrap();
    let e = open_err(&format!("folder:{}", dir.path().display()), [3, 8, 8]);
    assert!(e.contains("bird") && e.contains("does not exist in the training folder"), "{e}");
    std::fs::create_dir_all(dir.path().join("train/bird")).unwrap();
    std::fs::write(dir.path().join("train/bird/x.png"), b"not a png").unwrap();
    let set = data::open(&format!("folder:{}", dir.path().display()), [3, 8, 8]).unwrap();
    let bird = (0..set.test.len()).find(|&i| set.test.label(i) == 0).unwrap();
    let e = set.test.pixels(bird, &mut px).unwrap_err().to_string();
    assert!(e.contains("x.png") && e.contains("cannot decode"), "{e}");
}

#[test]
fn held_out_split_is_seeded_and_disjoint() {
    let set = data::open("synthetic:1000", [1, 8, 8]).unwrap();
    let (train, held) = set.split(100, 3);
    assert_eq!((train.len(), held.len()), (900, 100));
    assert!(held.indices.iter().all(|i| train.indices.binary_search(i).is_err()));
    assert_eq!(set.split(100, 3).1.indices, held.indices);
    assert_ne!(set.split(100, 4).1.indices, held.indices);
    // At most a fifth of a small set is held out.
    assert_eq!(set.split(5000, 0).1.len(), 200);
}

#[test]
fn batches_are_normalised_and_augmentation_is_seeded() {
    use rand::SeedableRng;
    let device = burn::tensor::Device::flex();
    let set = data::open("synthetic:64", [1, 8, 8]).unwrap();
    let split = set.test_split();
    let batcher = data::Batcher::new(
        vec![0.5],
        vec![0.25],
        data::Augment {
            crop_padding: 2,
            flip: true,
        },
    );
    let plain = batcher.batch(&split, &[0, 1], None, &device).unwrap();
    let values: Vec<f32> = plain.images.into_data().try_into_vec::<f32>().unwrap();
    let mut px = [0u8; 64];
    split.source.pixels(0, &mut px).unwrap();
    assert!((values[5] - (px[5] as f32 / 255.0 - 0.5) / 0.25).abs() < 1e-6);
    assert_eq!(plain.classes, vec![split.source.label(0), split.source.label(1)]);
    let augmented = |seed| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        batcher
            .batch(&split, &[0, 1, 2, 3], Some(&mut rng), &device)
            .unwrap()
            .images
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()
    };
    assert_eq!(augmented(1), augmented(1));
    assert_ne!(augmented(1), augmented(2));
}
