"""Parameter counts of any model here (teacher, ensemble, MLP student), counted one way.

A parameter is counted once (shared ones too) when it is trainable (``requires_grad``); buffers
(index tensors, running statistics) are never counted. It is an ``embedding`` parameter when an
embedding table owns it, ``nn.Embedding`` or ``nn.EmbeddingBag`` (TorchRec's
``EmbeddingBagCollection`` keeps its tables as ``nn.EmbeddingBag``), and ``dense`` otherwise.
"""

from __future__ import annotations

from torch import nn

EMBEDDING_TABLES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters: ``{"embedding": tables, "dense": everything else, "total": both}``.

    Example::

        count_parameters(nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 1)))
        # {'embedding': 40, 'dense': 5, 'total': 45}
    """
    tables = {
        id(p) for m in model.modules() if isinstance(m, EMBEDDING_TABLES) for p in m.parameters(recurse=False)
    }
    trainable = [p for p in model.parameters() if p.requires_grad]  # each shared parameter once
    emb = sum(p.numel() for p in trainable if id(p) in tables)
    total = sum(p.numel() for p in trainable)
    return {"embedding": emb, "dense": total - emb, "total": total}
