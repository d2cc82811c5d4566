"""The object ranker: compares a token's candidate objects with each other (issue 3: superlatives)."""

import torch

from ros_pgpt.modeling.object_ranker import EXCLUDED, ObjectRanker


def _sets(count: int, objects: int = 4, generator: torch.Generator | None = None):
    evidence = torch.randn(count, objects, 8, generator=generator)
    corner = torch.rand(count, objects, 2, generator=generator) * 0.8
    boxes = torch.cat([corner, corner + 0.1 + 0.1 * torch.rand(count, objects, 2, generator=generator)], dim=-1)
    return evidence, boxes


def test_ranker_is_permutation_equivariant_and_ignores_empty_slots():
    torch.manual_seed(0)
    ranker = ObjectRanker(hidden_dim=16, evidence_dim=8, dim=32).eval()
    hidden = torch.randn(3, 16)
    evidence, boxes = _sets(3)
    valid = torch.tensor([[True, True, True, False]] * 3)
    with torch.no_grad():
        logits = ranker(hidden, evidence, boxes, valid)
        order = torch.tensor([2, 0, 3, 1])
        permuted = ranker(hidden, evidence[:, order], boxes[:, order], valid[:, order])
        # What an empty slot holds changes nothing.
        evidence[:, 3], boxes[:, 3] = 100.0, 0.5
        refilled = ranker(hidden, evidence, boxes, valid)
    torch.testing.assert_close(permuted, logits[:, order])
    torch.testing.assert_close(refilled, logits)
    assert (logits[:, 3] == EXCLUDED).all() and (logits[:, :3] > EXCLUDED / 2).all()


def test_ranker_learns_a_superlative_that_no_single_object_decides():
    """"The leftmost / rightmost <colour> object": whether an object is the answer depends on where the
    other objects of its colour lie, which a score of each object alone cannot know. The relation
    network learns it (chance: about 1 in 3)."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    ranker = ObjectRanker(hidden_dim=5, evidence_dim=8, dim=32)
    optimizer = torch.optim.Adam(ranker.parameters(), lr=3e-3)

    def batch(count):
        evidence, boxes = _sets(count, generator=generator)
        colours = torch.randint(0, 3, (count, 4), generator=generator)
        evidence[..., :3] = torch.nn.functional.one_hot(colours, 3).float()
        wanted = colours[:, 0]  # the asked colour is always present
        rightmost = torch.randint(0, 2, (count,), generator=generator)
        hidden = torch.cat([torch.nn.functional.one_hot(wanted, 3).float(),
                            torch.nn.functional.one_hot(rightmost, 2).float()], dim=-1)
        centre_x = (boxes[..., 0] + boxes[..., 2]) / 2
        signed = torch.where(rightmost.bool().unsqueeze(-1), centre_x, -centre_x)
        target = signed.masked_fill(colours != wanted.unsqueeze(-1), -9).argmax(-1)
        return hidden, evidence, boxes, torch.ones(count, 4, dtype=torch.bool), target

    for _ in range(400):
        hidden, evidence, boxes, valid, target = batch(64)
        loss = torch.nn.functional.cross_entropy(ranker(hidden, evidence, boxes, valid), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    hidden, evidence, boxes, valid, target = batch(500)
    with torch.no_grad():
        accuracy = (ranker(hidden, evidence, boxes, valid).argmax(-1) == target).float().mean()
    assert accuracy > 0.9, accuracy
