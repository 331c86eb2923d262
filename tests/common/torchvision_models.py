"""The torchvision networks the Rust tests use: random weights (seeded) with non-trivial
BatchNorm statistics and affine terms, in eval mode. Imported by export_torchvision.py and
save_state_dict.py (Python puts a script's folder on its import path)."""
import torch
import torchvision


def make(name, classes=1000):
    """torchvision model `name` with `classes` outputs: seeded random weights; every BatchNorm's running mean in
    [-0.2, 0.2], variance and scale in [0.5, 1.5], shift in [-0.2, 0.2]; eval mode."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=classes)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()
