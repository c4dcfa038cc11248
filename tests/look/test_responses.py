"""The top responses kept while streaming are the brute-force top over the whole set."""

import torch

from dcgan_features.extract.hooks import to_model_input
from dcgan_features.look.guided import run_to
from dcgan_features.look.responses import top_responses
from dcgan_features.nets.architectures import build


def test_streamed_top_k_is_the_brute_force_top_k():
    _, D = build("dcgan32", width=4, seed=1)
    D.eval().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (41, 3, 32, 32), dtype=torch.uint8, generator=g)
    maps, k = [0, 3, 5, 7], 5
    module = D.blocks["d2"]
    top = top_responses(lambda x: run_to(D, module, x), images, maps, k, batch_size=6, to_input=to_model_input)

    with torch.no_grad():  # brute force: every activation of every image at once
        acts = D.blocks["d2"](D.blocks["d1"](images.float() / 127.5 - 1))  # (41, C, 8, 8)
    for row, c in enumerate(maps):
        per_image = acts[:, c].flatten(1)  # (41, 64)
        best = per_image.max(1).values
        order = sorted(range(len(images)), key=lambda i: -float(best[i]))[:k]
        assert top.images[row].tolist() == order
        assert torch.allclose(top.values[row], best[order])
        for r, i in enumerate(order):
            y, x = top.positions[row, r].tolist()
            assert float(acts[i, c, y, x]) == float(best[i])
