"""A small torch model with every layer family of the issue's exporter test (torch imported lazily)."""
from __future__ import annotations


def spatial_net(tanh_gelu: bool = True):
    """Conv1d, PReLU, depthwise and grouped conv, residual Add, LayerNorm + GELU (exact and tanh),
    ConvTranspose, Upsample (nearest and bilinear, exported as Resize), LogSoftmax; input [N, 4, 16].
    Without `tanh_gelu` the second GELU is exact too."""
    import torch
    from torch import nn

    class SpatialNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 8, 3, padding=1)
            self.prelu = nn.PReLU(8)
            self.depthwise = nn.Conv1d(8, 8, 3, padding=1, groups=8)
            self.grouped = nn.Conv1d(8, 8, 3, padding=2, dilation=2, groups=2)
            self.norm = nn.LayerNorm(8)
            self.fc = nn.Linear(8, 8)
            self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
            self.near = nn.Upsample(scale_factor=2, mode="nearest")
            self.bilinear = nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=False)
            self.dw2d = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4)
            self.head = nn.Linear(4 * 4 * 4, 5)
            self.approximate = "tanh" if tanh_gelu else "none"

        def forward(self, x):
            h = self.prelu(self.conv(x))
            h = h + self.grouped(self.depthwise(h))                  # residual Add
            t = self.norm(h.transpose(1, 2))                         # [N, 16, 8]
            t = nn.functional.gelu(self.fc(t)) + nn.functional.gelu(t, approximate=self.approximate)
            img = t.transpose(1, 2).reshape(x.shape[0], 8, 4, 4)
            img = self.bilinear(self.near(self.up(img)))             # [N, 4, 8, 8]
            return torch.log_softmax(self.head(self.dw2d(img).flatten(1)), dim=1)

    torch.manual_seed(0)
    return SpatialNet().eval()


def export(module, path, opset: int, dynamo: bool) -> None:
    """Export with the TorchScript (dynamo=False) or the torch.export-based exporter, batch dynamic."""
    import torch
    x = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    if dynamo:
        program = torch.onnx.export(module, (x,), dynamo=True, opset_version=opset, input_names=["x"],
                                    output_names=["y"], dynamic_shapes=({0: torch.export.Dim("N")},),
                                    verbose=False)
        program.save(str(path))
        return
    torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}})
