//! The training objective: cross-entropy with optional label smoothing and distillation.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy of `logits` against `labels`, with label smoothing `smoothing`, and,
/// when a teacher's logits are given with `(temperature, alpha)`, Hinton's distillation:
/// `(1 - α)·CE + α·T²·KL(teacher_T ‖ student_T)`.
pub(super) fn objective(logits: Tensor<2>, labels: Tensor<1, Int>, smoothing: f64, teacher: Option<(Tensor<2>, f64, f64)>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let log_p = log_softmax(logits.clone(), 1);
    let nll = log_p.clone().gather(1, labels.reshape([n as i32, 1])).neg().mean();
    let ce = if smoothing > 0.0 {
        nll.mul_scalar(1.0 - smoothing) + log_p.neg().mean().mul_scalar(smoothing)
    } else {
        nll
    };
    match teacher {
        None => ce,
        Some((teacher, temperature, alpha)) => {
            let log_t = log_softmax(Tensor::from_inner(teacher).div_scalar(temperature), 1);
            let log_s = log_softmax(logits.div_scalar(temperature), 1);
            let kl = (log_t.clone().exp() * (log_t - log_s)).sum().div_scalar(n as f64);
            ce.mul_scalar(1.0 - alpha) + kl.mul_scalar(alpha * temperature * temperature)
        }
    }
}

/// How many rows of `logits` have their largest value at the row's class.
pub(super) fn correct(logits: Tensor<2>, classes: &[usize]) -> usize {
    let predicted: Vec<i64> = logits.argmax(1).into_data().try_into_vec_as::<i64>().expect("integer predictions");
    predicted.iter().zip(classes).filter(|(p, c)| **p as usize == **c).count()
}
