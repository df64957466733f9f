"""fdrl-export of the paper's image architectures (spectral norm and self-attention on): the
float64 check passes for each. Apart from test_export.py so that the suite's workers can
share the load. The check runs on 4 + 5 samples, not the CLI's 32 + 33: on the 32x32 and
128x128 ResNets the float64 reference was half of each case's 50-60 s, and nine samples
check the same graph (test_export.py runs the full-size check on the small models)."""
import pytest
from helpers import SHAPES, random_checkpoint
from test_export import _export

from fdrl_runtime.artifact import load_artifact


@pytest.mark.slow
@pytest.mark.parametrize("model, pairing", [("resnet28", ("LR", "JS")), ("resnet32", ("LSIF", "Pearson")),
                                            ("resnet64", ("KL", "logD")), ("resnet64_shallow", ("LR", "KL")),
                                            ("resnet128", ("KL", "JS"))])
def test_image_architectures_with_spectral_norm_and_attention(tmp_path, model, pairing):
    result, out = _export(tmp_path, random_checkpoint(model, *pairing, sn=True, attn=True),
                          check_sizes=(4, 5))
    assert result.passed and result.n == 9 and result.median < 1e-5
    assert tuple(load_artifact(out).meta.sample_shape) == SHAPES[model]
