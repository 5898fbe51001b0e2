"""Export (docs/export.md): torch.export with a dynamic batch dimension for the smallest classifier of
every family (the export path is code a family shares) at the small grey input of the zoo tests (the
sweep over every classifier, 199 of 200 with vit_h_14 left out for time, was run by hand on 2026-12-07:
6 min 39 s on the 2-core CPU, too long for `make test`), torch.jit.trace, and ONNX through
torch.onnx.export(dynamo=True) run by ONNX Runtime, each checked against the eager network at batch sizes
other than the one exported with."""
import warnings

import pytest
import torch
from torch.export import Dim, export

import visionzoo as vz

from conftest import smallest_of_each_family

CLASSIFIERS = vz.list_models(task="classification")
# Networks that cannot be exported with a dynamic batch, with the reason (docs/export.md).
NOT_EXPORTABLE: dict[str, str] = {}
# Exporting all of them takes minutes on a 2-core CPU; these few stay in the quick suite.
QUICK = ("lenet5", "resnet20_cifar", "vit_tiny_patch4_28")


def _small_grey(name: str):
    torch.manual_seed(0)
    return vz.create_model(name, num_classes=10, in_chans=1, image_size=28).eval()


def _assert_exported_batch_is_dynamic(name: str) -> None:
    model = _small_grey(name)
    program = export(model, (torch.randn(2, 1, 28, 28),), dynamic_shapes=({0: Dim("batch")},))
    exported = program.module()
    for batch in (3, 5):
        x = torch.randn(batch, 1, 28, 28)
        with torch.no_grad():
            # equal_nan: untrained, eval-mode ResNet-1202 and PreAct-ResNet-1001 overflow in eager too
            torch.testing.assert_close(exported(x), model(x), atol=1e-4, rtol=1e-4, equal_nan=True)


@pytest.mark.parametrize("name", QUICK)
def test_export_with_a_dynamic_batch_quick(name):
    _assert_exported_batch_is_dynamic(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", smallest_of_each_family([n for n in CLASSIFIERS if n not in NOT_EXPORTABLE]))
def test_every_family_exports_with_a_dynamic_batch(name):
    _assert_exported_batch_is_dynamic(name)


@pytest.mark.parametrize("name", ["lenet5", "resnet20_cifar"])
def test_tracing_gives_the_eager_network(name):
    model = _small_grey(name)
    with warnings.catch_warnings():
        # LeNet-5's padding branch on the input side; PyTorch's deprecation of tracing (docs/export.md)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, torch.randn(2, 1, 28, 28), check_trace=False)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), atol=1e-5, rtol=1e-5)


def _assert_onnx_matches(name: str) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = _small_grey(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (torch.randn(2, 1, 28, 28),), dynamo=True,
                                    dynamic_shapes=({0: Dim("batch")},), verbose=False)
    proto = program.model_proto
    onnx.checker.check_model(proto)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param   # symbolic, not 2
    x = torch.randn(3, 1, 28, 28)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {proto.graph.input[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), atol=1e-4, rtol=1e-4)


def test_onnx_export_quick():
    _assert_onnx_matches("lenet5")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch4_28", "mobilenet_v2", "efficientnet_b0",
                                  "convnext_tiny", "densenet121", "googlenet", "shufflenet_v2_x1_0"])
def test_onnx_export_of_representative_networks(name):
    _assert_onnx_matches(name)
