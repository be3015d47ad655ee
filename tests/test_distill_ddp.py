"""DistributedDataParallel on CPU with gloo: two spawned processes, each with half
of a batch, end with the gradients of one process on the whole batch; the
trainer runs under DDP and keeps the ranks in step."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from labrig.data import ImageDataset
from labrig.distill import TrainConfig, Trainer, ddp, seed_everything
from labrig.models import BackendConfig, SCLCConfig, StudentConfig, StudentModel

WORLD = 2
SIZE = 12


def _model() -> StudentModel:
    seed_everything(0)
    # no BatchNorm: per-rank batch statistics would (rightly) differ from full-batch ones
    cfg = StudentConfig(frontend=SCLCConfig(channels=(3, 2), kernel_sizes=(3, 3)),
                        backend=BackendConfig(kind="mlp", hidden=(8,), batch_norm=False), input_size=(SIZE, SIZE))
    return StudentModel(cfg)


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, SIZE, SIZE, generator=g), torch.randint(0, 10, (n,), generator=g)


def _dataset(n: int = 64) -> ImageDataset:
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (n, 1, SIZE, SIZE), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 10, [str(i) for i in range(10)])


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    info = ddp.init_distributed(backend="gloo", init_method=f"file://{init_file}", rank=rank,
                                world_size=WORLD, device="cpu")
    try:
        model = _model()
        net = ddp.wrap(model, info)
        x, y = _batch()
        idx = ddp.shard_indices(len(x), info, epoch=0, seed=0, shuffle=False)
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        # the trainer under DDP: one short run, ranks must agree
        trained = _model()
        result = Trainer(trained, TrainConfig(epochs=2, batch_size=8, progress=False), distributed=info).fit(
            _dataset(), _dataset(20))
        torch.save({"grads": grads, "shard": idx, "state": trained.state_dict(), "final": result.final},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        ddp.cleanup()


def test_two_gloo_processes_average_to_the_full_batch_gradient(tmp_path: Path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert sorted(torch.cat([r["shard"] for r in ranks]).tolist()) == list(range(8))  # disjoint halves

    model = _model()
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(ranks[0]["grads"]) > 0
    for name, p in trainable:
        for r in ranks:
            torch.testing.assert_close(r["grads"][name], p.grad, rtol=1e-5, atol=1e-7)

    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert ranks[0]["final"] == ranks[1]["final"]
