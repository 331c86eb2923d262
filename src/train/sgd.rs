//! Stochastic gradient descent with momentum (optionally Nesterov) and weight decay, with
//! PyTorch's semantics (no dampening). Written here rather than taken from burn-optim so
//! that its momentum buffers live in sacp's own checkpoint file, which is what makes a
//! resumed run end with exactly the weights of an uninterrupted one.

use crate::weights::WeightTensor;
use burn::module::{ModuleMapper, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};

/// SGD settings and state.
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Momentum factor (0 disables momentum).
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 penalty added to every gradient.
    pub weight_decay: f64,
    buffers: Vec<Option<Tensor<1>>>,
}

impl Sgd {
    /// A fresh optimizer.
    pub fn new(momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        Sgd {
            momentum,
            nesterov,
            weight_decay,
            buffers: Vec::new(),
        }
    }

    /// A mapper that applies one step with learning rate `lr` to a module's parameters.
    pub fn step<'a>(&'a mut self, grads: &'a Gradients, lr: f64) -> SgdStep<'a> {
        SgdStep {
            sgd: self,
            grads,
            lr,
            slot: 0,
        }
    }

    /// The momentum buffers as named host tensors, for checkpoints.
    pub fn state(&self) -> Vec<(String, WeightTensor)> {
        self.buffers
            .iter()
            .enumerate()
            .filter_map(|(slot, b)| {
                b.as_ref().map(|b| {
                    (
                        format!("optimizer.momentum.{slot}"),
                        WeightTensor {
                            shape: b.dims().to_vec(),
                            data: b.to_data().try_to_vec::<f32>().expect("f32 buffers"),
                        },
                    )
                })
            })
            .collect()
    }

    /// Restores momentum buffers written by [`Sgd::state`].
    pub fn restore(&mut self, tensors: &[(usize, WeightTensor)], device: &Device) {
        for (slot, t) in tensors {
            if self.buffers.len() <= *slot {
                self.buffers.resize(slot + 1, None);
            }
            self.buffers[*slot] = Some(Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device));
        }
    }
}

/// One optimisation step over a module (see [`Sgd::step`]).
pub struct SgdStep<'a> {
    sgd: &'a mut Sgd,
    grads: &'a Gradients,
    lr: f64,
    slot: usize,
}

impl ModuleMapper for SgdStep<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let slot = self.slot;
        self.slot += 1;
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = tensor.grad(self.grads) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let dims = tensor.dims();
        let weight = tensor.inner();
        let mut direction = grad;
        if self.sgd.weight_decay > 0.0 {
            direction = direction + weight.clone().mul_scalar(self.sgd.weight_decay);
        }
        if self.sgd.momentum > 0.0 {
            if self.sgd.buffers.len() <= slot {
                self.sgd.buffers.resize(slot + 1, None);
            }
            let buffer = match self.sgd.buffers[slot].take() {
                None => direction.clone(),
                Some(b) => b.reshape(dims).mul_scalar(self.sgd.momentum) + direction.clone(),
            };
            direction = if self.sgd.nesterov {
                direction + buffer.clone().mul_scalar(self.sgd.momentum)
            } else {
                buffer.clone()
            };
            self.sgd.buffers[slot] = Some(buffer.reshape([-1]));
        }
        let updated = weight - direction.mul_scalar(self.lr);
        Param::from_mapped_value(id, Tensor::from_inner(updated).require_grad(), mapper)
    }
}
